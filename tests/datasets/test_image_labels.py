"""Per-pixel 2D targets of the synthetic renderings (class and depth), and the pretraining tool's target helpers."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mmprune4u_plugin.datasets import SceneGenerator, SyntheticNuScenesConfig, generate_synthetic_nuscenes
from mmprune4u_plugin.datasets.appearance import Appearance
from mmprune4u_plugin.datasets.ground import GroundStyle
from mmprune4u_plugin.datasets.nuscenes_calib import BUILTIN_RIG, CAMERAS
from mmprune4u_plugin.datasets.render import CameraModel, Lighting, box_polygons, rasterize, render_camera
from mmprune4u_plugin.datasets.scene_sampler import CLASSES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools'))
from pretrain_image_backbone import cell_depth_bins, generator_for  # noqa: E402

CFG = SyntheticNuScenesConfig(seed=3, image_scale=0.125)


def _front_camera(size=(400, 225)):
    calib = BUILTIN_RIG.camera_calib(size)['CAM_FRONT']
    return CameraModel(calib['cam2img'], calib['cam2ego'], size)


def _pixel_and_depth(cam: CameraModel, p_ego):
    p = cam.ego2cam[:3, :3] @ np.asarray(p_ego, float) + cam.ego2cam[:3, 3]
    u, v = p[0] / p[2] * cam.k[0, 0] + cam.k[0, 2], p[1] / p[2] * cam.k[1, 1] + cam.k[1, 2]
    return int(round(u)), int(round(v)), p[2]


def test_rasterize_gives_the_visible_face_its_object_and_depth_and_hides_the_occluded_one():
    cam, light = _front_camera(), Lighting()
    near = ((12.0, 0.0, 0.8), (2.0, 2.0, 1.6))  # front face at x = 11
    far = ((25.0, 0.0, 0.8), (2.0, 1.0, 1.2))  # entirely behind the near box
    polys = [box_polygons(np.array(c), np.array(d), 0.0, Appearance(np.full((5, 3), 0.5)), np.asarray(light.sun))
             for c, d in (near, far)]
    img, depth, ids = rasterize(cam, polys, GroundStyle(), light)
    u, v, z = _pixel_and_depth(cam, (11.0, 0.0, 0.8))  # the centre of the near box's front face
    assert ids[v, u] == 0
    assert depth[v, u] == pytest.approx(z, rel=1e-3)  # the plane depth of the face along the pixel's ray
    assert not (ids == 1).any()  # the far box is hidden
    # the full render draws the same instance map (the post effects touch only the colours)
    _bgr, ids_render = render_camera(cam, polys, GroundStyle(), light, np.random.default_rng(0), 1.0)
    np.testing.assert_array_equal(ids_render, ids)
    sky = ~np.isfinite(depth)
    assert sky.any() and (ids[sky] == -1).all()


def test_image_labels_class_map_is_the_visible_objects_class(tmp_path):
    gen = SceneGenerator(CFG, tmp_path)
    info = gen.scene('train', 0)
    labels = gen.image_labels('train', 0)
    assert set(labels) == set(CAMERAS)
    seen = set()
    for cam, (classes, depth) in labels.items():
        assert classes.shape == depth.shape == gen.size[::-1] and classes.dtype == np.int8
        obj = classes >= 0
        assert np.isfinite(depth[obj]).all() and (depth[obj] > 0).all()  # every object pixel has a surface
        seen |= set(np.unique(classes[obj]).tolist())
    assert seen and seen <= {inst['bbox_label'] for inst in info['instances']}
    assert all(0 <= k < len(CLASSES) for k in seen)


def test_image_labels_draw_nothing_from_the_scene_random_stream(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    generate_synthetic_nuscenes(a, 1, 0, CFG)
    gen = SceneGenerator(CFG, b)
    gen.image_labels('train', 0)  # before and between: the written scene stays the same bytes
    gen.scene('train', 0)
    for path in sorted((a / 'samples').rglob('*.*')):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path


def test_labels_only_generator_from_metainfo_and_tool_check(tmp_path):
    generate_synthetic_nuscenes(tmp_path, 1, 1, CFG)
    gen, split, infos = generator_for(tmp_path / 'nuscenes_infos_val.pkl')
    assert gen.out_dir is None and split == 'val' and len(infos) == 1
    ref = SceneGenerator(CFG, tmp_path / 'x').image_labels('val', 0)
    for cam, (classes, depth) in gen.image_labels('val', 0).items():
        np.testing.assert_array_equal(classes, ref[cam][0])
        np.testing.assert_array_equal(depth, ref[cam][1])
    with pytest.raises(ValueError, match='not a synthetic set'):
        SceneGenerator.from_metainfo({'version': 'v1.0-mini'})


def test_cell_depth_bins_take_the_nearest_surface_in_range():
    depth = np.full((4, 8), np.inf, np.float32)  # 2x4 cells of 2x2 pixels; dbound 1..5 m, 1 m bins
    depth[0, 0], depth[1, 1] = 3.5, 2.2  # cell (0, 0): nearest 2.2 -> bin 1
    depth[0, 2] = 0.5  # cell (0, 1): below dmin only -> none
    depth[2, 4], depth[3, 5] = 4.99, 7.0  # cell (1, 2): 4.99 -> bin 3 (7.0 out of range)
    depth[2, 6] = 0.0  # cell (1, 3): zero padding -> none
    bins = cell_depth_bins(depth, (2, 4), (1.0, 5.0, 1.0))
    np.testing.assert_array_equal(bins, [[1, -1, -1, -1], [-1, -1, 3, -1]])
