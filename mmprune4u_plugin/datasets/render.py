"""Camera rendering for the synthetic nuScenes scenes: a small z-buffered polygon rasteriser on NumPy + cv2.

Per camera: sky gradient and the textured ground plane by per-pixel ray casting; then every visible box face and
decal (back faces culled, clipped at the near plane) filled with ``cv2.fillConvexPoly`` and depth-tested per pixel
against the exact plane depth, so occlusion is correct also where faces interpenetrate in image space. Lighting is a
per-scene sun (ambient + Lambert). Camera-only degradations, which the LiDAR does not have: atmospheric haze that
fades colours towards a grey with distance, defocus/resolution blur that grows with distance, a per-scene exposure
(dusk scenes are dark and low-contrast), sensor noise and JPEG compression.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .appearance import FACES, Appearance
from .ground import GroundStyle

_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)
_NEAR = 0.05
_FAR_GROUND = 400.0


@dataclass(frozen=True)
class Lighting:
    """Per-scene lighting and camera conditions."""

    sun: tuple = (0.3, 0.2, 0.93)  # unit vector towards the sun, ego frame
    exposure: float = 1.0
    haze_rgb: tuple = (0.7, 0.72, 0.75)
    haze_dist: float = 90.0  # metres at which 63% of the colour is haze
    noise: float = 0.012

    @classmethod
    def sample(cls, rng: np.random.Generator) -> 'Lighting':
        az, el = rng.uniform(-np.pi, np.pi), np.radians(rng.uniform(25, 70))
        g = rng.uniform(0.6, 0.78)
        return cls((np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), float(rng.uniform(0.55, 1.15)),
                   (g, g + 0.01, g + 0.03), float(rng.uniform(60, 140)), float(rng.uniform(0.006, 0.02)))


class CameraModel:
    """One camera at a given image size: precomputed pixel rays.

    Args:
        cam2img (np.ndarray): 3x3 intrinsics at this image size.
        cam2ego (np.ndarray): 4x4 camera-to-ego.
        size (tuple): (width, height).
    """

    def __init__(self, cam2img: np.ndarray, cam2ego: np.ndarray, size: tuple[int, int]) -> None:
        self.width, self.height = size
        self.k = np.asarray(cam2img, float)
        self.cam2ego = np.asarray(cam2ego, float)
        self.ego2cam = np.linalg.inv(self.cam2ego)
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        self.rx = ((u - self.k[0, 2]) / self.k[0, 0]).astype(np.float32)  # ray (rx, ry, 1): depth z = 1
        self.ry = ((v - self.k[1, 2]) / self.k[1, 1]).astype(np.float32)
        rays = np.stack([self.rx, self.ry, np.ones_like(self.rx)], -1)
        self.dir_ego = (rays @ self.cam2ego[:3, :3].T.astype(np.float32))  # (H, W, 3)
        self.origin_ego = self.cam2ego[:3, 3]
        self._geometry = None

    def _ground_geometry(self) -> tuple:
        """Scene-independent part of the background, computed once: sky gradient, ground depth and points."""
        if self._geometry is None:
            d = self.dir_ego
            elev = d[..., 2] / np.linalg.norm(d, axis=-1)
            a = np.clip(elev * 3.0, 0.0, 1.0)[..., None]
            sky = (1 - a) * np.float32((0.78, 0.82, 0.88)) + a * np.float32((0.42, 0.6, 0.86))
            with np.errstate(divide='ignore', invalid='ignore'):
                t = np.where(d[..., 2] < -1e-6, -self.origin_ego[2] / d[..., 2], np.inf).astype(np.float32)
            hit = t < _FAR_GROUND
            depth = np.where(hit, t, np.inf).astype(np.float32)
            gx = self.origin_ego[0] + t[hit] * d[..., 0][hit]
            gy = self.origin_ego[1] + t[hit] * d[..., 1][hit]
            self._geometry = (sky.astype(np.float32), depth, hit, gx, gy)
        return self._geometry

    def background(self, ground: GroundStyle, light: Lighting) -> tuple[np.ndarray, np.ndarray]:
        """Sky and ground: colour (H, W, 3) float32 and depth (H, W) (inf for sky)."""
        sky, depth, hit, gx, gy = self._ground_geometry()
        img = sky.copy()
        img[hit] = ground.albedo(gx, gy) * np.float32(0.55 + 0.55 * max(light.sun[2], 0.0))
        return img, depth.copy()

    def may_see(self, points: np.ndarray) -> bool:
        """Whether any point of the convex hull of these ego-frame points (k, 3) can be in the image."""
        p = points @ self.ego2cam[:3, :3].T + self.ego2cam[:3, 3]
        if (p[:, 2] < _NEAR).all():
            return False
        if (p[:, 2] < _NEAR).any():
            return True
        u = p[:, 0] / p[:, 2] * self.k[0, 0] + self.k[0, 2]
        v = p[:, 1] / p[:, 2] * self.k[1, 1] + self.k[1, 2]
        return u.max() >= 0 and u.min() <= self.width - 1 and v.max() >= 0 and v.min() <= self.height - 1

    def fill(self, img: np.ndarray, depth: np.ndarray, ids: np.ndarray, poly_ego: np.ndarray, rgb: np.ndarray,
             obj_id: int, bias: float = 0.0) -> None:
        """Z-buffered fill of one planar convex polygon (k, 3) given in the ego frame."""
        p = poly_ego @ self.ego2cam[:3, :3].T + self.ego2cam[:3, 3]
        a, b = p[1] - p[0], p[-1] - p[0]
        normal = np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])
        offset = normal @ p[0]
        clipped = _clip_near(p)
        if len(clipped) < 3:
            return
        uv = clipped[:, :2] / clipped[:, 2:3] * np.diag(self.k)[:2] + self.k[:2, 2]
        x0, y0 = np.maximum(np.floor(uv.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(uv.max(0)).astype(int), [self.width - 1, self.height - 1])
        if x1 < x0 or y1 < y0:
            return
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        pts = np.round((uv - [x0, y0]) * 16).astype(np.int32)
        cv2.fillConvexPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=4)
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            return
        ys, xs = ys + y0, xs + x0
        den = normal[0] * self.rx[ys, xs] + normal[1] * self.ry[ys, xs] + normal[2]
        with np.errstate(divide='ignore', invalid='ignore'):
            z = offset / den - bias
        front = (z > 0) & (z < depth[ys, xs])
        ys, xs = ys[front], xs[front]
        depth[ys, xs] = z[front]
        img[ys, xs] = rgb
        ids[ys, xs] = obj_id


def _clip_near(p: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (k, 3) in camera coordinates to z >= near."""
    inside = p[:, 2] >= _NEAR
    if inside.all():
        return p
    out = []
    for i in range(len(p)):
        a, b = p[i], p[(i + 1) % len(p)]
        if inside[i]:
            out.append(a)
        if inside[i] != inside[(i + 1) % len(p)]:
            out.append(a + (b - a) * (_NEAR - a[2]) / (b[2] - a[2]))
    return np.array(out) if out else np.zeros((0, 3))


def box_polygons(center: np.ndarray, dims: np.ndarray, yaw: float, app: Appearance,
                 sun: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Shaded polygons ``(normal, corners (k, 3), rgb, depth bias)`` of one box in the ego frame.

    Faces come first, then their decals; each later decal gets a slightly larger depth bias so it wins the depth
    test against the face and the decals before it.
    """
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    out = []
    for face, (origin, u_ax, v_ax) in enumerate(FACES):
        n = rot @ _FACE_NORMALS[face]
        shade = 0.5 + 0.6 * max(float(n @ sun), 0.0)
        o, u, v = (rot @ (np.array(x, float) * dims) for x in (origin, u_ax, v_ax))
        corners = center + o + np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) @ np.stack([u, v])
        out.append((n, corners, np.clip(app.face_colors[face] * shade, 0, 1).astype(np.float32), 0.0))
        for k, (d_face, uv, rgb) in enumerate(app.decals):
            if d_face == face:
                out.append((n, center + o + uv @ np.stack([u, v]), np.clip(rgb * shade, 0, 1).astype(np.float32),
                            0.02 + 0.002 * k))
    return out


def rasterize(cam: CameraModel, polygons: list, ground: GroundStyle,
              light: Lighting) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The noiseless z-buffer pass of :func:`render_camera` (no haze, exposure, blur, noise; draws no random numbers).

    Returns:
        tuple: linear RGB float32 (H, W, 3); the depth map (H, W) float32, the camera-frame z of the surface each
        pixel sees (inf for sky; decals sit ``bias`` <= 3 cm in front of their face); the instance-id map (H, W)
        int16, the index into ``polygons`` (-1 for background).
    """
    img, depth = cam.background(ground, light)
    ids = np.full(depth.shape, -1, np.int16)
    for obj_id, polys in enumerate(polygons):
        if not cam.may_see(np.concatenate([corners for _n, corners, _rgb, bias in polys if bias == 0.0])):
            continue
        for n, corners, rgb, bias in polys:
            if n @ (corners.mean(0) - cam.origin_ego) >= 0:  # back face
                continue
            cam.fill(img, depth, ids, corners, rgb, obj_id, bias)
    return img, depth, ids


def render_camera(cam: CameraModel, polygons: list, ground: GroundStyle, light: Lighting,
                  rng: np.random.Generator, blur_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Render one camera.

    Args:
        cam (CameraModel): the camera.
        polygons (list): per object, the output of :func:`box_polygons` (ego frame).
        ground (GroundStyle), light (Lighting): scene conditions.
        rng (np.random.Generator): for the sensor noise.
        blur_sigma (float): Gaussian sigma in pixels of the far-field blur.

    Returns:
        tuple: BGR uint8 image (H, W, 3) and the instance-id map (H, W) (-1 for background).
    """
    img, depth, ids = rasterize(cam, polygons, ground, light)
    finite = np.isfinite(depth)
    dist = np.where(finite, depth, np.float32(60.0))
    fog = np.where(finite, 1.0 - np.exp(-dist / np.float32(light.haze_dist)), np.float32(0.0))[..., None]
    img = img * (1.0 - fog) + np.float32(light.haze_rgb) * fog
    img *= np.float32(light.exposure * np.exp(rng.normal(0.0, 0.04)))
    w = np.clip((dist - np.float32(12.0)) / np.float32(45.0), 0.0, 1.0)[..., None]
    img = img * (1.0 - w) + cv2.GaussianBlur(img, (0, 0), blur_sigma) * w
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(light.noise)
    bgr = np.clip(img[..., ::-1] * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(bgr), ids
