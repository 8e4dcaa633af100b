"""Parts of the synthetic nuScenes generator: rig calibration, scene layouts, LiDAR ray casting, camera rendering."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from mmprune4u_plugin.datasets.appearance import Appearance
from mmprune4u_plugin.datasets.ground import GroundStyle
from mmprune4u_plugin.datasets.lidar_sim import LidarSpec, _slab, ray_box_hits, simulate_scan
from mmprune4u_plugin.datasets.nuscenes_calib import BUILTIN_RIG, CAMERAS, DEFAULT_SAMPLE_PKL, load_rig_calibration
from mmprune4u_plugin.datasets.render import CameraModel, Lighting, box_polygons, render_camera
from mmprune4u_plugin.datasets.scene_sampler import (CLASSES, LOOKALIKE_PAIRS, REFLECTIVITY, SIZE, bev_corners,
                                                     rectangles_overlap, sample_scene)


@pytest.mark.skipif(not DEFAULT_SAMPLE_PKL.is_file(), reason='real nuScenes sample not present')
def test_builtin_rig_is_the_real_sample():
    real = load_rig_calibration()
    assert real.source == str(DEFAULT_SAMPLE_PKL)
    np.testing.assert_array_equal(real.lidar2ego, BUILTIN_RIG.lidar2ego)
    for cam in CAMERAS:
        np.testing.assert_array_equal(real.cam2img[cam], BUILTIN_RIG.cam2img[cam])
        np.testing.assert_array_equal(real.cam2ego[cam], BUILTIN_RIG.cam2ego[cam])


def test_missing_explicit_calibration_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='sample_pkl'):
        load_rig_calibration(tmp_path / 'nope.pkl')


def test_camera_calib_is_consistent_and_scaled():
    lidar2ego = BUILTIN_RIG.level_lidar2ego()
    np.testing.assert_allclose(lidar2ego[:3, 3], BUILTIN_RIG.lidar2ego[:3, 3])
    np.testing.assert_allclose(lidar2ego[2, :3], [0, 0, 1])  # levelled
    np.testing.assert_allclose(lidar2ego[:2, 0], BUILTIN_RIG.lidar2ego[:2, 0] / np.hypot(*BUILTIN_RIG.lidar2ego[:2, 0]))
    calib = BUILTIN_RIG.camera_calib((400, 225))
    for cam in CAMERAS:
        np.testing.assert_allclose(calib[cam]['cam2ego'] @ calib[cam]['lidar2cam'], lidar2ego, atol=1e-12)
        np.testing.assert_allclose(calib[cam]['cam2img'][:2], BUILTIN_RIG.cam2img[cam][:2] / 4)


def test_scene_layout_is_plausible():
    for a, b in LOOKALIKE_PAIRS:  # only the cameras can tell these apart
        np.testing.assert_array_equal(SIZE[a], SIZE[b])
        assert REFLECTIVITY[a] == REFLECTIVITY[b]
    seen = set()
    for seed in range(8):
        objs = sample_scene(np.random.default_rng(seed))
        seen |= set(objs.labels.tolist())
        np.testing.assert_allclose(objs.centers[:, 2], objs.dims[:, 2] / 2)  # on the ground
        assert (np.hypot(objs.centers[:, 0], objs.centers[:, 1]) <= 55.0 + 1e-9).all()
        rects = [bev_corners(c[0], c[1], d[0], d[1], y) for c, d, y in zip(objs.centers, objs.dims, objs.yaws)]
        assert not any(rectangles_overlap(rects[i], rects[j]) for i in range(len(rects)) for j in range(i))
        ratio = objs.dims / np.stack([SIZE[CLASSES[k]] for k in objs.labels])
        assert ((ratio > 0.7) & (ratio < 1.4)).all()
    assert seen == set(range(10))


def test_culled_ray_casting_equals_brute_force():
    rng = np.random.default_rng(3)
    spec = LidarSpec()
    n = 30
    centers = np.c_[rng.uniform(-40, 40, (n, 2)), rng.uniform(-1.5, 0.5, n)]
    dims, yaws = rng.uniform(0.4, 12, (n, 3)), rng.uniform(-3, 3, n)
    t, idx, _ = ray_box_hits(spec, 0.002, centers, dims, yaws)
    dirs, _ = spec.directions(0.002)
    all_t = np.stack([_slab(dirs, c, d, y)[0] for c, d, y in zip(centers, dims, yaws)], 1)
    np.testing.assert_array_equal(t, all_t.min(1))
    np.testing.assert_array_equal(idx, np.where(np.isfinite(all_t.min(1)), all_t.argmin(1), -1))


def _scan(centers, dims, seed=0, **kw):
    centers, dims = np.atleast_2d(centers).astype(float), np.atleast_2d(dims).astype(float)
    return simulate_scan(np.random.default_rng(seed), LidarSpec(**kw), ground_z=-1.84, centers=centers, dims=dims,
                         yaws=np.zeros(len(centers)), reflectivity=np.full(len(centers), 40.0),
                         ground_reflectivity=lambda p: np.full(len(p), 10.0))


def test_lidar_hits_nearest_surface_and_gets_sparse_with_range():
    box = np.array([4.0, 2.0, 1.6])
    near = _scan([10.0, 0.0, -1.04], box)
    front = near[(np.abs(near[:, 1]) < 0.9) & (near[:, 2] > -1.7) & (near[:, 2] < -0.4)]
    np.testing.assert_allclose(front[:, 0], 8.0, atol=0.08)  # the face at x = 10 - l/2
    ring = near[:, 4].astype(int)
    el = np.degrees(np.arcsin(near[:, 2] / np.linalg.norm(near[:, :3], axis=1)))
    np.testing.assert_allclose(el, np.linspace(-30.67, 10.67, 32)[ring], atol=0.2)
    ground = near[(near[:, 2] < -1.7) & ((near[:, 0] < 7.5) | (np.abs(near[:, 1]) > 1.5))]
    np.testing.assert_allclose(ground[:, 2], -1.84, atol=0.08)

    def n_obj(scan):
        return int((scan[:, 2] > -1.7).sum())
    assert n_obj(near) > 4 * n_obj(_scan([40.0, 0.0, -1.04], box))
    assert n_obj(_scan([90.0, 0.0, -1.04], box)) == 0  # beyond max range


def test_lidar_occlusion():
    both = _scan([[10.0, 0.0, -1.04], [20.0, 0.0, -1.04]], [[2.0, 4.0, 1.6], [2.0, 2.0, 1.6]])
    behind = both[(both[:, 0] > 18.0) & (both[:, 2] > -1.7)]
    assert len(behind) == 0  # the far box hides entirely behind the near, wider one


def _camera(size=(400, 225)):
    calib = BUILTIN_RIG.camera_calib(size)['CAM_FRONT']
    return CameraModel(calib['cam2img'], calib['cam2ego'], size), calib


def _render(boxes, light=Lighting(), size=(400, 225)):
    cam, calib = _camera(size)
    polys = [box_polygons(np.array(c, float), np.array(d, float), 0.0, Appearance(np.tile(rgb, (5, 1))),
                          np.asarray(light.sun)) for c, d, rgb in boxes]
    img, ids = render_camera(cam, polys, GroundStyle(), light, np.random.default_rng(0), 1.0)
    return img, ids, calib


def _project(calib, p_ego):
    lidar2ego = BUILTIN_RIG.level_lidar2ego()
    p_lidar = np.linalg.inv(lidar2ego) @ np.array([*p_ego, 1.0])
    p_cam = calib['lidar2cam'] @ p_lidar
    uv = calib['cam2img'] @ p_cam[:3]
    return int(round(uv[0] / uv[2])), int(round(uv[1] / uv[2]))


def test_render_projects_like_the_calibration_and_occludes():
    red, blue = np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.1, 0.9])
    for order in (1, -1):  # the nearer box wins whatever the drawing order
        boxes = [((12.0, 0.0, 0.8), (2.0, 2.0, 1.6), red), ((25.0, 0.0, 1.5), (2.0, 6.0, 3.0), blue)][::order]
        img, ids, calib = _render(boxes)
        near_id = 0 if order == 1 else 1
        u, v = _project(calib, (12.0, 0.0, 0.8))
        assert ids[v, u] == near_id
        b, g, r = img[v, u].astype(int)
        assert r > 2 * b  # red in BGR
        u, v = _project(calib, (25.0, 2.5, 2.5))  # the far box's visible corner region
        assert ids[v, u] == 1 - near_id
    img, ids, calib = _render([])
    assert (ids == -1).all()


def test_cameras_lose_contrast_with_distance():
    light = Lighting(noise=0.0)
    red = np.array([0.9, 0.1, 0.1])
    contrast = []
    for x in (10.0, 60.0):
        img, ids, calib = _render([((x, 0.0, 0.8), (2.0, 2.0, 1.6), red)], light)
        u, v = _project(calib, (x, 0.0, 0.8))
        b, g, r = img[v, u].astype(int)
        contrast.append(r - b)
    assert contrast[1] < 0.6 * contrast[0]


def test_builtin_constants_loaded_without_sample(tmp_path, monkeypatch):
    monkeypatch.setenv('MMPRUNE4U_NUSC_SAMPLE_PKL', str(tmp_path / 'absent.pkl'))
    assert load_rig_calibration() is BUILTIN_RIG
    with open(tmp_path / 'rig.pkl', 'wb') as f:  # a minimal info pkl is read
        info = dict(images={c: dict(cam2img=np.eye(3).tolist(), cam2ego=np.eye(4).tolist()) for c in CAMERAS},
                    lidar_points=dict(lidar2ego=np.eye(4).tolist()))
        pickle.dump(dict(data_list=[info]), f)
    np.testing.assert_array_equal(load_rig_calibration(tmp_path / 'rig.pkl').lidar2ego, np.eye(4))
