"""tools/compare_modalities.py: the camera branch pretrained on 2D targets (stage 0), the three variants trained
(stage 1; camera-only and fused load stage 0), then continued / fused from the single-sensor checkpoints (stage 2),
same seed and budget, each with only its sensors, one table."""
import json
import subprocess
import sys

import pytest
import torch

from zoo import REPO

pytest.importorskip('mmdet3d')


def _weights(work_dir) -> set[str]:
    ckpt = (work_dir / 'last_checkpoint').read_text().strip()
    return {k.split('.')[0] for k in torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']}


def test_three_variants_trained_evaluated_and_tabled(tmp_path):
    out, data = tmp_path / 'out', tmp_path / 'data'
    cmd = [sys.executable, 'tools/compare_modalities.py', '--work-dir', str(out), '--data-root', str(data),
           '--num-train', '3', '--num-val', '2', '--iters', '2', '--img-pretrain-iters', '2', '--seed', '3']
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (data / 'nuscenes_infos_train.pkl').is_file()

    table = (out / 'modalities.md').read_text().splitlines()
    names = ['lidar-camera', 'lidar', 'camera']
    assert [row.split('|')[1].strip() for row in table[2:]] == [f'{n} (stage {s})' for s in (1, 2) for n in names]
    summary = json.loads((out / 'modalities.json').read_text())
    assert summary['seed'] == 3 and summary['iters'] == 2 and summary['iters2'] == 2
    assert summary['img_pretrain_iters'] == 2
    for result in summary['results'].values():
        assert 0.0 <= next(v for k, v in result['metrics'].items() if k.endswith('/NDS')) <= 1.0

    branches = {name: _weights(out / name) for name in ('lidar-camera', 'lidar', 'camera')}
    camera, lidar = {'img_backbone', 'img_neck', 'view_transform'}, {'pts_middle_encoder'}
    assert camera | lidar <= branches['lidar-camera']
    assert lidar <= branches['lidar'] and not camera & branches['lidar']
    assert camera <= branches['camera'] and not lidar & branches['camera']
    for name in branches:  # the --iters budget reached each runner; stage 2 starts from stage 1
        assert (out / name / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
        assert (out / f'stage2_{name}' / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
        assert _weights(out / f'stage2_{name}') == branches[name]
    assert f'Load checkpoint from {out / "lidar" / "iter_2.pth"}' in (out / 'stage2_lidar.log').read_text()
    pretrained = torch.load(out / 'img_pretrain.pth', map_location='cpu', weights_only=False)['state_dict']
    assert {k.split('.')[0] for k in pretrained} == camera  # stage 0 holds the camera branch only
    for name in ('lidar-camera', 'camera'):  # stage 1 of the camera models starts from it, LiDAR-only does not
        assert f'Load checkpoint from {out / "img_pretrain.pth"}' in (out / f'{name}.log').read_text()
    assert 'img_pretrain' not in (out / 'lidar.log').read_text()
    assert f'Load checkpoint from {out / "stage2_fused_init.pth"}' in (out / 'stage2_lidar-camera.log').read_text()

    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert ' done in ' not in again.stdout and 'stale' not in again.stdout  # every stage reused, none rerun
    assert again.stdout.count(': reused (key ') == 15  # data, stage 0, 6 trainings, 6 evaluations, fused init
