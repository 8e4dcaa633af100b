"""Deterministic synthetic SemanticKITTI-format dataset: 64-beam scans, point labels, front-camera images, info pkls.

The output is laid out like KITTI odometry + SemanticKITTI and loads unchanged with mmdet3d 1.4's
``SemanticKittiDataset``, its ``seg_label_mapping`` and ``SegMetric`` (``data_root=<out_dir>``, empty
``data_prefix``)::

    <out_dir>/semantickitti_infos_{train,val,test}.pkl      the format of mmdet3d's semantickitti_converter.py
    <out_dir>/sequences/NN/velodyne/FFFFFF.bin              float32 (x, y, z, remission in [0, 1])
    <out_dir>/sequences/NN/labels/FFFFFF.label              uint32: raw class id | instance id << 16
    <out_dir>/sequences/NN/image_2/FFFFFF.png               the front (left colour) camera
    <out_dir>/sequences/NN/calib.txt, poses.txt             KITTI odometry format

Each info also carries ``images['CAM2']`` (``img_path``, ``height``, ``width``, ``cam2img`` = P2, ``lidar2cam`` = Tr,
``lidar2img`` = P2 @ Tr, as mmdet3d's KITTI infos have them) for camera-LiDAR models. The calibration is the real
KITTI one of mmdetection3d's ``kitti-sample`` (:data:`KITTI_CALIB`), with the intrinsics scaled to the image size.

A sequence is one drive along one street (:mod:`.semantickitti_scene`): frame ``f`` is the LiDAR at
``x = f * frame_step``, 1.73 m above the ground, and its scan is a ray cast of the scene with a Velodyne HDL-64E
geometry (64 beams evenly spread over +2.0 .. -24.8 deg). Frame ``(seq, f)`` depends only on ``(seed, seq, f)``, so
any subset or worker count gives the same bytes.
"""
from __future__ import annotations

import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .lidar_sim import LidarSpec, simulate_scan
from .render import CameraModel, Lighting, box_polygons, render_camera
from .semantickitti_scene import RAW_IDS, SEGMENT_LENGTH, Street, StreetGround, sample_segment
from .task_pool import map_tasks

GENERATOR_VERSION = '1.0'
LIDAR_HEIGHT = 1.73
FULL_IMAGE_SIZE = (1242, 375)  # (width, height) of the kitti-sample image
# Copied from ../shared/data/kitti-sample/000008.pkl: images[CAMi]['cam2img'][:3] (P0..P3) and
# images['CAM2']['lidar2cam'][:3] (= R0_rect @ Tr_velo_to_cam, the odometry ``Tr``: velodyne -> rectified cam 0).
KITTI_CALIB = {
    'P0': [[721.5377, 0.0, 609.5593, 0.0], [0.0, 721.5377, 172.854, 0.0], [0.0, 0.0, 1.0, 0.0]],
    'P1': [[721.5377, 0.0, 609.5593, -387.5744], [0.0, 721.5377, 172.854, 0.0], [0.0, 0.0, 1.0, 0.0]],
    'P2': [[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791], [0.0, 0.0, 1.0, 0.002745884]],
    'P3': [[721.5377, 0.0, 609.5593, -339.5242], [0.0, 721.5377, 172.854, 2.199936], [0.0, 0.0, 1.0, 0.002729905]],
    'Tr': [[0.00023477380455005914, -0.9999441504478455, -0.01056347694247961, -0.0027968171052634716],
           [0.010449407622218132, 0.01056535355746746, -0.999889612197876, -0.07510878890752792],
           [0.9999454021453857, 0.00012436544056981802, 0.010451302863657475, -0.2721327841281891]],
}
DEFAULT_SPLITS = {'train': (0, 1, 2, 3, 4, 5, 6, 7, 9, 10), 'val': (8,), 'test': (11, 12, 13)}


def hdl64e(azimuth_steps: int = 1024) -> LidarSpec:
    """Velodyne HDL-64E as KITTI mounts it: 64 beams over +2.0 .. -24.8 deg, 80 m of useful range."""
    return LidarSpec(num_beams=64, min_elevation_deg=-24.8, max_elevation_deg=2.0, azimuth_steps=azimuth_steps,
                     max_range=80.0, min_range=2.5)


@dataclass(frozen=True)
class SyntheticSemanticKittiConfig:
    """Knobs of the generator.

    Args:
        seed (int): global seed. Defaults to 0.
        frames (int): scans per sequence. Defaults to 20.
        frame_step (float): metres the ego drives between two scans. Defaults to 12.
        image_scale (float): images are ``round(1242 s) x round(375 s)``, P0..P3 scaled to match. Defaults to 0.5.
        lidar (LidarSpec): the LiDAR. Defaults to :func:`hdl64e` with 1024 azimuth steps (the real sensor has
            about 2083 at 10 Hz; pass ``hdl64e(2083)`` for full density).
    """

    seed: int = 0
    frames: int = 20
    frame_step: float = 12.0
    image_scale: float = 0.5
    lidar: LidarSpec = field(default_factory=hdl64e)

    def __post_init__(self) -> None:
        if not 0.1 <= self.image_scale <= 1.0:
            raise ValueError(f'`image_scale` must be in [0.1, 1], but got image_scale: {self.image_scale}')
        if self.frames < 1:
            raise ValueError(f'`frames` must be >= 1, but got frames: {self.frames}')
        if self.frame_step <= 0:
            raise ValueError(f'`frame_step` must be > 0, but got frame_step: {self.frame_step}')


def kitti_calib(image_scale: float) -> dict:
    """P0..P3 (3x4) scaled to the image size and Tr (3x4), as numpy arrays."""
    scale = np.diag([image_scale, image_scale, 1.0])
    out = {k: scale @ np.array(v) for k, v in KITTI_CALIB.items() if k != 'Tr'}
    out['Tr'] = np.array(KITTI_CALIB['Tr'])
    return out


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 0.0, 1.0]])


def _rows(m: np.ndarray) -> str:
    return ' '.join(f'{v:.12e}' for v in np.asarray(m)[:3].ravel())


class SequenceGenerator:
    """Writes frames of a configuration into ``out_dir``.

    Args:
        cfg (SyntheticSemanticKittiConfig): the configuration.
        out_dir (str): dataset root.
    """

    def __init__(self, cfg: SyntheticSemanticKittiConfig, out_dir: str | os.PathLike) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.calib = kitti_calib(cfg.image_scale)
        self.size = tuple(int(round(n * cfg.image_scale)) for n in FULL_IMAGE_SIZE)
        p2 = self.calib['P2']
        k = p2[:, :3]
        lidar2cam2 = _h(self.calib['Tr'])
        lidar2cam2[:3, 3] += np.linalg.solve(k, p2[:, 3])  # P2 = K [I | t2]: cam 2 sits at t2 in rect cam 0
        lidar2ego = np.eye(4)
        lidar2ego[2, 3] = LIDAR_HEIGHT
        self.camera = CameraModel(k, lidar2ego @ np.linalg.inv(lidar2cam2), self.size)
        self._cache = {}

    def _street(self, seq: int) -> tuple[Street, Lighting]:
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, seq, 0]))
        return Street.sample(rng), Lighting.sample(rng)

    def _segment(self, seq: int, street: Street, k: int):
        if (seq, k) not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, seq, 1, k + (1 << 20)]))
            self._cache[seq, k] = sample_segment(rng, street, k)
        return self._cache[seq, k]

    def write_sequence_files(self, seq: int) -> None:
        """``calib.txt`` and ``poses.txt`` (cam 0 pose of every frame in the frame-0 cam 0 frame)."""
        root = self.out_dir / 'sequences' / f'{seq:02d}'
        root.mkdir(parents=True, exist_ok=True)
        names = ('P0', 'P1', 'P2', 'P3', 'Tr')
        (root / 'calib.txt').write_text(''.join(f'{k}: {_rows(self.calib[k])}\n' for k in names))
        tr = _h(self.calib['Tr'])
        lines = []
        for f in range(self.cfg.frames):
            move = np.eye(4)
            move[0, 3] = f * self.cfg.frame_step
            lines.append(_rows(tr @ move @ np.linalg.inv(tr)) + '\n')
        (root / 'poses.txt').write_text(''.join(lines))

    def frame(self, seq: int, f: int) -> dict:
        """Generate, write and return the info of frame ``f`` of sequence ``seq``."""
        street, light = self._street(seq)
        x_f = f * self.cfg.frame_step
        reach = self.cfg.lidar.max_range + SEGMENT_LENGTH
        k0, k1 = int(np.floor((x_f - reach) / SEGMENT_LENGTH)), int(np.floor((x_f + reach) / SEGMENT_LENGTH))
        segs = [self._segment(seq, street, k) for k in range(k0, k1 + 1)]
        centers = np.concatenate([s.centers for s in segs]) - [x_f, 0.0, 0.0]  # ego frame: ground under the LiDAR
        dims, yaws = np.concatenate([s.dims for s in segs]), np.concatenate([s.yaws for s in segs])
        raw = np.array([RAW_IDS[n] for s in segs for n in s.names], np.int64)
        instance = np.concatenate([s.instance for s in segs])
        looks = [a for s in segs for a in s.looks]
        ground = StreetGround(street, segs, k0, x_offset=x_f)
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, seq, 2, f]))

        pts, idx = simulate_scan(rng, self.cfg.lidar, ground_z=-LIDAR_HEIGHT,
                                 centers=centers - [0.0, 0.0, LIDAR_HEIGHT], dims=dims, yaws=yaws,
                                 reflectivity=np.concatenate([s.rho for s in segs]),
                                 ground_reflectivity=lambda p: ground.reflectivity(p[:, 0], p[:, 1]),
                                 return_index=True)
        on_ground = idx < 0
        ray = pts[on_ground, :3].astype(np.float64)
        hit = ray * (-LIDAR_HEIGHT / ray[:, 2])[:, None]  # the noise is along the ray: recover the exact hit
        sem = np.empty(len(pts), np.int64)
        sem[on_ground] = ground.classes(hit[:, 0], hit[:, 1])
        sem[~on_ground] = raw[idx[~on_ground]]
        inst = np.where(on_ground, 0, instance[np.maximum(idx, 0)])
        root = self.out_dir / 'sequences' / f'{seq:02d}'
        for sub in ('velodyne', 'labels', 'image_2'):
            (root / sub).mkdir(parents=True, exist_ok=True)
        scan = np.concatenate([pts[:, :3], pts[:, 3:4] / np.float32(255.0)], 1).astype(np.float32)
        scan.tofile(root / 'velodyne' / f'{f:06d}.bin')
        (sem | (inst << 16)).astype(np.uint32).tofile(root / 'labels' / f'{f:06d}.label')

        polygons = [box_polygons(c, d, y, a, np.asarray(light.sun)) for c, d, y, a in zip(centers, dims, yaws, looks)]
        bgr, _ = render_camera(self.camera, polygons, ground, light, rng, 1.2 * self.size[0] / 400.0)
        ok, buf = cv2.imencode('.png', bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise RuntimeError(f'PNG encoding failed for sequence {seq} frame {f}')
        (root / 'image_2' / f'{f:06d}.png').write_bytes(buf.tobytes())

        rel = f'sequences/{seq:02d}'
        p2, tr = _h(self.calib['P2']), _h(self.calib['Tr'])
        return {'lidar_points': {'lidar_path': f'{rel}/velodyne/{f:06d}.bin', 'num_pts_feats': 4},
                'pts_semantic_mask_path': f'{rel}/labels/{f:06d}.label',
                'sample_id': str(seq) + str(f),  # as mmdet3d's converter writes it
                'images': {'CAM2': {'img_path': f'{rel}/image_2/{f:06d}.png', 'height': self.size[1],
                                    'width': self.size[0], 'cam2img': p2.tolist(), 'lidar2cam': tr.tolist(),
                                    'lidar2img': (p2 @ tr).tolist()}}}

    def metainfo(self, split: str, seqs) -> dict:
        gen = dict(generator_version=GENERATOR_VERSION, split=split, sequences=tuple(seqs), seed=self.cfg.seed,
                   frames=self.cfg.frames, frame_step=self.cfg.frame_step, image_scale=self.cfg.image_scale,
                   image_size=self.size, lidar=asdict(self.cfg.lidar), lidar_height=LIDAR_HEIGHT,
                   raw_ids=dict(RAW_IDS), notes='calibration of mmdetection3d kitti-sample 000008; '
                   'points (x, y, z, remission) in the velodyne frame')
        return dict(DATASET='SemanticKITTI', synthetic=gen)


_WORKER: SequenceGenerator | None = None


def _init_worker(cfg: SyntheticSemanticKittiConfig, out_dir: str) -> None:
    global _WORKER
    cv2.setNumThreads(1)
    _WORKER = SequenceGenerator(cfg, out_dir)


def _work(task: tuple[int, int]) -> dict:
    return _WORKER.frame(*task)


def generate_synthetic_semantickitti(out_dir: str | os.PathLike, splits: dict | None = None,
                                     cfg: SyntheticSemanticKittiConfig | None = None, *, workers: int = 1,
                                     log=None) -> dict:
    """Write a synthetic SemanticKITTI-format dataset.

    Args:
        out_dir (str): dataset root (created).
        splits (dict, optional): split name -> sequence numbers (0..99, disjoint across splits); one info pkl per
            split. Defaults to :data:`DEFAULT_SPLITS` (the real 00-07,09,10 / 08 / 11-21 convention, but small).
        cfg (SyntheticSemanticKittiConfig, optional): generator settings. Defaults to the defaults.
        workers (int): processes; the output does not depend on it. Defaults to 1.
        log (callable, optional): called with progress strings.

    Returns:
        dict: split -> pkl path, plus ``'seconds'`` (wall time) and ``'seconds_per_scan'``.
    """
    splits = DEFAULT_SPLITS if splits is None else splits
    seqs = [s for v in splits.values() for s in v]
    if len(set(seqs)) != len(seqs) or not all(0 <= s <= 99 for s in seqs):
        raise ValueError(f'`splits` must hold disjoint sequence numbers in 0..99, but got splits: {splits}')
    if workers < 1:
        raise ValueError(f'`workers` must be >= 1, but got workers: {workers}')
    cfg = cfg or SyntheticSemanticKittiConfig()
    out_dir = Path(out_dir)
    gen = SequenceGenerator(cfg, out_dir)
    for s in seqs:
        gen.write_sequence_files(s)
    tasks = [(s, f) for s in seqs for f in range(cfg.frames)]
    start = time.perf_counter()

    def progress(k: int) -> None:
        if log is not None and (k % 25 == 0 or k == len(tasks)):
            log(f'[synthetic SemanticKITTI] {k}/{len(tasks)} scans, {(time.perf_counter() - start) / k:.2f} s/scan')
    infos = map_tasks(tasks, gen.frame, workers=workers, init=_init_worker, init_args=(cfg, str(out_dir)),
                      work=_work, on_result=progress)
    out = {}
    for split, split_seqs in splits.items():
        data_list = [info for (s, _), info in zip(tasks, infos) if s in split_seqs]
        path = out_dir / f'semantickitti_infos_{split}.pkl'
        with open(path, 'wb') as fh:
            pickle.dump(dict(metainfo=gen.metainfo(split, split_seqs), data_list=data_list), fh, protocol=4)
        out[split] = str(path)
    out['seconds'] = time.perf_counter() - start
    out['seconds_per_scan'] = out['seconds'] / max(len(tasks), 1)
    return out
