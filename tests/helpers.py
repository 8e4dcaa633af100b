"""Tiny deterministic models shared by the tests."""
from __future__ import annotations

import torch
from torch import nn


def arange_(module: nn.Module) -> nn.Module:
    """Give every parameter distinct, hand-checkable values 1..n (scaled), alternating sign."""
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            vals = torch.arange(1, n + 1, dtype=p.dtype) / n
            sign = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(p.dtype)
            p.copy_((vals * sign).view_as(p))
    return module


class TwoBranchNet(nn.Module):
    """A camera branch and a LiDAR branch fused into a head, named like mmdet3d multimodal detectors."""

    def __init__(self) -> None:
        super().__init__()
        self.img_backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.pts_backbone = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4))
        self.fusion_layer = nn.Conv2d(8, 6, 1)
        self.bbox_head = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 1))
        self.norm = nn.BatchNorm2d(6)

    def forward(self, img: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        cam = self.img_backbone(img)
        lid = self.pts_backbone(pts).mean(1)[:, :, None, None].expand_as(cam)
        fused = self.norm(self.fusion_layer(torch.cat([cam, lid], 1)))
        return self.bbox_head(fused)


def two_branch_batches(n: int = 2, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    return [dict(img=torch.randn(2, 3, 6, 6, generator=gen), pts=torch.randn(2, 10, 5, generator=gen))
            for _ in range(n)]


def forward_two_branch(model: nn.Module, batch: dict) -> torch.Tensor:
    return model(**batch)
