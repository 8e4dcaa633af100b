"""Synthetic SemanticKITTI-format data (tools/create_synthetic_semantickitti.py) with a 2k-iteration CPU schedule.

Splits: train = sequences 0-7, 9, 10; val = 8 (choose settings here); test = 11-13 (the tables). mmdet3d's
``SemanticKittiDataset`` with its label mapping and ``SegMetric``; the flip + rotation augmentation of mmdet3d's
SemanticKITTI base (the zoo's LaserMix / PolarMix is left out). ``camera_*_pipeline``: the same with the front
image, for LiDAR-camera models. Models inherit this beside their mmdet3d model base.
"""
_base_ = ['mmdet3d::_base_/datasets/semantickitti.py', 'mmdet3d::_base_/default_runtime.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
data_root = 'data/synthetic_semantickitti/'
load_steps = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
              dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
                   seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
              dict(type='PointSegClassMapping')]
augment_steps = [
    dict(type='RandomFlip3D', sync_2d=False, flip_ratio_bev_horizontal=0.5, flip_ratio_bev_vertical=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.78539816, 0.78539816], scale_ratio_range=[0.95, 1.05],
         translation_std=[0.1, 0.1, 0.1])]
train_pipeline = load_steps + augment_steps + [dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])]
test_pipeline = load_steps + [dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])]
# for LiDAR-camera models: the front image (CAM2) too, with its cam2img / lidar2cam in the metainfo. It is loaded after
# the 3D augmentation: RandomFlip3D would otherwise flip the image at random on its own (whatever sync_2d says), and
# the models undo the points' augmentation from the metainfo (transformation_3d_flow) before they project them.
load_image = dict(type='LoadMultiViewImageFromFiles', to_float32=True, num_views=1)
camera_pack = dict(type='Pack3DDetInputs', keys=['points', 'img', 'pts_semantic_mask'])
camera_train_pipeline = load_steps + augment_steps + [load_image, camera_pack]
camera_test_pipeline = load_steps + [load_image, camera_pack]
# evaluation on the front camera's view only (about a fifth of a scan; PMF's protocol), for LiDAR-only and fused models
fov_test_pipeline = load_steps + [dict(type='PointsInCameraFOV', camera='CAM2'), test_pipeline[-1]]
camera_fov_test_pipeline = load_steps + [dict(type='PointsInCameraFOV', camera='CAM2'), load_image, camera_pack]
split = dict(type='SemanticKittiDataset', data_root=data_root, metainfo={{_base_.metainfo}}, backend_args=None)
train_dataloader = dict(
    _delete_=True, batch_size=2, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(ann_file='semantickitti_infos_train.pkl', pipeline=train_pipeline, **split))
val_dataloader = dict(
    _delete_=True, batch_size=1, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(ann_file='semantickitti_infos_val.pkl', pipeline=test_pipeline, test_mode=True, **split))
test_dataloader = dict(
    _delete_=True, batch_size=1, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(ann_file='semantickitti_infos_test.pkl', pipeline=test_pipeline, test_mode=True, **split))
val_evaluator = dict(type='SegMetric')
test_evaluator = val_evaluator
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2000, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.01))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
                   dict(type='CosineAnnealingLR', T_max=2000, eta_min=4e-5, by_epoch=False, begin=0, end=2000)]
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(by_epoch=False, interval=500, max_keep_ckpts=4),
                     sparsity=dict(type='SparsityReportHook'))  # test/val runs log the weights' sparsity
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
