"""The tiny model with data and a short schedule on the real nuScenes keyframe of ../shared/data (6 cameras +
LIDAR_TOP, 69 boxes); ranges and image size come from the model base.

Fill these args: ``data_root`` (or set MMPRUNE4U_SHARED_DATA); the model base for another size.
"""
_base_ = ['mmdet3d::_base_/default_runtime.py', './bevfusion-lite_model-tiny.py']
data_root = '{{$MMPRUNE4U_SHARED_DATA:../shared/data}}/nuscenes-v1.0-mini-sample/'
point_cloud_range, image_size = {{_base_.point_cloud_range}}, {{_base_.image_size}}
class_names = {{_base_.class_names}}
meta_keys = ['cam2img', 'ori_cam2img', 'lidar2cam', 'lidar2img', 'img_aug_matrix', 'lidar_aug_matrix',
             'transformation_3d_flow', 'pcd_rotation', 'pcd_scale_factor', 'pcd_trans', 'pcd_horizontal_flip',
             'pcd_vertical_flip', 'box_type_3d', 'sample_idx', 'lidar_path', 'img_path', 'num_pts_feats']
load_steps = [
    dict(type='LoadMultiViewImageFromFiles', to_float32=True, color_type='color', num_views=6),
    dict(type='MultiViewImageResizeCrop', final_size=image_size),
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range)]
train_pipeline = load_steps + [
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='Pack3DDetInputs', keys=['points', 'img', 'gt_bboxes_3d', 'gt_labels_3d'], meta_keys=meta_keys)]
test_pipeline = load_steps + [dict(type='Pack3DDetInputs', keys=['points', 'img'], meta_keys=meta_keys)]
cameras = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT']
sample = dict(type='NuScenesDataset', data_root=data_root, ann_file='n015-2018-07-24-11-22-45+0800.pkl',
              data_prefix=dict(pts='', **{cam: '' for cam in cameras}), metainfo=dict(classes=class_names),
              modality=dict(use_lidar=True, use_camera=True), box_type_3d='LiDAR')
# one frame repeated: the loader never restarts (mmengine sleeps 2 s whenever an iteration-based loop restarts it)
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=dict(type='RepeatDataset', times=1000,
                                     dataset=dict(pipeline=train_pipeline, test_mode=False, **sample)))
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
                       sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(pipeline=test_pipeline, test_mode=True, **sample))
val_dataloader, val_evaluator, val_cfg = None, None, None  # one frame: no validation during the short schedule
# mmdet3d's NuScenesMetric needs the nuScenes database (v1.0-* tables) under data_root, which the sample lacks
test_evaluator, test_cfg = dict(type='NuScenesMetric', data_root=data_root,
                                ann_file=data_root + 'n015-2018-07-24-11-22-45+0800.pkl', metric='bbox'), dict()
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.01),
                     clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=2),
                     sparsity=dict(type='SparsityReportHook'))  # test/val runs log the weights' sparsity
