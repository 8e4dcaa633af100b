"""Multi-view image transform that keeps the camera geometry: resize + crop of every view, recorded as
``img_aug_matrix`` (BEVFusion's convention), for the LSS view transform of :mod:`mmprune4u_plugin.models`."""
from __future__ import annotations

from typing import Sequence

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from mmdet3d.registry import TRANSFORMS


@TRANSFORMS.register_module()
class MultiViewImageResizeCrop(BaseTransform):
    """Resize all views of ``results['img']`` by one factor, then crop (or zero-pad) to ``final_size``.

    The crop keeps the bottom of the resized image (the sky goes) and is centred horizontally. The map from
    original-image pixels to output pixels is written per view as ``img_aug_matrix`` (4x4: ``[u', v'] =
    A[:2, :2] @ [u, v] + A[:2, 3]``, depth untouched; pixel centres at integers, as cv2 resizes) and
    ``lidar2img`` (4x4 projection into the output image: ``lidar2img @ [x, y, z, 1] = (u' d, v' d, d, 1)``);
    ``cam2img`` stays the original intrinsics. Run after mmdet3d's ``LoadMultiViewImageFromFiles`` and pack
    ``img_aug_matrix`` (see ``Pack3DDetInputs.meta_keys``). Put mmdet3d's ``RandomFlip3D`` before the image loading:
    it would try to flip the list of views (the LiDAR-side flip is followed through ``transformation_3d_flow``).

    Args:
        final_size (tuple[int, int]): Output ``(H, W)``.
        scale (float, optional): Resize factor. Defaults to None: ``W_out / W_in`` (fit the width).
        scale_range (tuple[float, float], optional): Draw the factor uniformly from this range instead (training
            augmentation; one factor for all views of a sample). Defaults to None.
        interpolation (str): mmcv interpolation. Defaults to 'area' (no aliasing when shrinking 1600x900 images).
    """

    def __init__(self, final_size: Sequence[int], scale: float | None = None,
                 scale_range: Sequence[float] | None = None, interpolation: str = 'area') -> None:
        if len(final_size) != 2 or min(final_size) <= 0:
            raise ValueError(f'`final_size` must be (H, W) > 0, but got final_size: {final_size}')
        if scale is not None and scale_range is not None:
            raise ValueError(f'set `scale` or `scale_range`, not both, but got scale: {scale}, '
                             f'scale_range: {scale_range}')
        self.final_size, self.scale = tuple(int(s) for s in final_size), scale
        self.scale_range, self.interpolation = scale_range, interpolation

    def _scale(self, width: int) -> float:
        if self.scale_range is not None:
            return float(np.random.uniform(*self.scale_range))
        return self.scale if self.scale is not None else self.final_size[1] / width

    def _view(self, img: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        (in_h, in_w), (out_h, out_w) = img.shape[:2], self.final_size
        new_w, new_h = max(1, int(round(in_w * scale))), max(1, int(round(in_h * scale)))
        resized = mmcv.imresize(img, (new_w, new_h), interpolation=self.interpolation)
        top, left = new_h - out_h, (new_w - out_w) // 2  # negative: pad
        out = np.zeros((out_h, out_w) + img.shape[2:], dtype=img.dtype)
        src = resized[max(top, 0):max(top, 0) + out_h, max(left, 0):max(left, 0) + out_w]
        out[max(-top, 0):max(-top, 0) + src.shape[0], max(-left, 0):max(-left, 0) + src.shape[1]] = src
        sx, sy = new_w / in_w, new_h / in_h
        aug = np.eye(4, dtype=np.float32)
        aug[0, 0], aug[1, 1] = sx, sy
        aug[0, 3], aug[1, 3] = 0.5 * sx - 0.5 - left, 0.5 * sy - 0.5 - top
        return out, aug

    def transform(self, results: dict) -> dict:
        imgs = results['img']
        scale = self._scale(imgs[0].shape[1])
        views = [self._view(img, scale) for img in imgs]
        results['img'] = [v[0] for v in views]
        results['img_aug_matrix'] = [v[1] for v in views]
        results['img_shape'] = results['pad_shape'] = self.final_size
        if 'cam2img' in results and 'lidar2cam' in results:
            results['lidar2img'] = [_projective(aug) @ _as_4x4(k) @ _as_4x4(e) for aug, k, e in
                                    zip(results['img_aug_matrix'], results['cam2img'], results['lidar2cam'])]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(final_size={self.final_size}, scale={self.scale}, '
                f'scale_range={self.scale_range}, interpolation={self.interpolation!r})')


def _projective(aug: np.ndarray) -> np.ndarray:
    """The aug matrix acting on homogeneous ``(u d, v d, d, 1)``: its pixel shift scales with depth (column 2)."""
    out = aug.copy()
    out[:2, 2], out[:2, 3] = aug[:2, 3], 0.0
    return out


def _as_4x4(matrix) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    out = np.eye(4, dtype=np.float32)
    out[:matrix.shape[0], :matrix.shape[1]] = matrix
    return out
