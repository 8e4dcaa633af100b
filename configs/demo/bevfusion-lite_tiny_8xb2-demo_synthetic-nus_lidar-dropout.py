"""The demo's fused model trained with LiDAR dropout: a quarter of the training samples lose their whole point cloud
(``LidarAbsent``, this project's corruption transform, through mmcv's ``RandomApply``).

Why: trained only on samples with both sensors, the fused model learns to ignore its camera (its stage-2 fuser
weights on the camera BEV are ~5x smaller per element than on the LiDAR one, and it scores NDS 0.000 with the LiDAR
absent). BEVFusion-style models that must survive a sensor failure are trained with such modality dropout. The test
pipeline is the demo config's: only training changes. tools/compare_modalities.py uses this config for the fused
model's stage 2 when ``--lidar-dropout`` is given.
"""
_base_ = ['./bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py']
point_cloud_range, image_size = {{_base_.point_cloud_range}}, {{_base_.image_size}}
class_names, meta_keys = {{_base_.class_names}}, {{_base_.meta_keys}}
lidar_dropout = 0.25  # share of training samples without LiDAR
train_pipeline = [
    dict(type='LoadMultiViewImageFromFiles', to_float32=True, color_type='color', num_views=6),
    dict(type='MultiViewImageResizeCrop', final_size=image_size),
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='RandomApply', transforms=[dict(type='LidarAbsent')], prob=lidar_dropout),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='Pack3DDetInputs', keys=['points', 'img', 'gt_bboxes_3d', 'gt_labels_3d'], meta_keys=meta_keys)]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
