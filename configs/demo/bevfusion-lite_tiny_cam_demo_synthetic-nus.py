"""Camera-only ablation of the demo's dense model (same training budget), for the fused-vs-single-sensor check.

Fill these args: ``data_root`` via the base; ``train_cfg.max_iters`` (keep equal to the fused run).
"""
_base_ = ['./bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py']
# points are loaded for training only: the depth supervision of the camera branch needs them (no LiDAR branch)
model = dict(pts_voxel_encoder=None, pts_middle_encoder=None, fusion_layer=dict(in_channels=[32]),
             data_preprocessor=dict(voxel=False))
point_cloud_range, class_names, meta_keys = {{_base_.point_cloud_range}}, {{_base_.class_names}}, {{_base_.meta_keys}}
load_steps = [dict(type='LoadMultiViewImageFromFiles', to_float32=True, color_type='color', num_views=6),
              dict(type='MultiViewImageResizeCrop', final_size={{_base_.image_size}})]
train_pipeline = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5)] + load_steps + [
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='Pack3DDetInputs', keys=['points', 'img', 'gt_bboxes_3d', 'gt_labels_3d'], meta_keys=meta_keys)]
test_pipeline = load_steps + [dict(type='Pack3DDetInputs', keys=['img'], meta_keys=meta_keys)]
modality = dict(use_lidar=False, use_camera=True)
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline,  # use_lidar: resolves the points' path
                                                  modality=dict(use_lidar=True, use_camera=True))))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline, modality=modality))
