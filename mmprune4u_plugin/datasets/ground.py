"""The ground plane (z = 0 in the ego frame): asphalt road along x with lane markings, sidewalks beyond.

One material map serves both sensors: the cameras see its albedo, the LiDAR its reflectivity (lane paint is
brighter than asphalt in both, as on real roads).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANE_LINES_Y = (-5.25, -1.75, 1.75, 5.25)  # dashed
EDGE_LINES_Y = (-8.75, 8.75)  # solid
SIDEWALK_Y = 9.0
LINE_HALF_WIDTH = 0.075


def _cell_noise(x: np.ndarray, y: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Deterministic value noise in [0, 1) on a ``cell``-metre grid."""
    ix = np.floor(x / cell).astype(np.int64)
    iy = np.floor(y / cell).astype(np.int64)
    h = (ix * 73856093) ^ (iy * 19349663) ^ (seed * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 1023).astype(np.float32) / 1024.0


@dataclass(frozen=True)
class GroundStyle:
    """Per-scene look of the ground.

    Args:
        asphalt (tuple): RGB albedo of the road.
        sidewalk (tuple): RGB albedo beyond the road edges.
        seed (int): texture seed.
    """

    asphalt: tuple = (0.32, 0.32, 0.33)
    sidewalk: tuple = (0.55, 0.53, 0.5)
    seed: int = 0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> 'GroundStyle':
        a = rng.uniform(0.22, 0.4)
        s = rng.uniform(0.45, 0.62)
        return cls((a, a, a * rng.uniform(0.97, 1.05)), (s, s * 0.97, s * 0.92), int(rng.integers(1 << 20)))

    def _regions(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ay = np.abs(y)
        paint = np.zeros(x.shape, bool)
        for ly in LANE_LINES_Y:
            paint |= (np.abs(y - ly) < LINE_HALF_WIDTH) & (np.mod(x, 9.0) < 3.0)
        for ly in EDGE_LINES_Y:
            paint |= np.abs(y - ly) < LINE_HALF_WIDTH
        return paint, ay > SIDEWALK_Y

    def albedo(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """RGB albedo (..., 3) at ego-frame ground points."""
        paint, walk = self._regions(x, y)
        out = np.where(walk[..., None], np.float32(self.sidewalk), np.float32(self.asphalt))
        out = np.where(paint[..., None], np.float32(0.9), out)
        tex = 0.88 + 0.24 * _cell_noise(x, y, 0.5, self.seed)
        tiles = np.where(walk & ((np.mod(x, 2.0) < 0.06) | (np.mod(y, 2.0) < 0.06)), 0.75, 1.0)
        return (out * (tex * tiles)[..., None]).astype(np.float32)

    def reflectivity(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """LiDAR reflectivity (...) at ego-frame ground points."""
        paint, walk = self._regions(x, y)
        rho = np.where(walk, 16.0, 10.0) * (0.8 + 0.4 * _cell_noise(x, y, 0.5, self.seed))
        return np.where(paint, 60.0, rho)
