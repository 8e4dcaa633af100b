"""Deterministic synthetic nuScenes-format dataset: LiDAR sweeps, six camera images and mmdet3d 1.x info pkls.

The output loads unchanged with mmdet3d 1.4's ``NuScenesDataset`` and its transforms, with the usual nuScenes
``data_prefix`` (``pts='samples/LIDAR_TOP'``, ``CAM_FRONT='samples/CAM_FRONT'``, ...)::

    <out_dir>/nuscenes_infos_train.pkl, nuscenes_infos_val.pkl
    <out_dir>/samples/LIDAR_TOP/<name>__LIDAR_TOP__<us>.pcd.bin    float32 (x, y, z, intensity, ring)
    <out_dir>/samples/CAM_*/<name>__CAM_*__<us>.jpg                 1600x900 x image_scale

Frames (nuScenes'): boxes, points and velocities in the LiDAR frame; ``lidar2ego`` is the real one levelled (see
:mod:`.nuscenes_calib`); ``ego2global`` is a random planar pose per scene. ``bbox_3d`` is
``[x, y, z, l, w, h, yaw]`` with (x, y, z) the gravity centre, l along the heading and yaw counter-clockwise from
the LiDAR x axis: the convention of mmdet3d 1.x nuScenes infos, which ``NuScenesDataset`` reads with
``origin=(0.5, 0.5, 0.5)`` (checked on the real sample: its ``num_lidar_pts`` match the points inside its boxes
read this way, and not read as bottom centres). Every scene is its own random draw (no sweeps, no temporal
continuity); scene ``i`` of a split depends only on ``(seed, split, i)``, so any subset or worker count gives the
same bytes.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .appearance import sample_appearance
from .ground import GroundStyle
from .lidar_sim import LidarSpec, points_in_boxes, simulate_scan
from .nuscenes_calib import CAMERAS, FULL_IMAGE_SIZE, load_rig_calibration
from .render import CameraModel, Lighting, box_polygons, rasterize, render_camera
from .scene_sampler import CLASSES, sample_scene
from .task_pool import map_tasks

SPLITS = {'train': 0, 'val': 1}
GENERATOR_VERSION = '1.0'
SURFACE_INSET = 0.04  # metres between an object's LiDAR surface and its annotated box


@dataclass(frozen=True)
class SyntheticNuScenesConfig:
    """Knobs of the generator.

    Args:
        seed (int): global seed. Defaults to 0.
        image_scale (float): camera images are ``round(1600 * s) x round(900 * s)`` with intrinsics scaled to
            match. Defaults to 0.25.
        num_objects (tuple): inclusive range of object placements per scene. Defaults to (10, 30).
        max_dist (float): objects lie within this distance (m) of the ego. Defaults to 55.
        lidar (LidarSpec): the LiDAR. Defaults to nuScenes' HDL-32E.
        jpeg_quality (int): JPEG quality. Defaults to 90.
        sample_pkl (str, optional): real nuScenes info pkl for the calibrations; None uses the shared sample or
            the built-in copy of it.
        version (str): ``metainfo['version']``. Defaults to 'v1.0-synthetic'.
    """

    seed: int = 0
    image_scale: float = 0.25
    num_objects: tuple = (10, 30)
    max_dist: float = 55.0
    lidar: LidarSpec = field(default_factory=LidarSpec)
    jpeg_quality: int = 90
    sample_pkl: str | None = None
    version: str = 'v1.0-synthetic'

    def __post_init__(self) -> None:
        if not 0.05 <= self.image_scale <= 1.0:
            raise ValueError(f'`image_scale` must be in [0.05, 1], but got image_scale: {self.image_scale}')
        if not 1 <= self.num_objects[0] <= self.num_objects[1]:
            raise ValueError(f'`num_objects` must be (lo, hi) with 1 <= lo <= hi, but got num_objects: '
                             f'{self.num_objects}')


def _token(*parts) -> str:
    return hashlib.md5('/'.join(map(str, ('synthetic-nuscenes', *parts))).encode()).hexdigest()


def _planar_pose(rng: np.random.Generator) -> np.ndarray:
    yaw = rng.uniform(-np.pi, np.pi)
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:2, 3] = rng.uniform(0.0, 3000.0, 2)
    return pose


class SceneGenerator:
    """Renders scenes of one configuration into ``out_dir``.

    Args:
        cfg (SyntheticNuScenesConfig): the configuration.
        out_dir (str, optional): dataset root; None for a generator that only gives :meth:`image_labels`.
    """

    def __init__(self, cfg: SyntheticNuScenesConfig, out_dir: str | os.PathLike | None) -> None:
        self.cfg = cfg
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.rig = load_rig_calibration(cfg.sample_pkl)
        self.size = tuple(int(round(n * cfg.image_scale)) for n in FULL_IMAGE_SIZE)
        self.lidar2ego = self.rig.level_lidar2ego()
        self.calib = self.rig.camera_calib(self.size)
        self.cameras = {cam: CameraModel(c['cam2img'], c['cam2ego'], self.size) for cam, c in self.calib.items()}
        for sensor in ('LIDAR_TOP', *CAMERAS) if self.out_dir is not None else ():
            (self.out_dir / 'samples' / sensor).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_metainfo(cls, metainfo: dict) -> 'SceneGenerator':
        """A labels-only generator (``out_dir=None``) of the configuration an info pkl's ``metainfo`` records.

        The calibrations come from the default source (the shared sample, else the built-in copy of it).
        """
        gen = metainfo.get('synthetic')
        if gen is None:
            raise ValueError('not a synthetic set: metainfo has no "synthetic" entry')
        if gen['generator_version'] != GENERATOR_VERSION:
            raise ValueError(f'the set was written by generator {gen["generator_version"]}, this is '
                             f'{GENERATOR_VERSION}: regenerate it')
        cfg = SyntheticNuScenesConfig(seed=gen['seed'], image_scale=gen['image_scale'],
                                      num_objects=tuple(gen['num_objects']), max_dist=gen['max_dist'],
                                      lidar=LidarSpec(**gen['lidar']), jpeg_quality=gen['jpeg_quality'])
        return cls(cfg, None)

    def metainfo(self, split: str) -> dict:
        gen = dict(generator_version=GENERATOR_VERSION, split=split, seed=self.cfg.seed,
                   image_scale=self.cfg.image_scale, image_size=self.size, num_objects=tuple(self.cfg.num_objects),
                   max_dist=self.cfg.max_dist, lidar=asdict(self.cfg.lidar), jpeg_quality=self.cfg.jpeg_quality,
                   calib_source=Path(self.rig.source).name,
                   notes='lidar2ego levelled (real translation + yaw); lidar2cam = inv(cam2ego) @ lidar2ego; '
                         'bbox_3d gravity centre (l, w, h, yaw) in the LiDAR frame')
        return dict(categories={c: i for i, c in enumerate(CLASSES)}, dataset='nuscenes', version=self.cfg.version,
                    info_version='1.1', synthetic=gen)

    def _layout(self, split: str, idx: int) -> tuple:
        """The scene's random draws up to its pose: ``(rng, objects, looks, ground, light, ego2global)``; ``rng``
        goes on to the LiDAR scan and the camera noise."""
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, SPLITS[split], idx]))
        objs = sample_scene(rng, num_objects=self.cfg.num_objects, max_dist=self.cfg.max_dist)
        looks = [sample_appearance(CLASSES[k], rng) for k in objs.labels]
        ground, light = GroundStyle.sample(rng), Lighting.sample(rng)
        return rng, objs, looks, ground, light, _planar_pose(rng)

    def image_labels(self, split: str, idx: int) -> dict:
        """Per-pixel targets of scene ``idx``'s camera images (nothing is written; the same scene as :meth:`scene`).

        Returns:
            dict: per camera, ``(classes, depth)`` at the image size: ``classes`` (H, W) int8, the CLASSES index of
            the object each pixel sees (-1 for ground and sky); ``depth`` (H, W) float32, the camera-frame z of the
            surface it sees (inf for sky).
        """
        _rng, objs, looks, ground, light, _pose = self._layout(split, idx)
        polygons = [box_polygons(c, d, y, a, np.asarray(light.sun))
                    for c, d, y, a in zip(objs.centers, objs.dims, objs.yaws, looks)]
        labels = np.append(np.asarray(objs.labels, np.int8), np.int8(-1))  # id -1 (background) -> class -1
        out = {}
        for cam in CAMERAS:
            _img, depth, ids = rasterize(self.cameras[cam], polygons, ground, light)
            out[cam] = (labels[ids], depth)
        return out

    def scene(self, split: str, idx: int) -> dict:
        """Generate, write and return the info of scene ``idx`` of ``split``."""
        rng, objs, looks, ground, light, ego2global = self._layout(split, idx)

        rot, trans = self.lidar2ego[:3, :3], self.lidar2ego[:3, 3]
        lidar_yaw = np.arctan2(rot[1, 0], rot[0, 0])
        centers = (objs.centers - trans) @ rot  # ego -> LiDAR
        yaws = (objs.yaws - lidar_yaw + np.pi) % (2 * np.pi) - np.pi
        vels = objs.velocities @ rot[:2, :2]

        def ground_rho(p_lidar: np.ndarray) -> np.ndarray:
            p_ego = p_lidar @ rot.T + trans
            return ground.reflectivity(p_ego[:, 0], p_ego[:, 1])

        # Surfaces sit 4 cm inside the annotated box (annotations enclose their points, as in nuScenes).
        surface_dims = objs.dims - 2 * np.minimum(SURFACE_INSET, 0.1 * objs.dims)
        points = simulate_scan(rng, self.cfg.lidar, ground_z=-trans[2], centers=centers, dims=surface_dims,
                               yaws=yaws, reflectivity=objs.reflectivity, ground_reflectivity=ground_rho)
        num_pts = points_in_boxes(points, centers, objs.dims, yaws).sum(0)

        scene_id = SPLITS[split] * 10_000_000 + idx
        stamp = 1_700_000_000.0 + 20.0 * scene_id
        name = f'synth-s{self.cfg.seed}-{split}-{idx:06d}'
        lidar_file = f'{name}__LIDAR_TOP__{int(stamp * 1e6)}.pcd.bin'
        points.tofile(self.out_dir / 'samples' / 'LIDAR_TOP' / lidar_file)

        polygons = [box_polygons(c, d, y, a, np.asarray(light.sun))
                    for c, d, y, a in zip(objs.centers, objs.dims, objs.yaws, looks)]
        blur = 1.2 * self.size[0] / 400.0
        images = {}
        for cam in CAMERAS:
            bgr, _ = render_camera(self.cameras[cam], polygons, ground, light, rng, blur)
            img_file = f'{name}__{cam}__{int(stamp * 1e6)}.jpg'
            ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
            if not ok:
                raise RuntimeError(f'JPEG encoding failed for {img_file}')
            (self.out_dir / 'samples' / cam / img_file).write_bytes(buf.tobytes())
            c = self.calib[cam]
            images[cam] = dict(img_path=img_file, cam2img=c['cam2img'].tolist(), cam2ego=c['cam2ego'].tolist(),
                               sample_data_token=_token(self.cfg.seed, split, idx, cam), timestamp=stamp,
                               lidar2cam=c['lidar2cam'].tolist())
        instances = [dict(bbox_label=int(k), bbox_3d=[*map(float, c), *map(float, d), float(y)],
                          bbox_3d_isvalid=bool(n > 0), bbox_label_3d=int(k), num_lidar_pts=int(n), num_radar_pts=0,
                          velocity=[float(v[0]), float(v[1])])
                     for k, c, d, y, n, v in zip(objs.labels, centers, objs.dims, yaws, num_pts, vels)]
        return dict(sample_idx=idx, token=_token(self.cfg.seed, split, idx), timestamp=stamp,
                    ego2global=ego2global.tolist(), images=images,
                    lidar_points=dict(num_pts_feats=5, lidar_path=lidar_file, lidar2ego=self.lidar2ego.tolist()),
                    lidar_sweeps=[], instances=instances)


_WORKER: SceneGenerator | None = None


def _init_worker(cfg: SyntheticNuScenesConfig, out_dir: str) -> None:
    global _WORKER
    cv2.setNumThreads(1)
    _WORKER = SceneGenerator(cfg, out_dir)


def _work(task: tuple[str, int]) -> dict:
    return _WORKER.scene(*task)


def generate_synthetic_nuscenes(out_dir: str | os.PathLike, num_train: int, num_val: int,
                                cfg: SyntheticNuScenesConfig | None = None, *, workers: int = 1,
                                log=None) -> dict:
    """Write a synthetic nuScenes-format dataset.

    Args:
        out_dir (str): dataset root (created).
        num_train (int): scenes in ``nuscenes_infos_train.pkl``.
        num_val (int): scenes in ``nuscenes_infos_val.pkl``.
        cfg (SyntheticNuScenesConfig, optional): generator settings. Defaults to the defaults.
        workers (int): processes; the output does not depend on it. Defaults to 1.
        log (callable, optional): called with progress strings.

    Returns:
        dict: ``{'train': pkl path, 'val': pkl path, 'seconds': wall time, 'scenes_per_minute': rate}``.
    """
    for arg, val in (('num_train', num_train), ('num_val', num_val)):
        if val < 0:
            raise ValueError(f'`{arg}` must be >= 0, but got {arg}: {val}')
    if workers < 1:
        raise ValueError(f'`workers` must be >= 1, but got workers: {workers}')
    cfg = cfg or SyntheticNuScenesConfig()
    out_dir = Path(out_dir)
    gen = SceneGenerator(cfg, out_dir)
    tasks = [(s, i) for s, n in (('train', num_train), ('val', num_val)) for i in range(n)]
    start = time.perf_counter()

    def progress(k: int) -> None:
        if log is not None and (k % 25 == 0 or k == len(tasks)):
            log(f'[synthetic nuScenes] {k}/{len(tasks)} scenes, {60.0 * k / (time.perf_counter() - start):.0f} '
                'scenes/min')
    infos = map_tasks(tasks, gen.scene, workers=workers, init=_init_worker, init_args=(cfg, str(out_dir)),
                      work=_work, on_result=progress)
    out = {}
    for split in SPLITS:
        data_list = [info for (s, _), info in zip(tasks, infos) if s == split]
        path = out_dir / f'nuscenes_infos_{split}.pkl'
        with open(path, 'wb') as f:
            pickle.dump(dict(metainfo=gen.metainfo(split), data_list=data_list), f, protocol=4)
        out[split] = str(path)
    out['seconds'] = time.perf_counter() - start
    out['scenes_per_minute'] = 60.0 * len(tasks) / max(out['seconds'], 1e-9)
    return out
