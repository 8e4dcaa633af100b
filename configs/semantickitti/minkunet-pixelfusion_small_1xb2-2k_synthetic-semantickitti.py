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
load_steps = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
              dict(type='LoadMultiViewImageFromFiles', to_float32=True, num_views=1),
              dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
                   seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
              dict(type='PointSegClassMapping')]
pack = dict(type='Pack3DDetInputs', keys=['points', 'img', 'pts_semantic_mask'])
train_pipeline = load_steps + [
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.78539816, 0.78539816], scale_ratio_range=[0.95, 1.05],
         translation_std=[0.1, 0.1, 0.1]),
    pack]
test_pipeline = load_steps + [pack]
modality = dict(use_lidar=True, use_camera=True)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, modality=modality))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline, modality=modality))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline, modality=modality))
