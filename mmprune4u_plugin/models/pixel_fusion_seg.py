"""LiDAR-camera point segmentor: MinkUNet voxel features fused with image features gathered at each voxel's pixel."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet3d.models.segmentors import MinkUNet
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import OptSampleList, SampleList

from .geometry import camera_matrices, lidar_to_image


def gather_pixel_features(img_feats: Tensor, uvd: Tensor, image_hw: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Bilinear image features at projected points, zero (and invalid) outside the image or behind the camera.

    Args:
        img_feats (Tensor): ``(C, h, w)`` feature map of one image whose input size is ``image_hw`` (pixel centres of
            the map are aligned with those of the input, ``align_corners=False``).
        uvd (Tensor): ``(P, 3)`` input-image column, row and depth of each point.
        image_hw (Sequence[int]): ``(H, W)`` of the network's input image.

    Returns:
        tuple[Tensor, Tensor]: ``(P, C)`` features and the ``(P,)`` bool mask of points seen by the camera.
    """
    height, width = float(image_hw[0]), float(image_hw[1])
    u, v, depth = uvd.unbind(-1)
    valid = (depth > 1e-3) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    grid = torch.stack([u / width * 2 - 1, v / height * 2 - 1], dim=-1)
    grid = torch.where(valid[:, None], grid, torch.zeros_like(grid))  # keep far-off points from producing inf/NaN
    sampled = F.grid_sample(img_feats[None], grid[None, None], mode='bilinear', padding_mode='zeros',
                            align_corners=False)[0, :, 0].t()
    return sampled * valid[:, None].to(sampled.dtype), valid


@MODELS.register_module()
class PointCamFuser(nn.Module):
    """Fuses per-voxel feature vectors: ``concat(inputs) -> Linear -> BN1d -> ReLU``.

    Args:
        in_channels (Sequence[int]): Channels of each input, in the order they are passed (LiDAR first).
        out_channels (int): Output channels (the decode head's ``channels``).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.linear = nn.Linear(sum(self.in_channels), out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        if [int(x.shape[1]) for x in inputs] != self.in_channels:
            raise ValueError(f'PointCamFuser expects inputs with {self.in_channels} channels, but got '
                             f'{[int(x.shape[1]) for x in inputs]}')
        return F.relu(self.norm(self.linear(torch.cat(list(inputs), dim=1))))


@MODELS.register_module()
class MinkUNetPixelFusion(MinkUNet):
    """MinkUNet with point-to-pixel fusion of one camera, in the spirit of PMF / 2DPASS.

    LiDAR branch: ``backbone`` (mmdet3d's MinkUNet backbone) gives one feature vector per voxel. Camera branch:
    ``img_backbone`` -> ``img_neck`` (output ``img_feature_level``) gives an image feature map; each voxel's
    representative point (the point the voxelisation kept) is projected into the image (``cam2img``, ``lidar2cam``,
    undoing mmdet3d's 3D augmentation, see :mod:`.geometry`) and the map is sampled there (zero outside the image).
    ``fusion_layer`` maps ``[LiDAR, camera]`` voxel features to the ``decode_head``'s channels. With
    ``img_backbone=None`` the same network runs LiDAR-only (``fusion_layer`` then takes the LiDAR features alone), the
    fair single-sensor reference of the fused model.

    Module groups for MMPrune4UHook: camera ``img_backbone``, ``img_neck``; LiDAR ``backbone``; fusion
    ``fusion_layer``, ``decode_head``.

    Args:
        backbone, decode_head (dict): As :class:`mmdet3d.models.segmentors.MinkUNet`.
        fusion_layer (dict): e.g. ``dict(type='PointCamFuser', in_channels=[lidar, camera], out_channels=...)``.
        img_backbone, img_neck (dict, optional): Camera branch (mmdet's ResNet / FPN).
        img_feature_level (int): Which ``img_neck`` (or ``img_backbone``) output to sample. Defaults to 0.
        **kwargs: ``train_cfg``, ``test_cfg``, ``data_preprocessor``, ``init_cfg`` of :class:`EncoderDecoder3D`.
    """

    def __init__(self, backbone: dict, decode_head: dict, fusion_layer: dict, img_backbone: dict | None = None,
                 img_neck: dict | None = None, img_feature_level: int = 0, **kwargs) -> None:
        super().__init__(backbone=backbone, decode_head=decode_head, **kwargs)
        if img_backbone is None and img_neck is not None:
            raise ValueError('`img_neck` is set but `img_backbone` is None')
        self.img_backbone = None if img_backbone is None else MODELS.build(img_backbone)
        self.img_neck = None if img_neck is None else MODELS.build(img_neck)
        self.img_feature_level = int(img_feature_level)
        self.fusion_layer = MODELS.build(fusion_layer)

    @property
    def with_camera(self) -> bool:
        return self.img_backbone is not None

    # ------------------------------------------------------------------------------------------------ features
    def image_features(self, imgs: Tensor) -> Tensor:
        """``(B, 1, 3, H, W)`` (or ``(B, 3, H, W)``) images -> ``(B, C, h, w)`` feature map."""
        if imgs.dim() == 5:
            if imgs.shape[1] != 1:
                raise ValueError(f'MinkUNetPixelFusion takes one camera, but got {imgs.shape[1]} views')
            imgs = imgs[:, 0]
        feats = self.img_backbone(imgs)
        if self.img_neck is not None:
            feats = self.img_neck(feats)
        return feats[self.img_feature_level] if isinstance(feats, (list, tuple)) else feats

    def voxel_camera_features(self, img_feats: Tensor, image_hw: Sequence[int], voxels: Tensor, coors: Tensor,
                              data_samples: SampleList) -> Tensor:
        """``(V, C)`` image features at each voxel's kept point (rows in the order of ``voxels``)."""
        metas = [s.metainfo for s in data_samples]
        mats = camera_matrices(metas, num_views=1, device=voxels.device)
        batch_col = 0 if self.data_preprocessor.batch_first else -1
        out = voxels.new_zeros(voxels.shape[0], img_feats.shape[1])
        for i in range(len(data_samples)):
            rows = coors[:, batch_col] == i
            uvd = lidar_to_image(voxels[rows, :3][None], cam2img=mats['cam2img'][i:i + 1],
                                 lidar2cam=mats['lidar2cam'][i:i + 1], img_aug_matrix=mats['img_aug_matrix'][i:i + 1],
                                 lidar_aug_matrix=mats['lidar_aug_matrix'][i:i + 1])[0, 0]
            out[rows] = gather_pixel_features(img_feats[i], uvd, image_hw)[0]
        return out

    def extract_feat(self, batch_inputs_dict: dict, batch_data_samples: OptSampleList = None) -> Tensor:
        """Fused per-voxel features (the decode head's input)."""
        voxel_dict = batch_inputs_dict['voxels']
        lidar = self.backbone(voxel_dict['voxels'], voxel_dict['coors'])
        parts = [lidar]
        if self.with_camera:
            imgs = batch_inputs_dict.get('imgs')
            if imgs is None or batch_data_samples is None:
                raise ValueError('MinkUNetPixelFusion has a camera branch: the batch needs `imgs` (load the image '
                                 'with LoadMultiViewImageFromFiles(num_views=1) and pack it with Pack3DDetInputs) '
                                 'and the data samples (cam2img, lidar2cam metainfo)')
            img_feats = self.image_features(imgs)
            parts.append(self.voxel_camera_features(img_feats, imgs.shape[-2:], voxel_dict['voxels'],
                                                    voxel_dict['coors'], batch_data_samples))
        return self.fusion_layer(parts)

    # ------------------------------------------------------------------------------------------------ modes
    def loss(self, inputs: dict, data_samples: SampleList) -> dict:
        x = self.extract_feat(inputs, data_samples)
        return self.decode_head.loss(x, data_samples, self.train_cfg)

    def predict(self, inputs: dict, batch_data_samples: SampleList) -> SampleList:
        x = self.extract_feat(inputs, batch_data_samples)
        seg_logits_list = self.decode_head.predict(x, batch_data_samples)
        seg_logits_list = [logits.transpose(0, 1) for logits in seg_logits_list]
        return self.postprocess_result(seg_logits_list, batch_data_samples)

    def _forward(self, batch_inputs_dict: dict, batch_data_samples: OptSampleList = None) -> Tensor:
        return self.decode_head.forward(self.extract_feat(batch_inputs_dict, batch_data_samples))
