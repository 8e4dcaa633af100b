"""MinkUNet (spconv backend; mmdet3d zoo config) shrunk for CPU, on the real SemanticKITTI sample frame.

A LiDAR segmentor: the per-point classes come from a sparse-conv U-Net and a linear head. The zoo's training
pipeline (LaserMix / PolarMix) mixes frames, which one sample cannot feed, so the plain pipeline of the dataset base is
used. Fill these args: ``data_root`` (or set MMPRUNE4U_SHARED_DATA); widths in ``model``; ``load_from``.
"""
_base_ = ['mmdet3d::minkunet/minkunet34_w32_spconv_8xb2-laser-polar-mix-3x_semantickitti.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
data_root = '{{$MMPRUNE4U_SHARED_DATA:../shared/data}}/semantickitti-sample/'
model = dict(
    backbone=dict(base_channels=8, encoder_channels=[8, 16, 16, 32], encoder_blocks=[1, 1, 1, 1],
                  decoder_channels=[32, 16, 16, 16], decoder_blocks=[1, 1, 1, 1]),
    decode_head=dict(channels=16))
load_steps = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
              dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
                   seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
              dict(type='PointSegClassMapping')]
train_pipeline = load_steps + [dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])]
test_pipeline = load_steps + [dict(type='Pack3DDetInputs', keys=['points', 'pts_semantic_mask'])]
sample = dict(data_root=data_root, ann_file='semantickitti_infos.pkl',
              data_prefix=dict(pts='sequences/00/velodyne', pts_semantic_mask='sequences/00/labels'))
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=dict(pipeline=train_pipeline, **sample))
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                       dataset=dict(pipeline=test_pipeline, **sample))
val_dataloader, val_evaluator, val_cfg = None, None, None  # one frame: no validation during the short schedule
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
param_scheduler = []
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=2),
                     sparsity=dict(type='SparsityReportHook'))  # test/val runs log the weights' sparsity
load_from = None
