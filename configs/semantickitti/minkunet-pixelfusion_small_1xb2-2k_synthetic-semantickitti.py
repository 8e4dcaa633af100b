"""LiDAR-camera segmentor (MinkUNetPixelFusion): the small MinkUNet plus the front camera, point-to-pixel fusion.

Same LiDAR network, data, augmentation and schedule as ``minkunet_small_spconv_1xb2-2k_synthetic-semantickitti.py``;
its LiDAR-only twin is ``minkunet-pixelfusion_small_lidar-only_1xb2-2k_synthetic-semantickitti.py``. Road, parking and
sidewalk of the synthetic data differ only in colour, so the camera is what separates them. Module groups for the
pruning hook: camera ``img_backbone``, ``img_neck``; LiDAR ``backbone``; fusion ``fusion_layer``, ``decode_head``.
"""
_base_ = ['./minkunet_small_spconv_1xb2-2k_synthetic-semantickitti.py']
model = dict(
    type='MinkUNetPixelFusion',
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    img_backbone=dict(type='mmdet.ResNet', depth=18, base_channels=16, num_stages=2, strides=(1, 2),
                      dilations=(1, 1), out_indices=(0, 1), frozen_stages=-1, norm_cfg=dict(type='BN'),
                      norm_eval=False, style='pytorch', init_cfg=None),
    img_neck=dict(type='mmdet.FPN', in_channels=[16, 32], out_channels=32, num_outs=2),
    img_feature_level=0,  # stride 4
    fusion_layer=dict(type='PointCamFuser', in_channels=[32, 32], out_channels=32))
modality = dict(use_lidar=True, use_camera=True)
train_dataloader = dict(dataset=dict(pipeline={{_base_.camera_train_pipeline}}, modality=modality))
val_dataloader = dict(dataset=dict(pipeline={{_base_.camera_test_pipeline}}, modality=modality))
test_dataloader = dict(dataset=dict(pipeline={{_base_.camera_test_pipeline}}, modality=modality))
