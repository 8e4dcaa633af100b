"""tools/compare_modalities.py: the camera branch pretrained on 2D targets (stage 0), the single-sensor models
trained side by side (stage 1; camera-only loads stage 0), then continued / the fused model started from both
(stage 2, a checkpoint every iteration), same seed and budget, each with only its sensors, one table."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo import REPO

pytest.importorskip('mmdet3d')
sys.path.insert(0, str(REPO / 'tools'))
from compare_modalities import LIDAR_DROPOUT  # noqa: E402


def _weights(work_dir) -> set[str]:
    ckpt = (work_dir / 'last_checkpoint').read_text().strip()
    return {k.split('.')[0] for k in torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']}


@pytest.mark.heavy(seconds=200)  # scheduled first under pytest-xdist (conftest)
def test_three_variants_trained_evaluated_and_tabled(tmp_path):
    out, data = tmp_path / 'out', tmp_path / 'data'
    cmd = [sys.executable, 'tools/compare_modalities.py', '--work-dir', str(out), '--data-root', str(data),
           '--num-train', '3', '--num-val', '2', '--iters', '2', '--img-pretrain-iters', '2', '--seed', '3',
           '--jobs', '2', '--checkpoint-interval', '1', '--lidar-dropout']
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (data / 'nuscenes_infos_train.pkl').is_file()

    table = (out / 'modalities.md').read_text().splitlines()
    names = ['lidar-camera', 'lidar', 'camera']
    # stage 2 starts the fused model from the single-sensor ones: no fused stage-1 run (--fused-stage1 adds it)
    assert [row.split('|')[1].strip() for row in table[2:table.index('')]] == \
        ['lidar (stage 1)', 'camera (stage 1)'] + [f'{n} (stage 2)' for n in names]
    summary = json.loads((out / 'modalities.json').read_text())
    assert summary['seed'] == 3 and summary['iters'] == 2 and summary['iters2'] == 2
    assert summary['img_pretrain_iters'] == 2
    # --lidar-dropout: the fused stage 2 trains with LiDAR dropped from 1/4 of its samples; the others as before
    assert summary['lidar_dropout'] is True and summary['fused_config'] is None
    assert summary['stage2_configs'] == {**summary['configs'], 'lidar-camera': LIDAR_DROPOUT}
    dumped = (out / 'stage2_lidar-camera' / Path(LIDAR_DROPOUT).name).read_text()
    assert "type='LidarAbsent'" in dumped and 'prob=0.25' in dumped
    assert 'LidarAbsent' not in (out / 'stage2_lidar' / Path(summary['configs']['lidar']).name).read_text()
    for result in summary['results'].values():
        assert 0.0 <= next(v for k, v in result['metrics'].items() if k.endswith('/NDS')) <= 1.0
    assert summary['checkpoints'] == {
        **{n: str(out / n / 'iter_2.pth') for n in ('lidar', 'camera')},
        **{f'stage2_{n}': str(out / f'stage2_{n}' / 'iter_2.pth') for n in names}}

    branches = {name: _weights(out / f'stage2_{name}') for name in names}
    camera, lidar = {'img_backbone', 'img_neck', 'view_transform'}, {'pts_middle_encoder'}
    assert camera | lidar <= branches['lidar-camera']
    assert lidar <= branches['lidar'] and not camera & branches['lidar']
    assert camera <= branches['camera'] and not lidar & branches['camera']
    for name in ('lidar', 'camera'):  # the --iters budget reached each runner; stage 2 starts from stage 1
        assert (out / name / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
        assert _weights(out / name) == branches[name]
    for name in names:  # --checkpoint-interval 1: every stage-2 iteration kept (the benchmark's plateau curve)
        assert sorted(p.name for p in (out / f'stage2_{name}').glob('iter_*.pth')) == ['iter_1.pth', 'iter_2.pth']
    # ... and each evaluated: the last point is the table's stage-2 row, the earlier one its own evaluation
    assert list(summary['curves']) == names
    for name in names:
        curve = summary['curves'][name]
        assert list(curve) == ['1', '2'] and curve['2'] == summary['results'][f'{name} (stage 2)']
        assert curve['1'] == json.loads((out / f'metrics_stage2_{name}_iter1.json').read_text())
        assert 'iter_1.pth' in (out / f'test_stage2_{name}_iter1.log').read_text()
    curve_rows = table[table.index('') + 3:]
    assert [row.split('|')[1].strip() for row in curve_rows] == names
    assert table[table.index('') + 1].startswith('| stage 2, val NDS / mAP at | 1 | 2 |')
    assert not (out / 'lidar-camera').exists()
    assert f'Load checkpoint from {out / "lidar" / "iter_2.pth"}' in (out / 'stage2_lidar.log').read_text()
    pretrained = torch.load(out / 'img_pretrain.pth', map_location='cpu', weights_only=False)['state_dict']
    assert {k.split('.')[0] for k in pretrained} == camera  # stage 0 holds the camera branch only
    assert f'Load checkpoint from {out / "img_pretrain.pth"}' in (out / 'camera.log').read_text()
    assert 'img_pretrain' not in (out / 'lidar.log').read_text()
    assert f'Load checkpoint from {out / "stage2_fused_init.pth"}' in (out / 'stage2_lidar-camera.log').read_text()
    # side by side: the two stage-1 trainings overlapped in time
    starts = [first.stdout.index(f'stage 1: train {n} ...') for n in ('lidar', 'camera')]
    assert max(starts) < min(first.stdout.index(f'stage 1: train {n} done') for n in ('lidar', 'camera'))

    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert ' done in ' not in again.stdout and 'stale' not in again.stdout  # every stage reused, none rerun
    # data, stage 0, 5 trainings, 5 evaluations, fused init, 3 evaluations of the stage-2 iteration-1 checkpoints
    assert again.stdout.count(': reused (key ') == 16

    # --fused-variant: everything above is reused, only the fused stage 2 trains once more with the other config,
    # from the same init and schedule, and is evaluated with the fused model's config (its curve too)
    variant = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus_lidar-dropout_cam-lr0.1.py'
    third = subprocess.run([*cmd, '--fused-variant', f'cam-lr0.1={variant}'], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert third.stdout.count(' done in ') == 1 + 2 and 'stale' not in third.stdout  # 1 training, 2 evaluations
    log = (out / 'stage2_lidar-camera_cam-lr0.1.log').read_text()
    assert f'Load checkpoint from {out / "stage2_fused_init.pth"}' in log
    dumped = (out / 'stage2_lidar-camera_cam-lr0.1' / Path(variant).name).read_text()
    assert 'img_backbone=dict(lr_mult=0.1)' in dumped and 'max_iters=2' in dumped
    summary = json.loads((out / 'modalities.json').read_text())
    assert summary['fused_variants'] == {'lidar-camera_cam-lr0.1': variant}
    assert list(summary['curves']) == [*names, 'lidar-camera_cam-lr0.1']
    assert list(summary['curves']['lidar-camera_cam-lr0.1']) == ['1', '2']
    assert summary['results']['lidar-camera_cam-lr0.1 (stage 2)'] == json.loads(
        (out / 'metrics_stage2_lidar-camera_cam-lr0.1.json').read_text())
    assert (out / 'modalities.md').read_text().count('lidar-camera_cam-lr0.1') == 2  # its result row and curve row
