"""Degraded-sensor corruptions on the real nuScenes keyframe (6 cameras + LIDAR_TOP) loaded by mmdet3d's pipeline:
each test recomputes with NumPy exactly what a transform should remove."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmdet3d')
import cv2  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401  (registers the transforms)
from mmdet3d.datasets.transforms import Pack3DDetInputs  # noqa: E402
from mmdet3d.registry import DATASETS, TRANSFORMS  # noqa: E402
from mmdet3d.structures import LiDARPoints  # noqa: E402
from mmprune4u_plugin.datasets.corruptions import (CORRUPTIONS, CameraBlackout, CameraBlur,  # noqa: E402
                                                   CameraLowLight, LidarAbsent, LidarBeamReduce, LidarRangeDrop,
                                                   sample_rng, with_corruption)

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get('MMPRUNE4U_SHARED_DATA', REPO.parent / 'shared' / 'data'))
CONFIG = REPO / 'configs' / 'bevfusion_lite' / 'bevfusion-lite_tiny_lidar-cam_1xb1-short_nus-sample.py'
HDL32E = np.linspace(-30.67, 10.67, 32)  # beam elevations (deg), ring 0 the lowest


@pytest.fixture(scope='module')
def cfg():
    if not (SHARED_DATA / 'nuscenes-v1.0-mini-sample').is_dir():
        pytest.skip(f'real nuScenes sample {SHARED_DATA} is absent (it lives in ../shared/data beside the repo)')
    init_default_scope('mmdet3d')
    patch = pytest.MonkeyPatch()
    patch.setenv('MMPRUNE4U_SHARED_DATA', str(SHARED_DATA.resolve()))  # the config's data_root, whatever the cwd
    yield Config.fromfile(str(CONFIG))
    patch.undo()


def load(cfg, pipeline: list) -> dict:
    dataset = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset.pipeline = pipeline
    return DATASETS.build(dataset)[0]


@pytest.fixture(scope='module')
def keyframe(cfg) -> dict:
    """The keyframe as the BEVFusion-Lite test pipeline leaves it before packing: 6 views of 128x352 float32, the
    points (x, y, z, intensity, ring) inside the point cloud range."""
    return load(cfg, cfg.test_pipeline[:-1])


@pytest.fixture
def sample(keyframe) -> dict:
    return copy.deepcopy(keyframe)


def xyz_ring(results: dict) -> tuple[np.ndarray, np.ndarray]:
    array = results['points'].tensor.numpy()
    return array, array[:, 4].astype(int)


def elevation_rings(array: np.ndarray) -> np.ndarray:
    """Nearest HDL-32E beam of each point's elevation seen from the sensor origin (argmin, not the module's round)."""
    elevation = np.degrees(np.arctan2(array[:, 2].astype(np.float64), np.hypot(array[:, 0], array[:, 1])))
    return np.abs(elevation[:, None] - HDL32E[None]).argmin(1)


@pytest.mark.parametrize('keep_every', [2, 4])
def test_beam_reduce_keeps_exactly_the_rings_divisible_by_k(sample, keep_every):
    array, ring = xyz_ring(sample)
    kept = LidarBeamReduce(keep_every=keep_every)(sample)['points']
    assert isinstance(kept, LiDARPoints) and kept.points_dim == 5
    np.testing.assert_array_equal(kept.tensor.numpy(), array[ring % keep_every == 0])  # same rows, same order
    assert set(np.unique(kept.tensor[:, 4].numpy().astype(int))) == set(range(0, 32, keep_every))


def test_elevation_rings_match_the_ring_column_beyond_the_sensor_body(sample):
    """Beams are 1.33 deg apart. The lasers sit a few cm to ~0.1 m off the sensor origin, which tilts the elevation
    seen from the origin by ~offset / range: above half the spacing (0.67 deg) within a few metres, far below it
    beyond 10 m. Near the sensor the keyframe also holds no-return placeholders at ~0.45 m (a quarter of the scan
    lies within 3 m), so the rate over all points is low (0.67 measured) while beyond 10 m it must be ~1 (1.0
    measured; 0.99 allows a few odd returns)."""
    array, ring = xyz_ring(sample)
    agree = elevation_rings(array) == ring
    far = np.hypot(array[:, 0], array[:, 1]) >= 10.0
    assert far.sum() > 5000 and agree[far].mean() >= 0.99
    assert 0.5 < agree.mean() < 1.0  # the near points do disagree: the column is the truth where a scan has it


@pytest.mark.parametrize('keep_every', [2, 4])
def test_beam_reduce_without_ring_column_follows_the_elevation(sample, keep_every):
    array, ring = xyz_ring(sample)
    derived = elevation_rings(array)
    kept = LidarBeamReduce(keep_every=keep_every, ring_dim=None)(sample)['points'].tensor.numpy()
    np.testing.assert_array_equal(kept, array[derived % keep_every == 0])
    # a point is kept differently than with the ring column only where its two rings differ
    differs = (derived % keep_every == 0) != (ring % keep_every == 0)
    assert differs.sum() <= (derived != ring).sum()
    far = np.hypot(array[:, 0], array[:, 1]) >= 10.0
    assert differs[far].mean() <= 0.01


def test_range_drop_removes_exactly_the_points_beyond_30_m(sample):
    array, _ = xyz_ring(sample)
    horizontal = np.hypot(array[:, 0].astype(np.float64), array[:, 1].astype(np.float64))
    kept = LidarRangeDrop(max_range=30.0)(sample)['points'].tensor.numpy()
    np.testing.assert_array_equal(kept, array[horizontal <= 30.0])
    assert len(array) - len(kept) == np.count_nonzero(horizontal > 30.0) > 0


def test_absent_lidar_leaves_zero_points_that_still_pack(sample):
    points = LidarAbsent()(sample)['points']
    assert type(points) is LiDARPoints and len(points) == 0 and points.points_dim == 5
    packed = Pack3DDetInputs(keys=['points', 'img'])(sample)
    assert tuple(packed['inputs']['points'].shape) == (0, 5)
    assert tuple(packed['inputs']['img'].shape) == (6, 3, 128, 352)


def black_views(imgs) -> list[int]:
    return [i for i, view in enumerate(imgs) if not view.any()]


def test_one_camera_black_zeros_one_view_and_leaves_the_others_bit_identical(sample, keyframe):
    out = CameraBlackout(views='one')(sample)['img']
    [black] = black_views(out)
    for i, (before, after) in enumerate(zip(keyframe['img'], out)):
        assert after.shape == before.shape and after.dtype == before.dtype
        if i != black:
            np.testing.assert_array_equal(after, before)


def test_one_camera_black_is_a_function_of_seed_and_sample(keyframe):
    def chosen(seed: int, results: dict = keyframe) -> int:
        return black_views(CameraBlackout(views='one', seed=seed)(dict(results))['img'])[0]

    choices = [chosen(seed) for seed in range(12)]
    assert choices == [chosen(seed) for seed in range(12)]  # same (seed, sample): same camera
    assert len(set(choices)) > 1  # P(12 seeds agree by chance) = 6 ** -11
    assert len({chosen(0, {**keyframe, 'sample_idx': i}) for i in range(12)}) > 1
    # without a sample_idx a hash of the LiDAR path keys the choice (no salted hash(), no counter)
    no_idx = {k: v for k, v in keyframe.items() if k != 'sample_idx'}
    assert [chosen(3, no_idx) for _ in range(3)] == [chosen(3, no_idx)] * 3
    assert len({chosen(3, {**no_idx, 'lidar_path': f'scan_{i}.bin'}) for i in range(12)}) > 1
    with pytest.raises(KeyError, match='sample_idx'):
        sample_rng({}, 0)


def test_one_camera_black_on_a_stacked_array(keyframe):
    stacked = np.stack(keyframe['img'])
    out = CameraBlackout(views='one')({**keyframe, 'img': stacked})['img']
    assert out.shape == stacked.shape and out.dtype == stacked.dtype
    [black] = black_views(out)
    np.testing.assert_array_equal(np.delete(out, black, 0), np.delete(stacked, black, 0))


def test_all_cameras_black(sample, keyframe):
    out = CameraBlackout(views='all')(sample)['img']
    assert black_views(out) == list(range(6))
    assert [(v.shape, v.dtype) for v in out] == [(v.shape, v.dtype) for v in keyframe['img']]


def mean_abs_laplacian(view: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(view.astype(np.float64), cv2.CV_64F)).mean())


@pytest.mark.parametrize('sigma', [2.0, 4.0])
def test_blur_removes_high_frequencies_and_keeps_brightness(sample, keyframe, sigma):
    """A step edge of height h has sum |Laplacian| = 2h across it; blurred with sigma it is 2h / (sigma sqrt(2 pi))
    (the L1 norm of the Gaussian's derivative). Texture finer than an edge drops more, so each view's mean
    |Laplacian| falls at least to 1 / (sigma sqrt(2 pi)) (0.20 for 2 px, 0.10 for 4 px; measured 0.11, 0.03-0.04).
    A normalised kernel with reflected borders keeps the mean (measured within 0.05%)."""
    out = CameraBlur(sigma=sigma)(sample)['img']
    for before, after in zip(keyframe['img'], out):
        assert after.shape == before.shape and after.dtype == before.dtype
        assert mean_abs_laplacian(after) < mean_abs_laplacian(before) / (sigma * np.sqrt(2 * np.pi))
        assert after.mean() == pytest.approx(before.mean(), rel=0.01)


def test_low_light_scales_brightness_by_the_gain_with_seeded_noise(keyframe):
    """Noise is zero-mean and clipping at 255 never happens (0.2 * 255 + 6 std < 255), so the mean can only rise
    above gain * mean, through clipping at 0, by at most E[max(0, noise)] = std / sqrt(2 pi) per pixel."""
    gain, read = 0.2, 3.0
    out = CameraLowLight(gain=gain, noise_std=read, shot_scale=1.0)(dict(keyframe))['img']
    before, after = np.stack(keyframe['img']).astype(np.float64), np.stack(out)
    assert after.dtype == np.float32 and after.min() >= 0 and after.max() <= 255
    std = np.sqrt(read ** 2 + gain * before)
    assert gain * before.mean() - 0.05 <= after.mean() <= gain * before.mean() + (std / np.sqrt(2 * np.pi)).mean()
    assert after.mean() / before.mean() == pytest.approx(gain, rel=0.03)
    again = np.stack(CameraLowLight(gain=gain)(dict(keyframe))['img'])
    other = np.stack(CameraLowLight(gain=gain, seed=1)(dict(keyframe))['img'])
    np.testing.assert_array_equal(after, again)
    assert not np.array_equal(after, other)


def test_camera_corruptions_keep_uint8_images(keyframe):
    imgs = [np.round(view).astype(np.uint8) for view in keyframe['img']]
    for transform in (CameraBlackout(), CameraBlur(), CameraLowLight()):
        out = transform({**keyframe, 'img': list(imgs)})['img']
        assert [(v.shape, v.dtype) for v in out] == [(v.shape, np.dtype(np.uint8)) for v in imgs]


@pytest.mark.parametrize('transform, kwargs, message', [
    (LidarBeamReduce, dict(keep_every=0), 'keep_every: 0'),
    (LidarBeamReduce, dict(num_beams=1), 'num_beams: 1'),
    (LidarBeamReduce, dict(elevations_deg=(10.0, -30.0)), 'elevations_deg'),
    (LidarRangeDrop, dict(max_range=0.0), 'max_range: 0.0'),
    (LidarRangeDrop, dict(max_range=-5), 'max_range: -5'),
    (CameraBlackout, dict(views='two'), "views: 'two'"),
    (CameraBlur, dict(sigma=0), 'sigma: 0'),
    (CameraLowLight, dict(gain=0.0), 'gain: 0.0'),
    (CameraLowLight, dict(gain=1.5), 'gain: 1.5'),
    (CameraLowLight, dict(noise_std=-1.0), 'noise_std: -1.0'),
])
def test_bad_arguments_raise(transform, kwargs, message):
    with pytest.raises(ValueError, match=message):
        transform(**kwargs)


def test_beam_reduce_refuses_a_missing_ring_column(sample):
    sample['points'] = sample['points'][:, :4]
    with pytest.raises(ValueError, match='ring_dim'):
        LidarBeamReduce(ring_dim=4)(sample)


@pytest.mark.parametrize('name', sorted(CORRUPTIONS))
def test_presets_build_from_config(name):
    for cfg in CORRUPTIONS[name]:
        transform = TRANSFORMS.build(cfg)
        assert type(transform).__name__ == cfg['type']


LIDAR = ['lidar_beams_1/2', 'lidar_beams_1/4', 'lidar_range_30m', 'lidar_absent']
CAMERA = ['camera_one_black', 'camera_all_black', 'camera_blur', 'camera_low_light']


def test_with_corruption_places_each_preset_after_its_sensor_steps(cfg):
    pipeline = cfg.test_pipeline
    types = [step['type'] for step in pipeline]
    assert types == ['LoadMultiViewImageFromFiles', 'MultiViewImageResizeCrop', 'LoadPointsFromFile',
                     'PointsRangeFilter', 'Pack3DDetInputs']
    for name in LIDAR + CAMERA:
        corrupted = with_corruption(pipeline, name)
        at = 4 if name in LIDAR else 2  # after PointsRangeFilter / after the image resize
        assert [s['type'] for s in corrupted] == types[:at] + [CORRUPTIONS[name][0]['type']] + types[at:]
    assert with_corruption(pipeline, 'lidar_beams_1/2')[4]['ring_dim'] == 4  # the ring is loaded in column 4
    assert with_corruption(pipeline, 'camera_one_black', seed=7)[2]['seed'] == 7
    assert [s['type'] for s in pipeline] == types  # the input is not modified


def test_with_corruption_derives_rings_where_the_pipeline_loses_the_column():
    load = dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5)
    sweeps = [load, dict(type='LoadPointsFromMultiSweeps', sweeps_num=9), dict(type='Pack3DDetInputs', keys=[])]
    corrupted = with_corruption(sweeps, 'lidar_beams_1/4')
    assert corrupted[2]['type'] == 'LidarBeamReduce' and corrupted[2]['ring_dim'] is None  # column 4 is the time lag
    assert with_corruption([{**load, 'use_dim': 4}], 'lidar_beams_1/2')[1]['ring_dim'] is None
    assert with_corruption([{**load, 'use_dim': [0, 1, 2, 4]}], 'lidar_beams_1/2')[1]['ring_dim'] == 3


def test_with_corruption_rejects_unknown_names_and_missing_steps(cfg):
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        with_corruption(cfg.test_pipeline, 'fog')
    lidar_only = [s for s in cfg.test_pipeline if 'Image' not in s['type']]
    with pytest.raises(ValueError, match="'camera_blur' needs one of"):
        with_corruption(lidar_only, 'camera_blur')
    with pytest.raises(ValueError, match='after Pack3DDetInputs'):
        with_corruption([dict(type='Pack3DDetInputs', keys=[]), dict(type='LoadPointsFromFile')], 'lidar_absent')


@pytest.mark.parametrize('name', LIDAR + CAMERA)
def test_corrupted_test_pipelines_run_and_pack(cfg, keyframe, name):
    packed = load(cfg, with_corruption(cfg.test_pipeline, name))
    points, imgs = packed['inputs']['points'].numpy(), packed['inputs']['img'].numpy()
    array, ring = xyz_ring(keyframe)
    expected = {'lidar_beams_1/2': ring % 2 == 0, 'lidar_beams_1/4': ring % 4 == 0,
                'lidar_range_30m': np.hypot(array[:, 0].astype(float), array[:, 1].astype(float)) <= 30.0,
                'lidar_absent': np.zeros(len(array), bool)}.get(name, np.ones(len(array), bool))
    np.testing.assert_array_equal(points, array[expected])
    black = [i for i, view in enumerate(imgs) if not view.any()]
    if name == 'camera_one_black':
        assert len(black) == 1
    else:
        assert black == (list(range(6)) if name == 'camera_all_black' else [])
