"""Degraded-sensor corruptions for robustness tests, one sensor at a time (as in nuScenes-C, Robo3D and BEVFusion's
sensor-failure studies): fewer LiDAR beams, a shorter LiDAR range, no LiDAR, black, blurred or dark cameras.

Every random choice comes from ``np.random.default_rng([seed, sample key])`` (the key is ``results['sample_idx']``,
else a hash of the LiDAR path), so a sample is corrupted the same way whatever the dataloader order or worker count.
Each step appends its ``repr`` to ``results['corruption']`` (add 'corruption' to ``Pack3DDetInputs.meta_keys`` to
keep it). ``CORRUPTIONS`` names the presets and :func:`with_corruption` puts one into a test pipeline.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmdet3d.registry import TRANSFORMS

HDL32E_ELEVATIONS_DEG = (-30.67, 10.67)  # nuScenes' LIDAR_TOP: 32 beams evenly spaced, ring 0 the lowest


def sample_rng(results: dict, seed: int) -> np.random.Generator:
    """The generator of one sample: depends on (seed, sample) only, never on the order samples are loaded in."""
    key = results.get('sample_idx')
    if not (isinstance(key, (int, np.integer)) and key >= 0):
        text = str(key) if key is not None else results.get('lidar_path')
        if text is None:
            raise KeyError('a seeded corruption needs `sample_idx` or `lidar_path` in the results to key its noise')
        key = int.from_bytes(hashlib.blake2b(str(text).encode(), digest_size=8).digest(), 'little')
    return np.random.default_rng([seed, int(key)])


def elevation_ring(xyz: torch.Tensor, num_beams: int, elevations_deg: Sequence[float]) -> torch.Tensor:
    """Beam index of each point: the nearest of ``num_beams`` evenly spaced elevations (for scans without a ring
    column). Near the sensor the offset of the lasers from its origin tilts the angle, so rings there are guesses."""
    low, high = elevations_deg
    elevation = torch.rad2deg(torch.atan2(xyz[:, 2].double(), torch.hypot(xyz[:, 0].double(), xyz[:, 1].double())))
    ring = torch.round((elevation - low) / ((high - low) / (num_beams - 1)))
    return ring.clamp(0, num_beams - 1).long()


class _Corruption(BaseTransform):

    def _done(self, results: dict) -> dict:
        results['corruption'] = list(results.get('corruption', [])) + [repr(self)]
        return results

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'{self.__class__.__name__}({args})'


@TRANSFORMS.register_module()
class LidarBeamReduce(_Corruption):
    """Keep the beams with ``ring % keep_every == 0`` (a cheaper sensor: 32 -> 16 or 8 beams), not random points.

    Args:
        keep_every (int): Keep one beam in this many. Defaults to 2.
        ring_dim (int, optional): Column of the ring index (nuScenes: 4). None: derive the ring from the elevation
            with :func:`elevation_ring` (KITTI, or nuScenes after ``LoadPointsFromMultiSweeps``, which writes the time
            lag into column 4). Defaults to 4.
        num_beams (int): Beams of the sensor when ``ring_dim`` is None. Defaults to 32 (HDL-32E).
        elevations_deg (tuple[float, float]): Lowest and highest beam elevation. Defaults to the HDL-32E's.
    """

    def __init__(self, keep_every: int = 2, ring_dim: int | None = 4, num_beams: int = 32,
                 elevations_deg: Sequence[float] = HDL32E_ELEVATIONS_DEG) -> None:
        if keep_every < 1:
            raise ValueError(f'`keep_every` must be >= 1, but got keep_every: {keep_every}')
        if num_beams < 2 or len(elevations_deg) != 2 or elevations_deg[0] >= elevations_deg[1]:
            raise ValueError(f'need `num_beams` >= 2 and `elevations_deg` = (low, high) with low < high, but got '
                             f'num_beams: {num_beams}, elevations_deg: {elevations_deg}')
        self.keep_every, self.ring_dim = keep_every, ring_dim
        self.num_beams, self.elevations_deg = num_beams, tuple(elevations_deg)

    def transform(self, results: dict) -> dict:
        points = results['points']
        if self.ring_dim is None:
            ring = elevation_ring(points.tensor[:, :3], self.num_beams, self.elevations_deg)
        elif self.ring_dim < points.points_dim:
            ring = points.tensor[:, self.ring_dim].round().long()
        else:
            raise ValueError(f'`ring_dim` {self.ring_dim} is not a column of {points.points_dim}-dim points: load '
                             'the ring or set ring_dim=None')
        results['points'] = points[ring % self.keep_every == 0]
        return self._done(results)


@TRANSFORMS.register_module()
class LidarRangeDrop(_Corruption):
    """Drop the points farther than ``max_range`` metres from the sensor in the horizontal plane (a weak return)."""

    def __init__(self, max_range: float = 30.0) -> None:
        if max_range <= 0:
            raise ValueError(f'`max_range` must be > 0, but got max_range: {max_range}')
        self.max_range = max_range

    def transform(self, results: dict) -> dict:
        xy = results['points'].tensor[:, :2].double()
        results['points'] = results['points'][torch.hypot(xy[:, 0], xy[:, 1]) <= self.max_range]
        return self._done(results)


@TRANSFORMS.register_module()
class LidarAbsent(_Corruption):
    """No LiDAR at all: an empty points object of the same class and dims (the model must cope with zero points)."""

    def transform(self, results: dict) -> dict:
        points = results['points']
        results['points'] = points[torch.zeros(len(points), dtype=torch.bool, device=points.tensor.device)]
        return self._done(results)


def _per_view(img, fn: Callable[[int, np.ndarray], np.ndarray]):
    """Apply ``fn(index, view)`` to each view of a list, an (N, H, W, C) stack or one (H, W, C) image; the container,
    dtype and shapes stay. Views ``fn`` returns unchanged are the input arrays themselves."""
    if isinstance(img, np.ndarray):
        if img.ndim == 3:
            return fn(0, img)
        return np.stack([fn(i, view) for i, view in enumerate(img)])
    return [fn(i, view) for i, view in enumerate(img)]


def _num_views(img) -> int:
    return 1 if isinstance(img, np.ndarray) and img.ndim == 3 else len(img)


@TRANSFORMS.register_module()
class CameraBlackout(_Corruption):
    """Zero one camera (chosen per sample, seeded) or all of them: a failed or covered camera.

    Args:
        views (str): 'one' or 'all'. Defaults to 'one'.
        seed (int): Seed of the choice. Defaults to 0.
    """

    def __init__(self, views: str = 'one', seed: int = 0) -> None:
        if views not in ('one', 'all'):
            raise ValueError(f"`views` must be 'one' or 'all', but got views: {views!r}")
        self.views, self.seed = views, seed

    def transform(self, results: dict) -> dict:
        count = _num_views(results['img'])
        black = set(range(count)) if self.views == 'all' else {int(sample_rng(results, self.seed).integers(count))}
        results['img'] = _per_view(results['img'], lambda i, v: np.zeros_like(v) if i in black else v)
        return self._done(results)


@TRANSFORMS.register_module()
class CameraBlur(_Corruption):
    """Strong Gaussian blur of every camera (defocus, a wet or dirty lens).

    Args:
        sigma (float): Standard deviation in pixels of the image the step receives (:func:`with_corruption` puts it
            after the resize: 4 px on 352-px-wide views is ~18 px on the 1600-px originals). Defaults to 4.0.
    """

    def __init__(self, sigma: float = 4.0) -> None:
        if sigma <= 0:
            raise ValueError(f'`sigma` must be > 0, but got sigma: {sigma}')
        self.sigma = sigma

    def transform(self, results: dict) -> dict:
        results['img'] = _per_view(results['img'], lambda i, v: cv2.GaussianBlur(
            np.ascontiguousarray(v), (0, 0), sigmaX=self.sigma, borderType=cv2.BORDER_REFLECT_101))
        return self._done(results)


@TRANSFORMS.register_module()
class CameraLowLight(_Corruption):
    """Night: scale the 0-255 images by ``gain``, add Gaussian read and shot noise (seeded), clip to [0, 255].

    The noise of a pixel with darkened value ``s`` has variance ``noise_std**2 + shot_scale * s`` (shot noise grows
    with the signal). Integer images are rounded back to their dtype.

    Args:
        gain (float): Brightness factor in (0, 1]. Defaults to 0.2.
        noise_std (float): Read noise std in grey levels. Defaults to 3.0.
        shot_scale (float): Shot noise variance per grey level of signal. Defaults to 1.0.
        seed (int): Seed of the noise. Defaults to 0.
    """

    def __init__(self, gain: float = 0.2, noise_std: float = 3.0, shot_scale: float = 1.0, seed: int = 0) -> None:
        if not 0 < gain <= 1:
            raise ValueError(f'`gain` must be in (0, 1], but got gain: {gain}')
        if noise_std < 0 or shot_scale < 0:
            raise ValueError(f'noise must be >= 0, but got noise_std: {noise_std}, shot_scale: {shot_scale}')
        self.gain, self.noise_std, self.shot_scale, self.seed = gain, noise_std, shot_scale, seed

    def transform(self, results: dict) -> dict:
        rng = sample_rng(results, self.seed)

        def darken(index: int, view: np.ndarray) -> np.ndarray:
            signal = view.astype(np.float32) * np.float32(self.gain)
            std = np.sqrt(np.float32(self.noise_std ** 2) + np.float32(self.shot_scale) * signal)
            noisy = signal + rng.standard_normal(view.shape, dtype=np.float32) * std
            noisy = np.clip(noisy, 0, 255)
            return (np.round(noisy) if np.issubdtype(view.dtype, np.integer) else noisy).astype(view.dtype)

        results['img'] = _per_view(results['img'], darken)
        return self._done(results)


CORRUPTIONS: dict[str, list[dict]] = {
    'lidar_beams_1/2': [dict(type='LidarBeamReduce', keep_every=2)],
    'lidar_beams_1/4': [dict(type='LidarBeamReduce', keep_every=4)],
    'lidar_range_30m': [dict(type='LidarRangeDrop', max_range=30.0)],
    'lidar_absent': [dict(type='LidarAbsent')],
    'camera_one_black': [dict(type='CameraBlackout', views='one')],
    'camera_all_black': [dict(type='CameraBlackout', views='all')],
    'camera_blur': [dict(type='CameraBlur', sigma=4.0)],
    'camera_low_light': [dict(type='CameraLowLight', gain=0.2)],
}
LIDAR_STEPS = ('LoadPointsFromFile', 'LoadPointsFromMultiSweeps', 'PointsRangeFilter')
IMAGE_STEPS = ('LoadMultiViewImageFromFiles', 'MultiViewImageResizeCrop', 'BEVLoadMultiViewImageFromFiles',
               'ImageAug3D', 'LoadImageFromFile', 'LoadImageFromFileMono3D', 'Resize', 'Resize3D')
_LIDAR_CORRUPTIONS = ('LidarBeamReduce', 'LidarRangeDrop', 'LidarAbsent')


def _type(step: dict) -> str:
    kind = step.get('type')
    return getattr(kind, '__name__', kind)


def _ring_dim(pipeline: Sequence[dict]) -> int | None:
    """Where nuScenes' ring (file column 4) lands in the loaded points; None if dropped or overwritten by sweeps."""
    types = [_type(step) for step in pipeline]
    if 'LoadPointsFromMultiSweeps' in types or 'LoadPointsFromFile' not in types:
        return None
    load = pipeline[types.index('LoadPointsFromFile')]
    use_dim = load.get('use_dim', [0, 1, 2])
    use_dim = list(range(use_dim)) if isinstance(use_dim, int) else list(use_dim)
    return use_dim.index(4) if load.get('load_dim', 6) == 5 and 4 in use_dim else None


def with_corruption(pipeline: Sequence[dict], name: str, *, seed: int | None = None) -> list[dict]:
    """A copy of a test pipeline with the preset ``name`` right after the last step that loads (or range-filters)
    the corrupted sensor's input, so the model sees the degraded input and nothing downstream undoes it.

    The beam presets read the ring from nuScenes' column 4; where the pipeline drops it or multi-sweep loading
    overwrites it with the time lag, they derive it from the elevation (HDL-32E) instead. ``seed`` overrides the
    seed of the random presets.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f'unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}')
    steps = copy.deepcopy(CORRUPTIONS[name])
    anchors = LIDAR_STEPS if steps[0]['type'] in _LIDAR_CORRUPTIONS else IMAGE_STEPS
    types = [_type(step) for step in pipeline]
    found = [i for i, kind in enumerate(types) if kind in anchors]
    if not found:
        raise ValueError(f'corruption {name!r} needs one of {anchors} in the pipeline, but got steps: {types}')
    at = found[-1] + 1
    if 'Pack3DDetInputs' in types[:at]:
        raise ValueError(f'corruption {name!r} would go after Pack3DDetInputs in steps: {types}')
    for step in steps:
        if step['type'] == 'LidarBeamReduce':
            step['ring_dim'] = _ring_dim(pipeline)
        if seed is not None and step['type'] in ('CameraBlackout', 'CameraLowLight'):
            step['seed'] = seed
    return copy.deepcopy(list(pipeline[:at])) + steps + copy.deepcopy(list(pipeline[at:]))
