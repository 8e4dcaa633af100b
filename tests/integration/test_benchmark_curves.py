"""tools/benchmark_curves.py: both exact estimators, per modality group, on BEVFusion-Lite and the real keyframe."""
import sys

import pytest

from zoo import REPO, require_sample

pytest.importorskip('mmdet3d')
sys.path.insert(0, str(REPO / 'tools'))
import benchmark_curves  # noqa: E402


def test_evenly_spaced_keeps_both_ends():
    assert benchmark_curves.evenly_spaced(list(range(10)), 4) == [0, 3, 6, 9]
    assert benchmark_curves.evenly_spaced(list(range(3)), 5) == [0, 1, 2]
    assert benchmark_curves.evenly_spaced(list(range(3)), None) == [0, 1, 2]


def test_groups_of_the_timed_layers_and_their_forward_counts(capsys):
    """Layers 0, 57 and 113 of 114: the first image conv (camera), a BEV backbone conv and the last head conv
    (fusion group). The tool itself stops if the memo changed a curve."""
    require_sample('nuscenes-v1.0-mini-sample')
    result = benchmark_curves.main(['--model', 'bevfusion-lite', '--levels', '0', '0.5', '--layers', '3',
                                    '--probes', '1'])
    out = capsys.readouterr().out
    groups = {row['group']: row for row in result['groups']}
    assert {g: row['layers'] for g, row in groups.items()} == {'camera': 1, 'fusion': 2}
    # the first image conv: everything after it runs again, so the memo saves only the LiDAR branch
    assert 0 < groups['camera']['memo_leaf'] < groups['camera']['plain_leaf']
    assert groups['fusion']['memo_leaf'] < groups['fusion']['plain_leaf'] / 2
    assert result['passes_per_layer'] == 1 and result['fisher_seconds'] > 0
    assert '114 layers (3 timed)' in out and 'all timed' in out


@pytest.mark.parametrize('args', [['--memo-depth', '0'], ['--layers', '0']])
def test_bad_arguments_stop_before_building_anything(args):
    with pytest.raises(SystemExit, match='must be >= 1'):
        benchmark_curves.main(args)
