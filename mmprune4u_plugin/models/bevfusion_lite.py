"""BEVFusion-style LiDAR-camera 3D detector built from registry parts; runs on CPU."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mmdet3d.models import Base3DDetector
from mmdet3d.models.dense_heads.centerpoint_head import SeparateHead
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample

from .geometry import camera_matrices


def _build(cfg: dict | None):
    return None if cfg is None else MODELS.build(cfg)


@MODELS.register_module()
class BEVFusionLite(Base3DDetector):
    """BEVFusion's structure (Liu et al., ICRA 2023) with CPU-friendly parts and BEVFusion's module names.

    Camera branch: ``img_backbone`` -> ``img_neck`` (first output) -> ``view_transform`` (LSS) -> camera BEV.
    LiDAR branch: hard voxels from :class:`Det3DDataPreprocessor` -> ``pts_voxel_encoder`` -> ``pts_middle_encoder``
    -> LiDAR BEV. ``fusion_layer`` takes ``[camera BEV, LiDAR BEV]`` (the branches present, in that order), then
    ``pts_backbone`` -> ``pts_neck`` -> ``bbox_head``. A branch is off when its modules are None: camera-only leaves
    ``pts_voxel_encoder``/``pts_middle_encoder`` None, LiDAR-only leaves ``img_backbone``/``img_neck``/
    ``view_transform`` None; ``fusion_layer`` may be None when one branch is on.

    The head is called through ``__call__`` in every mode (forward hooks on it fire in ``loss``, ``predict`` and
    ``tensor``).

    Args:
        pts_backbone (dict): BEV backbone, e.g. SECOND.
        bbox_head (dict): Dense head with mmdet3d's ``loss``/``predict`` interface, e.g. CenterHead.
        img_backbone, img_neck, view_transform (dict, optional): Camera branch.
        pts_voxel_encoder, pts_middle_encoder (dict, optional): LiDAR branch.
        fusion_layer (dict, optional): Fuser of the BEV maps.
        pts_neck (dict, optional): BEV neck, e.g. SECONDFPN.
        train_cfg, test_cfg (dict, optional): Merged into ``bbox_head`` when given.
        data_preprocessor (dict, optional): ``Det3DDataPreprocessor`` (``voxel=True, voxel_type='hard'`` for the
            LiDAR branch).
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self, pts_backbone: dict, bbox_head: dict, img_backbone: dict | None = None,
                 img_neck: dict | None = None, view_transform: dict | None = None,
                 pts_voxel_encoder: dict | None = None, pts_middle_encoder: dict | None = None,
                 fusion_layer: dict | None = None, pts_neck: dict | None = None, train_cfg: dict | None = None,
                 test_cfg: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if (img_backbone is None) != (view_transform is None):
            raise ValueError('the camera branch needs both `img_backbone` and `view_transform` (or neither), but got '
                             f'img_backbone: {img_backbone is not None}, view_transform: {view_transform is not None}')
        if (pts_voxel_encoder is None) != (pts_middle_encoder is None):
            raise ValueError('the LiDAR branch needs both `pts_voxel_encoder` and `pts_middle_encoder` (or neither), '
                             f'but got pts_voxel_encoder: {pts_voxel_encoder is not None}, '
                             f'pts_middle_encoder: {pts_middle_encoder is not None}')
        if img_backbone is None and pts_voxel_encoder is None:
            raise ValueError('no modality: set the camera branch (`img_backbone`, `view_transform`), the LiDAR branch '
                             '(`pts_voxel_encoder`, `pts_middle_encoder`) or both')
        if fusion_layer is None and img_backbone is not None and pts_voxel_encoder is not None:
            raise ValueError('`fusion_layer` is None, but both the camera and the LiDAR branch are set')
        self.img_backbone, self.img_neck = _build(img_backbone), _build(img_neck)
        self.view_transform = _build(view_transform)
        self.pts_voxel_encoder, self.pts_middle_encoder = _build(pts_voxel_encoder), _build(pts_middle_encoder)
        self.fusion_layer = _build(fusion_layer)
        self.pts_backbone, self.pts_neck = MODELS.build(pts_backbone), _build(pts_neck)
        bbox_head = dict(bbox_head)
        if train_cfg is not None:
            bbox_head['train_cfg'] = train_cfg
        if test_cfg is not None:
            bbox_head['test_cfg'] = test_cfg
        self.bbox_head = MODELS.build(bbox_head)

    def init_weights(self) -> None:
        """mmengine's init, plus the heatmap bias prior of CenterHead's sub-heads.

        mmengine recurses only into children that have ``init_weights``; CenterHead keeps its ``SeparateHead``s in a
        plain ``nn.ModuleList``, so their ``init_bias`` (-2.19, a prior of 0.1 per heatmap cell) is never applied
        and an untrained model starts from ~0.5 everywhere. Only the bias is set here: ``SeparateHead``'s own
        init (Kaiming fan-out) gives a 1x1 heatmap conv weights of std 1.4 and an initial focal loss in the thousands.
        """
        super().init_weights()
        for module in self.bbox_head.modules():
            if isinstance(module, SeparateHead) and 'heatmap' in module.heads:
                module.heatmap[-1].bias.data.fill_(module.init_bias)

    @property
    def with_camera(self) -> bool:
        return self.img_backbone is not None

    @property
    def with_lidar(self) -> bool:
        return self.pts_middle_encoder is not None

    def extract_img_bev(self, imgs: Tensor, metas: Sequence[dict]) -> Tensor:
        """``(B, N, 3, H, W)`` images -> camera BEV map."""
        batch, views = imgs.shape[:2]
        x = self.img_backbone(imgs.flatten(0, 1))
        if self.img_neck is not None:
            x = self.img_neck(x)
        x = x if isinstance(x, Tensor) else x[0]
        x = x.view(batch, views, *x.shape[1:])
        return self.view_transform(x, **camera_matrices(metas, num_views=views, device=x.device))

    def extract_pts_bev(self, voxel_dict: dict, batch_size: int) -> Tensor:
        """Hard voxels -> LiDAR BEV map. No points at all (a failed LiDAR, mmprune4u's ``LidarAbsent``) gives the
        map of an empty scene: zeros, as a sparse encoder's dense output is wherever no voxel is active."""
        coors = voxel_dict['coors']
        if coors.shape[0] == 0:
            return coors.new_zeros((batch_size, *self._empty_pts_bev_shape()), dtype=torch.float32)
        feats = self.pts_voxel_encoder(voxel_dict['voxels'], voxel_dict['num_points'], coors)
        return self.pts_middle_encoder(feats, coors, batch_size)

    def _empty_pts_bev_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the LiDAR BEV map, from one dummy voxel through the encoders in eval mode (so no BN
        statistics move), cached."""
        if getattr(self, '_pts_bev_shape', None) is None:
            encoders = [self.pts_voxel_encoder, self.pts_middle_encoder]
            flags = [(m, m.training) for enc in encoders for m in enc.modules()]
            param = next(self.pts_middle_encoder.parameters())
            num_features = getattr(self.pts_voxel_encoder, 'num_features', 5)
            try:
                for enc in encoders:
                    enc.eval()
                with torch.no_grad():
                    voxels = param.new_zeros(1, 1, num_features)
                    coors = torch.zeros(1, 4, dtype=torch.int32, device=param.device)
                    feats = self.pts_voxel_encoder(voxels, coors.new_ones(1), coors)
                    self._pts_bev_shape = tuple(self.pts_middle_encoder(feats, coors, 1).shape[1:])
            finally:
                for m, flag in flags:
                    m.training = flag
        return self._pts_bev_shape

    def extract_feat(self, batch_inputs_dict: dict, batch_input_metas: Sequence[dict]) -> list[Tensor]:
        """BEV features for the head: ``pts_neck(pts_backbone(fusion_layer([camera BEV, LiDAR BEV])))``."""
        bevs = []
        if self.with_camera:
            if 'imgs' not in batch_inputs_dict:
                raise KeyError('the camera branch needs `img` in the inputs: add it to Pack3DDetInputs keys')
            bevs.append(self.extract_img_bev(batch_inputs_dict['imgs'], batch_input_metas))
        if self.with_lidar:
            if 'voxels' not in batch_inputs_dict:
                raise KeyError('the LiDAR branch needs voxels: set `voxel=True` in the Det3DDataPreprocessor and '
                               'pack `points`')
            bevs.append(self.extract_pts_bev(batch_inputs_dict['voxels'], len(batch_input_metas)))
        x = self.fusion_layer(bevs) if self.fusion_layer is not None else bevs[0]
        x = self.pts_backbone(x)
        if self.pts_neck is not None:
            x = self.pts_neck(x)
        return list(x) if isinstance(x, (list, tuple)) else [x]

    def loss(self, batch_inputs_dict: dict, batch_data_samples: list[Det3DDataSample], **kwargs) -> dict:
        metas = [s.metainfo for s in batch_data_samples]
        if not (self.with_camera and getattr(self.view_transform, 'depth_loss_weight', 0.0) > 0):
            return self.bbox_head.loss(self.extract_feat(batch_inputs_dict, metas), batch_data_samples)
        if 'points' not in batch_inputs_dict:
            raise KeyError('`depth_loss_weight` > 0 needs the LiDAR points in the training inputs: load them and '
                           'add `points` to Pack3DDetInputs keys (the camera-only model ignores them otherwise)')
        with self.view_transform.recording_depth():
            losses = self.bbox_head.loss(self.extract_feat(batch_inputs_dict, metas), batch_data_samples)
            imgs = batch_inputs_dict['imgs']
            matrices = camera_matrices(metas, num_views=imgs.shape[1], device=imgs.device)
            losses['loss_depth'] = self.view_transform.depth_loss(batch_inputs_dict['points'], **matrices)
        return losses

    def predict(self, batch_inputs_dict: dict, batch_data_samples: list[Det3DDataSample],
                **kwargs) -> list[Det3DDataSample]:
        feats = self.extract_feat(batch_inputs_dict, [s.metainfo for s in batch_data_samples])
        results = self.bbox_head.predict(feats, batch_data_samples)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs_dict: dict, batch_data_samples: list[Det3DDataSample] | None = None, **kwargs):
        """Raw head outputs (no post-processing)."""
        metas = [s.metainfo for s in batch_data_samples] if batch_data_samples is not None else []
        if self.with_camera and not metas:
            raise ValueError('`tensor` mode of the camera branch needs data samples (camera calibrations)')
        if not metas:
            metas = [{}] * len(batch_inputs_dict['points'])
        return self.bbox_head(self.extract_feat(batch_inputs_dict, metas))
