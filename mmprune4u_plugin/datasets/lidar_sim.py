"""A spinning multi-beam LiDAR ray-cast against the ground plane and oriented boxes, in the LiDAR frame.

Model (nuScenes' Velodyne HDL-32E as the default): 32 beams from -30.67 to +10.67 deg elevation (ring 0 is the
lowest, as in the real nuScenes scans), 1084 azimuth steps per turn (the real keyframe has 32 x 1084 returns).
Each ray takes the nearest hit among the ground plane and all boxes (so objects occlude each other and the ground).
A return is kept with probability ``keep * (1 - exp(-P / p0))`` where ``P = rho * (0.5 + 0.5 cos(theta)) / r^2`` is
the received power (rho reflectivity, theta incidence angle): far, dark and grazing surfaces drop out, and the
angular resolution alone already makes far objects sparse. Intensity falls off as ``(1 + (r / 30)^2)^-0.5``. Points
are float32 (x, y, z, intensity, ring) like nuScenes' ``.pcd.bin``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LidarSpec:
    """Beam pattern and return model. Defaults to nuScenes' HDL-32E."""

    num_beams: int = 32
    min_elevation_deg: float = -30.67
    max_elevation_deg: float = 10.67
    azimuth_steps: int = 1084
    max_range: float = 70.0
    min_range: float = 1.0
    range_noise: float = 0.015
    keep: float = 0.97  # 1 - random dropout
    power_ref: float = 0.0037  # p0: a return of power p0 survives with probability 1 - 1/e

    def directions(self, azimuth_offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions (R, 3) in the LiDAR frame and their ring index (R,)."""
        el = np.radians(np.linspace(self.min_elevation_deg, self.max_elevation_deg, self.num_beams))
        az = azimuth_offset + 2 * np.pi * np.arange(self.azimuth_steps) / self.azimuth_steps
        el_g, az_g = np.meshgrid(el, az, indexing='ij')
        dirs = np.stack([np.cos(el_g) * np.cos(az_g), np.cos(el_g) * np.sin(az_g), np.sin(el_g)], -1)
        ring = np.repeat(np.arange(self.num_beams), self.azimuth_steps)
        return dirs.reshape(-1, 3), ring


def _slab(dirs: np.ndarray, center: np.ndarray, dims: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance (inf for a miss) and outward normal (LiDAR frame) of rays from the origin into one box."""
    c, s = np.cos(yaw), np.sin(yaw)
    o = np.array([-(c * center[0] + s * center[1]), s * center[0] - c * center[1], -center[2]])  # origin, box frame
    d = np.stack([c * dirs[:, 0] + s * dirs[:, 1], -s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]], 1)
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    t1 = (-dims / 2 - o) / d
    t2 = (dims / 2 - o) / d
    t_near = np.minimum(t1, t2)
    axis = t_near.argmax(1)  # the slab entered last is the face hit
    t_enter = t_near[np.arange(len(d)), axis]
    hit = (np.maximum(t1, t2).min(1) >= t_enter) & (t_enter > 0)
    n_loc = np.zeros_like(d)
    n_loc[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    normal = np.stack([c * n_loc[:, 0] - s * n_loc[:, 1], s * n_loc[:, 0] + c * n_loc[:, 1], n_loc[:, 2]], 1)
    return np.where(hit, t_enter, np.inf), normal


def ray_box_hits(spec: 'LidarSpec', azimuth_offset: float, centers: np.ndarray, dims: np.ndarray,
                 yaws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest intersection of the sensor's rays with yaw-rotated boxes (slab test).

    Each box is tested only against the rays of the beams and azimuth steps that its bounding cylinder spans, so the
    cost grows with the boxes' angular size rather than (rays x boxes).

    Args:
        spec (LidarSpec): the beam pattern; rays are ordered as :meth:`LidarSpec.directions` returns them.
        azimuth_offset (float): phase of the first azimuth step.
        centers, dims, yaws: (B, 3), (B, 3) l/w/h and (B,) of the boxes (gravity centres), LiDAR frame.

    Returns:
        tuple: distance (R,) (inf where nothing is hit), box index (R,) (-1 where nothing is hit) and the
        outward surface normal (R, 3) at the hit.
    """
    dirs, _ = spec.directions(azimuth_offset)
    t_best = np.full(len(dirs), np.inf)
    idx = np.full(len(dirs), -1)
    normal = np.zeros((len(dirs), 3))
    el = np.radians(np.linspace(spec.min_elevation_deg, spec.max_elevation_deg, spec.num_beams))
    step = 2 * np.pi / spec.azimuth_steps
    for b, (center, dim, yaw) in enumerate(zip(centers, dims, yaws)):
        dist = np.hypot(center[0], center[1])
        radius = 0.5 * np.hypot(dim[0], dim[1])
        near, far = max(dist - radius, 0.05), dist + radius
        z0, z1 = center[2] - dim[2] / 2, center[2] + dim[2] / 2
        beams = np.nonzero((el >= np.arctan2(z0, far if z0 > 0 else near) - 1e-9)
                           & (el <= np.arctan2(z1, near if z1 > 0 else far) + 1e-9))[0]
        if dist <= radius:  # the box surrounds the sensor's axis: every azimuth
            steps = np.arange(spec.azimuth_steps)
        else:
            half = np.arcsin(radius / dist)
            a0 = np.arctan2(center[1], center[0]) - azimuth_offset
            steps = np.arange(np.ceil((a0 - half) / step), np.floor((a0 + half) / step) + 1).astype(int)
            steps %= spec.azimuth_steps
        rays = (beams[:, None] * spec.azimuth_steps + steps[None]).ravel()
        if len(rays) == 0:
            continue
        t, n = _slab(dirs[rays], center, dim, yaw)
        better = t < t_best[rays]
        rays = rays[better]
        t_best[rays], idx[rays], normal[rays] = t[better], b, n[better]
    return t_best, idx, normal


def simulate_scan(rng: np.random.Generator, spec: LidarSpec, *, ground_z: float, centers: np.ndarray,
                  dims: np.ndarray, yaws: np.ndarray, reflectivity: np.ndarray, ground_reflectivity,
                  return_index: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One LiDAR sweep.

    Args:
        rng (np.random.Generator): the scene's generator (azimuth phase, noise, dropout).
        spec (LidarSpec): the sensor.
        ground_z (float): height of the ground plane in the LiDAR frame (negative).
        centers, dims, yaws: boxes in the LiDAR frame (gravity centres, l/w/h, yaw).
        reflectivity (np.ndarray): (B,) per box.
        ground_reflectivity (callable): (N, 3) ground hits in the LiDAR frame -> (N,) reflectivity.
        return_index (bool): also return which surface each point lies on. It draws nothing from ``rng``, so the
            points are the same either way. Defaults to False.

    Returns:
        np.ndarray: (N, 5) float32 points (x, y, z, intensity, ring); with ``return_index`` also the (N,) int64
        index of the box hit (-1 for the ground).
    """
    phase = rng.uniform(0, 2 * np.pi / spec.azimuth_steps)
    dirs, ring = spec.directions(phase)
    t_box, box_idx, normal = ray_box_hits(spec, phase, centers, dims, yaws)
    with np.errstate(divide='ignore'):
        t_ground = np.where(dirs[:, 2] < -1e-6, ground_z / dirs[:, 2], np.inf)
    on_ground = t_ground < t_box
    t = np.where(on_ground, t_ground, t_box)
    ok = np.isfinite(t) & (t >= spec.min_range) & (t <= spec.max_range)
    dirs, ring, t, on_ground, box_idx, normal = dirs[ok], ring[ok], t[ok], on_ground[ok], box_idx[ok], normal[ok]
    normal[on_ground] = (0.0, 0.0, 1.0)
    cos_inc = np.abs((dirs * normal).sum(-1))
    rho = np.empty(len(t))
    rho[~on_ground] = reflectivity[box_idx[~on_ground]]
    rho[on_ground] = ground_reflectivity(dirs[on_ground] * t[on_ground, None])
    power = rho * (0.5 + 0.5 * cos_inc) / t**2
    kept = rng.random(len(t)) < spec.keep * (1.0 - np.exp(-power / spec.power_ref))
    t = t[kept] + rng.normal(0.0, spec.range_noise, int(kept.sum()))
    xyz = dirs[kept] * t[:, None]
    intensity = rho[kept] * (0.5 + 0.5 * cos_inc[kept]) / np.sqrt(1.0 + (t / 30.0)**2)
    intensity = np.clip(np.round(intensity * np.exp(rng.normal(0.0, 0.1, len(t)))), 0, 255)
    points = np.concatenate([xyz, intensity[:, None], ring[kept, None]], 1).astype(np.float32)
    if return_index:
        return points, np.where(on_ground[kept], -1, box_idx[kept]).astype(np.int64)
    return points


def points_in_boxes(points: np.ndarray, centers: np.ndarray, dims: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """(N, B) bool: point n inside box b (gravity centres, l/w/h, yaw)."""
    out = np.zeros((len(points), len(centers)), bool)
    for b, (center, dim, yaw) in enumerate(zip(centers, dims, yaws)):
        rel = points[:, :3] - center
        near = np.nonzero(rel[:, 0]**2 + rel[:, 1]**2 <= 0.25 * (dim[0]**2 + dim[1]**2))[0]
        c, s = np.cos(yaw), np.sin(yaw)
        r = rel[near]
        out[near, b] = ((np.abs(r[:, 0] * c + r[:, 1] * s) <= dim[0] / 2)
                        & (np.abs(-r[:, 0] * s + r[:, 1] * c) <= dim[1] / 2) & (np.abs(r[:, 2]) <= dim[2] / 2))
    return out
