"""PointPillars (mmdet3d zoo config), shrunk to run on CPU, on the real KITTI frame in ../shared/data.

Fill these args: ``data_root`` (or set MMPRUNE4U_SHARED_DATA); widths in ``model`` for a bigger model.
"""
_base_ = ['mmdet3d::pointpillars/pointpillars_hv_secfpn_8xb6-160e_kitti-3d-3class.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
data_root = '{{$MMPRUNE4U_SHARED_DATA:../shared/data}}/kitti-sample/'
point_cloud_range = [0, -39.68, -3, 69.12, 39.68, 1]
model = dict(
    voxel_encoder=dict(feat_channels=[16]), middle_encoder=dict(in_channels=16),
    backbone=dict(in_channels=16, layer_nums=[1, 1, 1], out_channels=[16, 32, 64]),
    neck=dict(in_channels=[16, 32, 64], out_channels=[32, 32, 32]),
    bbox_head=dict(in_channels=96, feat_channels=96))
train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d'])]
sample = dict(data_root=data_root, ann_file='000008.pkl', data_prefix=dict(pts='', img=''))
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(times=1, dataset=dict(pipeline=train_pipeline, **sample)))
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=sample)
test_evaluator = dict(ann_file=data_root + '000008.pkl')  # KittiMetric needs metainfo.categories in this pkl
val_dataloader, val_evaluator, val_cfg = None, None, None  # one frame: no validation during the short schedule
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=2),
                     sparsity=dict(type='SparsityReportHook'))  # test/val runs log the weights' sparsity
load_from = None
