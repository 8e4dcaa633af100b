"""Synthetic nuScenes generator: determinism, the mmdet3d 1.x info format, and LiDAR / camera / box consistency."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from mmprune4u_plugin.datasets import SceneGenerator, SyntheticNuScenesConfig, generate_synthetic_nuscenes
from mmprune4u_plugin.datasets.lidar_sim import points_in_boxes
from mmprune4u_plugin.datasets.nuscenes_calib import CAMERAS
from mmprune4u_plugin.datasets.scene_sampler import CLASSES

CFG = SyntheticNuScenesConfig(seed=0, image_scale=0.125)
NUSC_PREFIX = dict(pts='samples/LIDAR_TOP', sweeps='sweeps/LIDAR_TOP',
                   **{cam: f'samples/{cam}' for cam in CAMERAS})


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('synth_a')
    generate_synthetic_nuscenes(root, 3, 1, CFG)
    return root


def _infos(root: Path, split: str = 'train') -> dict:
    with open(root / f'nuscenes_infos_{split}.pkl', 'rb') as f:
        return pickle.load(f)


def test_same_seed_same_bytes_other_seed_other_data(dataset, tmp_path):
    generate_synthetic_nuscenes(tmp_path / 'b', 3, 1, CFG)
    assert _files(dataset) == _files(tmp_path / 'b')
    generate_synthetic_nuscenes(tmp_path / 'c', 1, 0, SyntheticNuScenesConfig(seed=1, image_scale=0.125))
    a, c = _infos(dataset)['data_list'][0], _infos(tmp_path / 'c')['data_list'][0]
    assert [i['bbox_3d'] for i in a['instances']] != [i['bbox_3d'] for i in c['instances']]
    pa = np.fromfile(dataset / 'samples/LIDAR_TOP' / a['lidar_points']['lidar_path'], np.float32)
    pc = np.fromfile(tmp_path / 'c/samples/LIDAR_TOP' / c['lidar_points']['lidar_path'], np.float32)
    assert pa.shape != pc.shape or not np.array_equal(pa, pc)


def test_a_scene_depends_only_on_seed_split_and_index(dataset, tmp_path):
    info = SceneGenerator(CFG, tmp_path).scene('train', 2)  # alone, in a fresh generator
    assert pickle.dumps(info) == pickle.dumps(_infos(dataset)['data_list'][2])
    for cam in CAMERAS:
        name = info['images'][cam]['img_path']
        assert (tmp_path / 'samples' / cam / name).read_bytes() == (dataset / 'samples' / cam / name).read_bytes()


def test_worker_count_does_not_change_the_output(dataset, tmp_path):
    generate_synthetic_nuscenes(tmp_path, 3, 1, CFG, workers=2)
    assert _files(dataset) == _files(tmp_path)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match='image_scale'):
        SyntheticNuScenesConfig(image_scale=0.0)
    with pytest.raises(ValueError, match='num_objects'):
        SyntheticNuScenesConfig(num_objects=(5, 2))
    with pytest.raises(ValueError, match='num_val'):
        generate_synthetic_nuscenes(tmp_path, 1, -1)


def test_info_format_matches_mmdet3d_1x_nuscenes(dataset):
    data = _infos(dataset)
    meta = data['metainfo']
    assert meta['categories'] == {c: i for i, c in enumerate(CLASSES)}
    assert (meta['dataset'], meta['info_version']) == ('nuscenes', '1.1')
    assert meta['synthetic']['image_size'] == (200, 112)
    info = data['data_list'][0]
    assert {'sample_idx', 'token', 'timestamp', 'ego2global', 'images', 'lidar_points', 'lidar_sweeps',
            'instances'} <= set(info)
    assert info['lidar_sweeps'] == [] and info['lidar_points']['num_pts_feats'] == 5
    assert list(info['images']) == list(CAMERAS)
    for cam in info['images'].values():
        assert {'img_path', 'cam2img', 'lidar2cam', 'cam2ego', 'sample_data_token', 'timestamp'} <= set(cam)
        k = np.array(cam['cam2img'])
        assert k.shape == (3, 3) and 0 < k[0, 2] < 200 and 0 < k[1, 2] < 112
    ins = info['instances'][0]
    assert set(ins) == {'bbox_label', 'bbox_3d', 'bbox_3d_isvalid', 'bbox_label_3d', 'num_lidar_pts',
                        'num_radar_pts', 'velocity'}
    assert len(ins['bbox_3d']) == 7 and len(ins['velocity']) == 2
    labels = [i['bbox_label_3d'] for d in data['data_list'] for i in d['instances']]
    assert len(set(labels)) >= 6  # a few scenes already hold most classes


def test_boxes_and_points_are_consistent(dataset):
    """Gravity-centre boxes enclose their LiDAR returns; num_lidar_pts counts them; boxes stand on the ground."""
    for info in _infos(dataset)['data_list']:
        pts = np.fromfile(dataset / 'samples/LIDAR_TOP' / info['lidar_points']['lidar_path'], np.float32)
        pts = pts.reshape(-1, 5)
        assert np.isin(pts[:, 4], np.arange(32)).all() and (pts[:, 3] >= 0).all() and (pts[:, 3] <= 255).all()
        boxes = np.array([i['bbox_3d'] for i in info['instances']])
        ground_z = -info['lidar_points']['lidar2ego'][2][3]
        np.testing.assert_allclose(boxes[:, 2] - boxes[:, 5] / 2, ground_z, atol=1e-6)
        counts = points_in_boxes(pts, boxes[:, :3], boxes[:, 3:6], boxes[:, 6]).sum(0)
        assert counts.tolist() == [i['num_lidar_pts'] for i in info['instances']]
        above = pts[pts[:, 2] > ground_z + 0.15]
        grown = points_in_boxes(above, boxes[:, :3], boxes[:, 3:6] + 0.4, boxes[:, 6]).sum(0)
        exact = points_in_boxes(above, boxes[:, :3], boxes[:, 3:6], boxes[:, 6]).sum(0)
        many = grown >= 20
        assert many.sum() >= 3
        assert (exact[many] >= 0.95 * grown[many]).all()  # a wrong yaw/centre convention fails this


def test_every_object_projects_into_some_camera(dataset):
    for info in _infos(dataset)['data_list']:
        for ins in info['instances']:
            c = np.array([*ins['bbox_3d'][:3], 1.0])
            if np.hypot(c[0], c[1]) < 4.0:
                continue
            seen = []
            for cam in info['images'].values():
                p = np.array(cam['lidar2cam']) @ c
                uv = (np.array(cam['cam2img']) @ p[:3])[:2] / p[2]
                seen.append(p[2] > 0 and 0 <= uv[0] < 200 and 0 <= uv[1] < 112)
            assert any(seen), ins


@pytest.mark.mmdet3d
def test_nuscenes_dataset_loads_it(dataset):
    pytest.importorskip('mmdet3d')
    from mmdet3d.datasets import NuScenesDataset
    from mmdet3d.structures import LiDARInstance3DBoxes
    from mmdet3d.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    pipeline = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
                dict(type='LoadMultiViewImageFromFiles', to_float32=False, num_views=6),
                dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
                dict(type='Pack3DDetInputs', keys=['points', 'img', 'gt_bboxes_3d', 'gt_labels_3d'])]
    ds = NuScenesDataset(data_root=str(dataset), ann_file='nuscenes_infos_train.pkl', pipeline=pipeline,
                         data_prefix=NUSC_PREFIX, metainfo=dict(classes=CLASSES),
                         modality=dict(use_lidar=True, use_camera=True), test_mode=False)
    assert len(ds) == 3
    out = ds[0]
    info = _infos(dataset)['data_list'][0]
    assert out['inputs']['points'].shape[1] == 5
    assert tuple(out['inputs']['img'].shape) == (6, 3, 112, 200)
    sample = out['data_samples']
    np.testing.assert_allclose(np.array(sample.metainfo['lidar2cam']),
                               np.array([info['images'][c]['lidar2cam'] for c in CAMERAS]))
    boxes = sample.gt_instances_3d.bboxes_3d
    assert isinstance(boxes, LiDARInstance3DBoxes)
    valid = [i for i in info['instances'] if i['num_lidar_pts'] > 0]
    assert len(boxes) == len(valid)
    np.testing.assert_allclose(boxes.gravity_center.numpy(), np.array([i['bbox_3d'][:3] for i in valid]),
                               atol=1e-4)
    assert sample.gt_instances_3d.labels_3d.tolist() == [i['bbox_label_3d'] for i in valid]


def test_cli_writes_both_splits(tmp_path, capsys):
    import importlib.util
    path = Path(__file__).resolve().parents[2] / 'tools' / 'create_synthetic_nuscenes.py'
    spec = importlib.util.spec_from_file_location('create_synthetic_nuscenes', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(['--out-dir', str(tmp_path), '--num-train', '2', '--num-val', '1', '--seed', '3',
               '--image-scale', '0.1'])
    assert 'scenes/min' in capsys.readouterr().out
    assert len(_infos(tmp_path, 'train')['data_list']) == 2 and len(_infos(tmp_path, 'val')['data_list']) == 1
    info = _infos(tmp_path, 'val')['data_list'][0]
    assert _infos(tmp_path, 'val')['metainfo']['synthetic']['image_size'] == (160, 90)
    assert (tmp_path / 'samples' / 'CAM_BACK' / info['images']['CAM_BACK']['img_path']).is_file()
