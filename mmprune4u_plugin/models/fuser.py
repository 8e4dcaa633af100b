"""Conv fuser: concatenate the modality BEV maps and mix them with conv-BN-ReLU (BEVFusion's ``ConvFuser``)."""
from __future__ import annotations

from typing import Sequence

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmdet3d.registry import MODELS


@MODELS.register_module()
class BEVConvFuser(BaseModule):
    """``conv3x3-BN-ReLU(cat(bev maps))``.

    Registered under its own name so it can live beside mmdet3d's ``projects.BEVFusion`` (whose ``ConvFuser`` is
    in the same registry). With one input it is a plain conv block, which keeps the LiDAR-only and camera-only
    variants the same network after the branch.

    Args:
        in_channels (Sequence[int]): Channels of each input map, in the order the detector passes them
            (camera first, then LiDAR, as BEVFusion).
        out_channels (int): Output channels.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = list(in_channels)
        self.conv = ConvModule(sum(self.in_channels), out_channels, 3, padding=1, bias=False,
                               norm_cfg=dict(type='BN2d'), act_cfg=dict(type='ReLU', inplace=True))

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        channels = [x.shape[1] for x in inputs]
        if channels != self.in_channels:
            raise ValueError(f'fuser inputs have channels {channels}, but `in_channels` is {self.in_channels}')
        sizes = {tuple(x.shape[-2:]) for x in inputs}
        if len(sizes) != 1:
            raise ValueError(f'BEV maps to fuse differ in size: {[tuple(x.shape[-2:]) for x in inputs]}; set the '
                             'camera grid (view transform bounds/downsample) to the LiDAR encoder output')
        return self.conv(torch.cat(list(inputs), dim=1))
