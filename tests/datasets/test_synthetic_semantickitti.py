"""Synthetic SemanticKITTI generator: determinism, KITTI odometry / SemanticKITTI file formats, mmdet3d's label
mapping on the real sample and on the synthetic data, the 64 beams, materials, and the camera-only classes."""
from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmprune4u_plugin.datasets.lidar_sim import LidarSpec, simulate_scan
from mmprune4u_plugin.datasets.semantickitti_scene import (CAMERA_ONLY, FLAT_RHO, OBJECT_MATERIAL, RAW_IDS,
                                                           TERRAIN_RHO, THINGS)
from mmprune4u_plugin.datasets.synthetic_semantickitti import (KITTI_CALIB, LIDAR_HEIGHT, SyntheticSemanticKittiConfig,
                                                               generate_synthetic_semantickitti, hdl64e)

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get('MMPRUNE4U_SHARED_DATA', REPO.parent / 'shared' / 'data'))
CFG = SyntheticSemanticKittiConfig(seed=0, frames=2)
SPLITS = {'train': (0,), 'val': (8,), 'test': (11,)}
# mmdet3d's 19 train classes (its spelling) that each synthetic class must land in
INTENDED = {'car': 'car', 'truck': 'truck', 'person': 'person', 'bicyclist': 'bicyclist', 'road': 'road',
            'lane-marking': 'road', 'parking': 'parking', 'sidewalk': 'sidewalk', 'building': 'building',
            'fence': 'fence', 'vegetation': 'vegetation', 'trunk': 'trunck', 'terrain': 'terrian', 'pole': 'pole',
            'traffic-sign': 'traffic-sign'}


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('skitti_a')
    generate_synthetic_semantickitti(root, SPLITS, CFG)
    return root


def _infos(root: Path, split: str) -> dict:
    return pickle.loads((root / f'semantickitti_infos_{split}.pkl').read_bytes())


def _scans(root: Path):
    """(info, points (N, 4), raw semantic (N,), instance (N,)) of every frame."""
    for split in SPLITS:
        for info in _infos(root, split)['data_list']:
            pts = np.fromfile(root / info['lidar_points']['lidar_path'], np.float32).reshape(-1, 4)
            label = np.fromfile(root / info['pts_semantic_mask_path'], np.uint32)
            yield info, pts, (label & 0xFFFF).astype(np.int64), (label >> 16).astype(np.int64)


def _all(root: Path):
    _, pts, sem, inst = zip(*_scans(root))
    return np.concatenate(pts), np.concatenate(sem), np.concatenate(inst)


def test_same_seed_same_bytes_any_subset_or_workers_other_seed_other_data(dataset, tmp_path):
    files = _files(dataset)
    generate_synthetic_semantickitti(tmp_path / 'sub', {'val': (8,)}, CFG)  # sequence 08 alone
    sub = _files(tmp_path / 'sub')
    assert {k: v for k, v in sub.items() if k.startswith('sequences/')} == \
        {k: v for k, v in files.items() if k.startswith('sequences/08/')}
    assert sub['semantickitti_infos_val.pkl'] == files['semantickitti_infos_val.pkl']
    generate_synthetic_semantickitti(tmp_path / 'par', SPLITS, CFG, workers=2)
    assert _files(tmp_path / 'par') == files
    generate_synthetic_semantickitti(tmp_path / 'other', {'val': (8,)}, SyntheticSemanticKittiConfig(seed=1, frames=2))
    assert (tmp_path / 'other/sequences/08/velodyne/000000.bin').read_bytes() != \
        files['sequences/08/velodyne/000000.bin']


@pytest.mark.parametrize('kwargs, message', [
    (dict(image_scale=2.0), '`image_scale` must be in'), (dict(frames=0), '`frames` must be >= 1'),
    (dict(frame_step=0.0), '`frame_step` must be > 0')])
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSemanticKittiConfig(**kwargs)


@pytest.mark.parametrize('splits, workers, message', [
    ({'train': (0,), 'val': (0,)}, 1, '`splits` must hold disjoint'), ({'train': (100,)}, 1, '`splits` must hold'),
    ({'train': (0,)}, 0, '`workers` must be >= 1')])
def test_bad_arguments_are_rejected(tmp_path, splits, workers, message):
    with pytest.raises(ValueError, match=message):
        generate_synthetic_semantickitti(tmp_path, splits, CFG, workers=workers)


def test_file_formats(dataset):
    for info, pts, sem, inst in _scans(dataset):
        assert (dataset / info['lidar_points']['lidar_path']).stat().st_size == pts.size * 4 == len(sem) * 16
        assert len(pts) > 20000 and np.isfinite(pts).all()
        assert pts[:, 3].min() >= 0 and pts[:, 3].max() <= 1  # KITTI remission
        assert set(np.unique(sem)) <= set(RAW_IDS.values())
        thing = np.isin(sem, [RAW_IDS[c] for c in THINGS])
        assert (inst[thing] > 0).all() and (inst[~thing] == 0).all()
        for i in np.unique(inst[thing]):  # one instance, one class
            assert len(np.unique(sem[inst == i])) == 1
        img = cv2.imread(str(dataset / info['images']['CAM2']['img_path']))
        assert img.shape == (info['images']['CAM2']['height'], info['images']['CAM2']['width'], 3) == (188, 621, 3)
    for seq in (0, 8, 11):
        root = dataset / 'sequences' / f'{seq:02d}'
        calib = dict(line.split(':') for line in (root / 'calib.txt').read_text().splitlines())
        assert list(calib) == ['P0', 'P1', 'P2', 'P3', 'Tr']
        tr = np.array(calib['Tr'].split(), float).reshape(3, 4)
        np.testing.assert_allclose(tr, KITTI_CALIB['Tr'], rtol=1e-9)
        p2 = np.array(calib['P2'].split(), float).reshape(3, 4)
        np.testing.assert_allclose(p2, np.diag([0.5, 0.5, 1.0]) @ np.array(KITTI_CALIB['P2']), rtol=1e-9)
        poses = np.loadtxt(root / 'poses.txt').reshape(-1, 3, 4)
        assert len(poses) == CFG.frames
        for f, pose in enumerate(poses):  # straight drive: cam 0 moves f * step along its optical axis (~ lidar x)
            np.testing.assert_allclose(pose[:, :3], np.eye(3), atol=1e-9)
            np.testing.assert_allclose(pose[:, 3], tr[:, :3] @ [f * CFG.frame_step, 0, 0], atol=1e-9)


def test_builtin_calibration_is_the_real_kitti_sample():
    path = SHARED_DATA / 'kitti-sample' / '000008.pkl'
    if not path.is_file():
        pytest.skip(f'real KITTI sample {path} is absent (it lives in ../shared/data beside the repo)')
    images = pickle.loads(path.read_bytes())['data_list'][0]['images']
    for i in range(4):
        np.testing.assert_array_equal(np.array(images[f'CAM{i}']['cam2img'])[:3], KITTI_CALIB[f'P{i}'])
    np.testing.assert_array_equal(np.array(images['CAM2']['lidar2cam'])[:3], KITTI_CALIB['Tr'])


def test_info_pkls_have_the_converter_format(dataset):
    spec = importlib.util.find_spec('mmdet3d')
    if spec is None:
        pytest.skip('mmdet3d is not installed')
    path = Path(spec.origin).parent / '.mim' / 'tools' / 'dataset_converters' / 'semantickitti_converter.py'
    conv_spec = importlib.util.spec_from_file_location('semantickitti_converter', path)
    conv = importlib.util.module_from_spec(conv_spec)
    conv_spec.loader.exec_module(conv)
    reference = conv.get_semantickitti_info('val')  # sequence 08, the same as our val split
    ours = _infos(dataset, 'val')
    assert ours['metainfo']['DATASET'] == reference['metainfo']['DATASET'] == 'SemanticKITTI'
    assert len(ours['data_list']) == CFG.frames
    for mine, ref in zip(ours['data_list'], reference['data_list']):
        assert {k: mine[k] for k in ref} == ref
        cam = mine['images']['CAM2']
        np.testing.assert_allclose(np.array(cam['lidar2img']), np.array(cam['cam2img']) @ np.array(cam['lidar2cam']))
    assert [i['lidar_points']['lidar_path'] for i in _infos(dataset, 'test')['data_list']] == \
        [f'sequences/11/velodyne/{f:06d}.bin' for f in range(CFG.frames)]
    real = SHARED_DATA / 'semantickitti-sample' / 'semantickitti_infos.pkl'
    if real.is_file():  # the real sample's keys are a subset of ours
        info = pickle.loads(real.read_bytes())['data_list'][0]
        assert set(info) <= set(ours['data_list'][0])
        assert set(info['lidar_points']) <= set(ours['data_list'][0]['lidar_points'])


@pytest.mark.mmdet3d
def test_labels_map_like_the_real_sample_through_the_mmdet3d_pipeline(dataset):
    pytest.importorskip('mmdet3d')
    real = SHARED_DATA / 'semantickitti-sample'
    if not real.is_dir():
        pytest.skip(f'real SemanticKITTI sample {real} is absent (it lives in ../shared/data beside the repo)')
    from mmengine.config import Config

    from mmdet3d.datasets import SemanticKittiDataset
    from mmdet3d.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    import mmdet3d
    base = Config.fromfile(Path(mmdet3d.__file__).parent / '.mim/configs/_base_/datasets/semantickitti.py')
    pipeline = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
                dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
                     seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
                dict(type='PointSegClassMapping'),
                dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])]
    common = dict(pipeline=pipeline, metainfo=base.metainfo, modality=dict(use_lidar=True, use_camera=False),
                  ignore_index=19, test_mode=False)
    sets = {'real': SemanticKittiDataset(data_root=str(real), ann_file='semantickitti_infos.pkl',
                                         data_prefix=dict(pts='sequences/00/velodyne',
                                                          pts_semantic_mask='sequences/00/labels'), **common),
            'synthetic': SemanticKittiDataset(data_root=str(dataset), ann_file='semantickitti_infos_train.pkl',
                                              **common)}
    classes = sets['synthetic'].metainfo['classes']
    pairs = {}
    for name, ds in sets.items():
        mapping = {}
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            out = ds[i]
            raw = np.fromfile(info['pts_semantic_mask_path'], np.uint32) & 0xFFFF
            train = out['data_samples'].gt_pts_seg.pts_semantic_mask.numpy()
            assert out['inputs']['points'].shape == (len(raw), 4)
            for r in np.unique(raw):
                assert len(np.unique(train[raw == r])) == 1
                mapping[int(r)] = int(train[raw == r][0])
        pairs[name] = mapping
    shared = set(pairs['real']) & set(pairs['synthetic'])
    assert shared >= {50, 70, 71, 80}  # building, vegetation, trunk, pole are in both
    assert {r: pairs['real'][r] for r in shared} == {r: pairs['synthetic'][r] for r in shared}
    expect = {RAW_IDS[c]: classes.index(t) for c, t in INTENDED.items()}
    assert {r: t for r, t in pairs['synthetic'].items()} == {r: expect[r] for r in pairs['synthetic']}
    assert 19 not in pairs['synthetic'].values()
    assert set(pairs['synthetic']) == set(RAW_IDS.values())  # every class appears in two scans of one street


def test_64_beams_by_elevation_ring(dataset):
    pts, _, _ = _all(dataset)
    el = np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
    beams = np.linspace(-24.8, 2.0, 64)
    ring = np.abs(el[:, None] - beams[None]).argmin(1)
    assert np.abs(el - beams[ring]).max() < 0.01  # every point sits on one of the 64 rings
    assert len(np.unique(ring)) == 64
    assert hdl64e().num_beams == 64


def test_remission_follows_each_material(dataset):
    pts, sem, _ = _all(dataset)
    rem = pts[:, 3] * 255
    rng_ = np.hypot(pts[:, 0], pts[:, 1])
    falloff = 1 / np.sqrt(1 + (80 / 30) ** 2)  # the simulator's range term at the farthest return
    ranges = {RAW_IDS[c]: lohi for c, lohi in OBJECT_MATERIAL.items()}
    flat = ('road', 'lane-marking', 'parking', 'sidewalk')
    ranges.update({RAW_IDS[c]: (0.8 * FLAT_RHO, 1.2 * FLAT_RHO) for c in flat})
    ranges[RAW_IDS['terrain']] = (0.7 * TERRAIN_RHO, 1.3 * TERRAIN_RHO)
    for raw, (lo, hi) in ranges.items():
        r = rem[sem == raw]
        assert len(r), raw
        assert r.max() <= min(255, hi * np.exp(0.5)) + 0.5, raw  # 5 sigma of the log-normal noise
        assert r.min() >= lo * 0.5 * falloff * np.exp(-0.5) - 0.5, raw
    med = {c: np.median(rem[(sem == RAW_IDS[c]) & (rng_ < 30)]) for c in RAW_IDS}
    assert med['traffic-sign'] > med['pole'] > med['road'] and med['vegetation'] > med['trunk']
    assert med['terrain'] > 1.3 * med['road']  # grass is LiDAR-visible


def test_camera_only_classes_look_alike_to_the_lidar_and_differ_in_the_image(dataset):
    pts, sem, _ = _all(dataset)
    flat = {c: (pts[sem == RAW_IDS[c], 2], pts[sem == RAW_IDS[c], 3]) for c in CAMERA_ONLY}
    for c, (z, rem) in flat.items():
        assert np.abs(z + LIDAR_HEIGHT).max() < 0.1, c  # one plane
    meds = [np.median(rem) for _, rem in flat.values()]
    iqr = [np.percentile(rem, [25, 75]) for _, rem in flat.values()]
    assert max(meds) - min(meds) < 0.02 and max(lo for lo, _ in iqr) < min(hi for _, hi in iqr)
    zmed = [np.median(z) for z, _ in flat.values()]
    assert max(zmed) - min(zmed) < 0.01

    compared = 0
    for info, p, s, _ in _scans(dataset):
        cam = info['images']['CAM2']
        rgb = cv2.imread(str(dataset / cam['img_path']))[..., ::-1].astype(float)
        h = np.c_[p[:, :3], np.ones(len(p))] @ np.array(cam['lidar2img']).T
        z = h[:, 2]
        u, v = np.round(h[:, 0] / z).astype(int), np.round(h[:, 1] / z).astype(int)
        ok = (z > 1) & (z < 25) & (u >= 0) & (u < cam['width']) & (v >= 0) & (v < cam['height'])
        colours = {c: rgb[v[ok & (s == RAW_IDS[c])], u[ok & (s == RAW_IDS[c])]] for c in CAMERA_ONLY}
        colours = {c: x for c, x in colours.items() if len(x) >= 30}
        names = sorted(colours)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                gap = np.linalg.norm(np.median(colours[a], 0) - np.median(colours[b], 0))
                spread = max(colours[a].std(0).mean(), colours[b].std(0).mean())
                assert gap > 20 and gap > 2 * spread, (info['sample_id'], a, b, gap, spread)
                compared += 1
    assert compared >= 6


def test_scan_index_is_opt_in_and_leaves_the_points_unchanged():
    spec = LidarSpec(num_beams=8, azimuth_steps=90)
    kw = dict(ground_z=-1.8, centers=np.array([[6.0, 0.0, -0.8]]), dims=np.array([[2.0, 2.0, 2.0]]),
              yaws=np.array([0.3]), reflectivity=np.array([50.0]), ground_reflectivity=lambda p: np.full(len(p), 10.))
    plain = simulate_scan(np.random.default_rng(0), spec, **kw)
    pts, idx = simulate_scan(np.random.default_rng(0), spec, **kw, return_index=True)
    np.testing.assert_array_equal(plain, pts)
    assert set(np.unique(idx)) == {-1, 0}
    np.testing.assert_allclose(pts[idx == -1, 2], -1.8, atol=0.1)


def test_cli_parses_sequences_and_writes_three_splits(tmp_path, capsys):
    path = REPO / 'tools' / 'create_synthetic_semantickitti.py'
    spec = importlib.util.spec_from_file_location('create_synthetic_semantickitti', path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.parse_seqs('0-7,9,10') == (0, 1, 2, 3, 4, 5, 6, 7, 9, 10) and cli.parse_seqs('') == ()
    cli.main(['--out-dir', str(tmp_path), '--train-seqs', '3', '--val-seqs', '4', '--test-seqs', '',
              '--frames', '1', '--azimuth-steps', '256', '--image-scale', '0.25'])
    assert 'semantickitti_infos_val.pkl' in capsys.readouterr().out
    assert len(_infos(tmp_path, 'train')['data_list']) == 1 and _infos(tmp_path, 'test')['data_list'] == []
