"""Object layouts for synthetic nuScenes scenes: classes, sizes, poses and velocities in the ego frame.

The ego frame is nuScenes': x forward, y left, z up, origin on the ground under the rear axle. The road runs along x:
five lanes 3.5 m wide centred on y = -7 .. 7 (the ego drives in the middle one, right-hand traffic, so lanes with y > 0
carry oncoming traffic), sidewalks beyond |y| = 8.75.

Sizes are the nuScenes per-class mean sizes (l, w, h) that mmdetection3d v1.4.0 lists as anchor sizes in
``configs/ssn/ssn_hv_secfpn_sbn-all_16xb2-2x_nus-3d.py``. Three pairs of classes share one size distribution, the mean
of the pair (truck / construction_vehicle, bus / trailer, bicycle / motorcycle), and the same LiDAR reflectivity, so
only the cameras can tell them apart (see :mod:`.appearance`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSES = ('car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle', 'motorcycle', 'pedestrian',
           'traffic_cone', 'barrier')  # the order (label ids) of mmdet3d's NuScenesDataset and of the real info pkl
_MEAN_SIZE = {  # (l, w, h) in metres, nuScenes class means (mmdet3d SSN nuScenes anchors)
    'car': (4.60718145, 1.95017717, 1.72270761),
    'truck': (6.73778078, 2.45609390, 2.73004906),
    'construction_vehicle': (6.38352896, 2.73050468, 3.13312415),
    'bus': (11.1885991, 2.94046906, 3.47030982),
    'trailer': (12.01320693, 2.87427237, 3.81509561),
    'bicycle': (1.68452161, 0.60058911, 1.27192197),
    'motorcycle': (2.09973778, 0.76279481, 1.44403034),
    'pedestrian': (0.72564370, 0.66344886, 1.75748069),
    'traffic_cone': (0.40359262, 0.39694519, 1.06232151),
    'barrier': (0.48578221, 2.49008838, 0.98297065),
}
LOOKALIKE_PAIRS = (('truck', 'construction_vehicle'), ('bus', 'trailer'), ('bicycle', 'motorcycle'))


def _shared_sizes() -> dict:
    sizes = {k: np.array(v) for k, v in _MEAN_SIZE.items()}
    for a, b in LOOKALIKE_PAIRS:
        sizes[a] = sizes[b] = (sizes[a] + sizes[b]) / 2
    return sizes


SIZE = _shared_sizes()
# Mean LiDAR reflectivity (0..255 scale) per class; look-alike pairs share it. Cones carry retro-reflective bands.
REFLECTIVITY = {'car': 40.0, 'truck': 38.0, 'construction_vehicle': 38.0, 'bus': 36.0, 'trailer': 36.0,
                'bicycle': 25.0, 'motorcycle': 25.0, 'pedestrian': 20.0, 'traffic_cone': 120.0, 'barrier': 60.0}
# Class frequencies: nuScenes' order of abundance, flattened so every class is learnable from a few hundred scenes.
CLASS_WEIGHTS = {'car': 0.24, 'pedestrian': 0.14, 'barrier': 0.08, 'traffic_cone': 0.08, 'truck': 0.08,
                 'construction_vehicle': 0.07, 'bus': 0.06, 'trailer': 0.06, 'bicycle': 0.095, 'motorcycle': 0.095}
_SPEED = {'car': 8.0, 'truck': 6.0, 'construction_vehicle': 2.5, 'bus': 6.0, 'trailer': 6.0, 'bicycle': 4.0,
          'motorcycle': 7.0, 'pedestrian': 1.3}  # mean speed (m/s) of a moving object
VEHICLES = ('car', 'truck', 'construction_vehicle', 'bus', 'trailer')
LANES_Y = (-7.0, -3.5, 0.0, 3.5, 7.0)
EGO_BOX = (1.4, 0.0, 4.6, 1.9, 0.0)  # (x, y, l, w, yaw) of the ego car's footprint, ego frame


@dataclass
class SceneObjects:
    """Objects of one scene in the ego frame (N rows each).

    Attributes:
        labels (np.ndarray): (N,) int class ids into :data:`CLASSES`.
        centers (np.ndarray): (N, 3) gravity centres.
        dims (np.ndarray): (N, 3) l, w, h; l along the heading.
        yaws (np.ndarray): (N,) heading, counter-clockwise from +x.
        velocities (np.ndarray): (N, 2) vx, vy.
        reflectivity (np.ndarray): (N,) LiDAR reflectivity.
    """

    labels: np.ndarray
    centers: np.ndarray
    dims: np.ndarray
    yaws: np.ndarray
    velocities: np.ndarray
    reflectivity: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def bev_corners(x: float, y: float, length: float, width: float, yaw: float) -> np.ndarray:
    """(4, 2) corners of an oriented rectangle."""
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[0.5, 0.5], [0.5, -0.5], [-0.5, -0.5], [-0.5, 0.5]]) * [length, width]
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def rectangles_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Separating-axis test for two convex (4, 2) polygons, with ``margin`` of clearance required."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]]) / (np.hypot(*edge) + 1e-12)
            pa, pb = a @ axis, b @ axis
            if pa.max() + margin < pb.min() or pb.max() + margin < pa.min():
                return False
    return True


def _pose(cls: str, rng: np.random.Generator, max_dist: float) -> tuple[float, float, float, bool]:
    """(x, y, yaw, on_road) for one object of class ``cls``."""
    if cls in VEHICLES or cls in ('bicycle', 'motorcycle'):
        on_lane = rng.random() < (0.6 if cls in VEHICLES else 0.5)
        if on_lane:
            lane = rng.choice(LANES_Y if cls in VEHICLES else (-8.0, 8.0))
            heading = np.pi if lane > 0 else 0.0
            return (rng.uniform(-max_dist, max_dist), lane + rng.normal(0, 0.3),
                    heading + rng.normal(0, 0.05), True)
    elif cls == 'pedestrian' and rng.random() < 0.6:  # on a sidewalk
        side = rng.choice((-1.0, 1.0))
        return rng.uniform(-max_dist, max_dist), side * rng.uniform(9.0, 14.0), rng.uniform(-np.pi, np.pi), False
    r = max_dist * np.sqrt(rng.uniform(0.01, 1.0))  # uniform over the disc
    phi = rng.uniform(-np.pi, np.pi)
    return r * np.cos(phi), r * np.sin(phi), rng.uniform(-np.pi, np.pi), False


def _group(cls: str, rng: np.random.Generator, x: float, y: float, yaw: float, size: np.ndarray) -> list:
    """Cones and barriers come in short rows: poses of the members."""
    if cls not in ('traffic_cone', 'barrier'):
        return [(x, y, yaw)]
    n = int(rng.integers(1, 5))
    step = size[1] + 0.1 if cls == 'barrier' else rng.uniform(1.0, 2.5)  # barriers end to end along their width
    d = np.array([-np.sin(yaw), np.cos(yaw)])
    return [(x + k * step * d[0], y + k * step * d[1], yaw + rng.normal(0, 0.05)) for k in range(n)]


def sample_scene(rng: np.random.Generator, *, num_objects: tuple[int, int] = (10, 30),
                 max_dist: float = 55.0) -> SceneObjects:
    """Sample a non-overlapping layout of objects on the ground plane z = 0 of the ego frame.

    Args:
        rng (np.random.Generator): the scene's generator.
        num_objects (tuple): inclusive range of the number of placement attempts. Defaults to (10, 30).
        max_dist (float): objects are placed within this distance of the ego (a few beyond the
            evaluation ranges of 30/40/50 m). Defaults to 55.
    """
    names = list(CLASS_WEIGHTS)
    probs = np.array([CLASS_WEIGHTS[n] for n in names])
    placed, rects = [], [bev_corners(*EGO_BOX[:4], EGO_BOX[4])]
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        cls = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        size = SIZE[cls] * np.exp(rng.normal(0.0, 0.06) + rng.normal(0.0, 0.03, 3))
        for _try in range(10):
            x, y, yaw, on_road = _pose(cls, rng, max_dist)
            members = _group(cls, rng, x, y, yaw, size)
            new = [bev_corners(mx, my, size[0], size[1], myaw) for mx, my, myaw in members]
            if all(np.hypot(mx, my) <= max_dist for mx, my, _ in members) and not any(
                    rectangles_overlap(n, r, margin=0.3) for n in new for r in rects):
                break
        else:
            continue
        moving = cls in _SPEED and rng.random() < (0.7 if (on_road or cls == 'pedestrian') else 0.1)
        speed = max(0.5, rng.normal(_SPEED[cls], 0.25 * _SPEED[cls])) if moving else 0.0
        refl = REFLECTIVITY[cls] * np.exp(rng.normal(0.0, 0.25))
        for (mx, my, myaw), rect in zip(members, new):
            rects.append(rect)
            vel = speed * np.array([np.cos(myaw), np.sin(myaw)])
            placed.append((CLASSES.index(cls), (mx, my, size[2] / 2), size, myaw, vel, refl))
    if not placed:
        return SceneObjects(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                            np.zeros((0, 2)), np.zeros(0))
    cols = list(zip(*placed))
    return SceneObjects(np.array(cols[0], np.int64), np.array(cols[1], float), np.array(cols[2], float),
                        np.array(cols[3], float), np.array(cols[4], float), np.array(cols[5], float))
