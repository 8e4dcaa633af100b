"""tools/benchmark_masks.py: the per-step cost of the masks, on the tiny PointPillars and the real KITTI frame."""
import sys

import pytest

from zoo import REPO, require_sample

pytest.importorskip('mmdet3d')
sys.path.insert(0, str(REPO / 'tools'))
import benchmark_masks  # noqa: E402

CONFIG = str(REPO / 'configs/pointpillars/pointpillars_tiny_8xb1-short_kitti-sample.py')


def test_times_plain_and_masked_steps(tmp_path, capsys):
    require_sample('kitti-sample')
    result = benchmark_masks.main([CONFIG, '--work-dir', str(tmp_path), '--steps', '2', '--warmup', '0',
                                   '--batches', '1', '--sparsity', '0.5'])
    out = capsys.readouterr().out
    assert set(result['seconds_per_step']) == {'plain', 'masks'}
    assert all(v > 0 for v in result['seconds_per_step'].values()) and result['mask_apply_seconds'] > 0
    assert result['mask_overhead'] == pytest.approx(
        result['seconds_per_step']['masks'] / result['seconds_per_step']['plain'] - 1)
    assert result['mask_overhead_parts'] == pytest.approx(
        (result['mask_apply_seconds'] + result['grad_mask_seconds']) / result['seconds_per_step']['plain'])
    assert result['grad_mask_seconds'] > 0 and -1 < result['mask_overhead_paired']
    assert result['layers'] > 0 and f'{result["weights"]:,} weights at sparsity 0.5' in out
    assert 'with the masks' in out and 're-application alone' in out and 'gradient masking alone' in out


@pytest.mark.parametrize('args, message', [(['--sparsity', '1.0'], 'must be in \\[0, 1\\)'),
                                           (['--steps', '0'], 'must be >= 1')])
def test_bad_arguments_stop_before_building_anything(args, message):
    with pytest.raises(SystemExit, match=message):
        benchmark_masks.main([CONFIG, *args])
