"""LSS view transform (Lift-Splat-Shoot, as in BEVFusion's camera branch), in pure PyTorch."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet3d.registry import MODELS
from .bev_pool import bev_pool, grid_size
from .geometry import image_to_lidar, lidar_to_image


def create_frustum(image_size: Sequence[int], feature_size: Sequence[int], dbound: Sequence[float]) -> Tensor:
    """``(D, fH, fW, 3)`` points ``(u, v, d)``: the input-image pixel centre of each feature cell at each depth bin.

    Feature cell ``j`` of a map with stride ``s = iW / fW`` covers pixels ``[s j, s (j + 1))``, centre
    ``s (j + 0.5) - 0.5``; depth bins are ``arange(dmin, dmax, dstep)``.
    """
    (image_h, image_w), (feat_h, feat_w) = image_size, feature_size
    depths = torch.arange(*dbound, dtype=torch.float32)
    us = (torch.arange(feat_w, dtype=torch.float32) + 0.5) * (image_w / feat_w) - 0.5
    vs = (torch.arange(feat_h, dtype=torch.float32) + 0.5) * (image_h / feat_h) - 0.5
    d, v, u = torch.meshgrid(depths, vs, us, indexing='ij')
    return torch.stack([u, v, d], dim=-1)


@MODELS.register_module()
class LSSViewTransform(BaseModule):
    """Lift camera features to a BEV map: per-pixel depth distribution x context, splatted with :func:`bev_pool`.

    Steps: a 1x1 conv (``depthnet``) maps each feature pixel to D depth logits and C context channels; the softmax
    over depth times the context gives a feature per frustum point ``(camera, depth bin, pixel)``; the frustum points
    go through the real calibrations (:func:`~mmprune4u_plugin.models.geometry.image_to_lidar`) into the LiDAR frame;
    :func:`bev_pool` sums them into the ``(B, C * nz, ny, nx)`` grid (rows y, columns x, as mmdet3d's LiDAR BEV maps);
    an optional conv stack (``downsample=2``, BEVFusion's) halves the grid.

    Args:
        in_channels (int): Channels of the image-neck map.
        out_channels (int): Context channels C.
        image_size (tuple[int, int]): Network input image ``(H, W)``.
        feature_size (tuple[int, int]): Image-neck map ``(fH, fW)``.
        xbound, ybound, zbound (tuple[float, float, float]): BEV grid ``(min, max, step)`` per axis (LiDAR frame).
        dbound (tuple[float, float, float]): Depth bins ``(min, max, step)`` in metres.
        downsample (int): 1 (none) or 2. Defaults to 1.
        depth_loss_weight (float): Weight of the LiDAR depth supervision (BEVDepth's idea: cross-entropy of each
            feature cell's depth logits against the bin of the nearest LiDAR point projected into it; cells without
            a point are ignored). 0 (default, BEVFusion): the depth distribution learns only from the task loss.
            An LSS branch trained from scratch on a short CPU budget learns next to nothing without it.
        pool (str): How the frustum features of a BEV cell combine. ``'sum'`` (default, LSS / BEVFusion): their
            sum, so a cell's feature grows with the depth-probability mass ``m`` landing in it, which falls by
            orders of magnitude with range (many pixels see the near ground, few see a car at 40 m; measured on the
            synthetic set: median |feature| 205 at 5-10 m, 0.8 at 30-40 m, so after the fuser's BatchNorm far objects
            are nearly zero). ``'mean'``: the sum divided by ``max(m, 1)``, i.e. the depth-weighted mean of the
            context features wherever at least one pixel's worth of mass lands, and the plain sum (scaled down by
            the mass, a confidence) where less does: the scale no longer depends on range.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self, in_channels: int, out_channels: int, image_size: Sequence[int], feature_size: Sequence[int],
                 xbound: Sequence[float], ybound: Sequence[float], zbound: Sequence[float],
                 dbound: Sequence[float], downsample: int = 1, depth_loss_weight: float = 0.0,
                 pool: str = 'sum', init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pool not in ('sum', 'mean'):
            raise ValueError(f"`pool` must be 'sum' or 'mean', but got pool: {pool!r}")
        self.pool = pool
        if downsample not in (1, 2):
            raise ValueError(f'`downsample` must be 1 or 2, but got downsample: {downsample}')
        if depth_loss_weight < 0:
            raise ValueError(f'`depth_loss_weight` must be >= 0, but got depth_loss_weight: {depth_loss_weight}')
        self.dbound, self.depth_loss_weight = tuple(float(b) for b in dbound), float(depth_loss_weight)
        self._recording_depth = False
        self._depth_logits: Tensor | None = None
        self.image_size, self.feature_size = tuple(image_size), tuple(feature_size)
        self.bounds = dict(xbound=tuple(xbound), ybound=tuple(ybound), zbound=tuple(zbound))
        self.register_buffer('frustum', create_frustum(image_size, feature_size, dbound), persistent=False)
        self.num_depth, self.out_channels = self.frustum.shape[0], out_channels
        self.depthnet = nn.Conv2d(in_channels, self.num_depth + out_channels, 1)
        channels = out_channels * grid_size(zbound)
        self.downsample = nn.Identity() if downsample == 1 else nn.Sequential(*[
            ConvModule(channels, channels, 3, stride=stride, padding=1, bias=False, norm_cfg=dict(type='BN2d'))
            for stride in (1, 2, 1)])

    def lift(self, img_feats: Tensor) -> Tensor:
        """``(B, N, Cin, fH, fW)`` -> frustum features ``(B, N, D, fH, fW, C)``; with ``pool='mean'`` one more
        channel at the end, the depth probability (the mass that :meth:`forward` divides by)."""
        batch, views, _, feat_h, feat_w = img_feats.shape
        if (feat_h, feat_w) != self.feature_size:
            raise ValueError(f'image features are {feat_h}x{feat_w}, but the view transform was built for '
                             f'feature_size={list(self.feature_size)}')
        x = self.depthnet(img_feats.flatten(0, 1))
        self._depth_logits = x[:, :self.num_depth] if self._recording_depth and self.training else None
        depth = x[:, :self.num_depth].softmax(dim=1)
        context = x[:, self.num_depth:]
        x = depth.unsqueeze(1) * context.unsqueeze(2)  # (BN, C, D, fH, fW)
        if self.pool == 'mean':
            x = torch.cat([x, depth.unsqueeze(1)], dim=1)
        return x.view(batch, views, x.shape[1], self.num_depth, feat_h, feat_w).permute(0, 1, 3, 4, 5, 2)

    def geometry(self, *, cam2img: Tensor, lidar2cam: Tensor, img_aug_matrix: Tensor,
                 lidar_aug_matrix: Tensor) -> Tensor:
        """LiDAR-frame coordinates of the frustum points, ``(B, N, D, fH, fW, 3)``."""
        return image_to_lidar(self.frustum, cam2img=cam2img, lidar2cam=lidar2cam, img_aug_matrix=img_aug_matrix,
                              lidar_aug_matrix=lidar_aug_matrix)

    def forward(self, img_feats: Tensor, cam2img: Tensor, lidar2cam: Tensor, img_aug_matrix: Tensor,
                lidar_aug_matrix: Tensor) -> Tensor:
        """Camera BEV map ``(B, C * nz, ny / downsample, nx / downsample)``.

        Args:
            img_feats (Tensor): ``(B, N, Cin, fH, fW)`` image-neck features of the N cameras.
            cam2img, lidar2cam, img_aug_matrix (Tensor): ``(B, N, 4, 4)``, see
                :mod:`~mmprune4u_plugin.models.geometry`.
            lidar_aug_matrix (Tensor): ``(B, 4, 4)``.
        """
        coords = self.geometry(cam2img=cam2img, lidar2cam=lidar2cam, img_aug_matrix=img_aug_matrix,
                               lidar_aug_matrix=lidar_aug_matrix)
        frustum = self.lift(img_feats)
        if self.pool == 'sum':
            return self.downsample(bev_pool(coords, frustum, **self.bounds))
        batch, channels = frustum.shape[0], self.out_channels
        pooled = bev_pool(coords, frustum, **self.bounds)  # (B, nz * (C + 1), ny, nx)
        pooled = pooled.view(batch, -1, channels + 1, *pooled.shape[-2:])
        bev = pooled[:, :, :channels] / pooled[:, :, channels:].clamp(min=1.0)
        return self.downsample(bev.flatten(1, 2))

    @contextmanager
    def recording_depth(self) -> Iterator[None]:
        """Keep the depth logits of training passes for :meth:`depth_loss` inside this block (a loss pass) only.

        Outside it nothing is kept: a logits tensor with its autograd graph left on the module by another pass
        (calibration, a gradient-based curve estimate) would hold memory and make the module impossible to deepcopy
        (e.g. the LSI teacher).
        """
        self._recording_depth = True
        try:
            yield
        finally:
            self._recording_depth, self._depth_logits = False, None

    def depth_targets(self, points: Sequence[Tensor], *, cam2img: Tensor, lidar2cam: Tensor, img_aug_matrix: Tensor,
                      lidar_aug_matrix: Tensor) -> Tensor:
        """``(B, N, fH, fW)`` depth-bin index of the nearest LiDAR point in each feature cell, -1 where none.

        Args:
            points (Sequence[Tensor]): Per sample ``(P, >=3)`` points in the (augmented) LiDAR frame.
            cam2img, lidar2cam, img_aug_matrix (Tensor): ``(B, N, 4, 4)``; lidar_aug_matrix ``(B, 4, 4)``.
        """
        (image_h, image_w), (feat_h, feat_w) = self.image_size, self.feature_size
        dmin, dmax, dstep = self.dbound
        views = cam2img.shape[1]
        targets = []
        for b, pts in enumerate(points):
            uvd = lidar_to_image(pts[None, :, :3].float(), cam2img=cam2img[b:b + 1], lidar2cam=lidar2cam[b:b + 1],
                                 img_aug_matrix=img_aug_matrix[b:b + 1],
                                 lidar_aug_matrix=lidar_aug_matrix[b:b + 1])[0]  # (N, P, 3)
            col = torch.floor((uvd[..., 0] + 0.5) / (image_w / feat_w)).long()
            row = torch.floor((uvd[..., 1] + 0.5) / (image_h / feat_h)).long()
            depth = uvd[..., 2]
            valid = (col >= 0) & (col < feat_w) & (row >= 0) & (row < feat_h) & (depth >= dmin) & (depth < dmax)
            view = torch.arange(views, device=uvd.device)[:, None].expand_as(col)
            cell = (view * feat_h + row) * feat_w + col
            nearest = torch.full((views * feat_h * feat_w,), float('inf'), device=uvd.device)
            nearest.scatter_reduce_(0, cell[valid], depth[valid], reduce='amin')
            bins = torch.floor((nearest - dmin) / dstep).clamp(max=self.num_depth - 1)
            target = torch.where(torch.isfinite(nearest), bins, torch.full_like(bins, -1)).long()
            targets.append(target.view(views, feat_h, feat_w))
        return torch.stack(targets)

    def depth_loss(self, points: Sequence[Tensor], **matrices: Tensor) -> Tensor:
        """``depth_loss_weight`` x cross-entropy of the last training pass's depth logits (cells with a point)."""
        if self._depth_logits is None:
            raise RuntimeError('no depth logits: depth_loss needs a training-mode forward inside recording_depth()')
        logits, self._depth_logits = self._depth_logits, None
        target = self.depth_targets(points, **matrices).flatten(0, 1)  # (B N, fH, fW), as the logits
        valid = target >= 0
        if not bool(valid.any()):
            return logits.sum() * 0.0
        return self.depth_loss_weight * F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
