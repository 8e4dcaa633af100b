"""CenterPoint (voxel 0.1, spconv encoder; mmdet3d zoo config), shrunk for CPU, on the real nuScenes keyframe.

Fill these args: ``data_root`` (or set MMPRUNE4U_SHARED_DATA); widths in ``model``; ``load_from`` for real weights.
"""
_base_ = ['mmdet3d::centerpoint/centerpoint_voxel01_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
data_root = '{{$MMPRUNE4U_SHARED_DATA:../shared/data}}/nuscenes-v1.0-mini-sample/'
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
model = dict(
    pts_middle_encoder=dict(base_channels=8, output_channels=32, encoder_channels=(
        (8, 8, 16), (16, 16, 32), (32, 32, 32), (32, 32))),
    pts_backbone=dict(in_channels=64, out_channels=[32, 64], layer_nums=[1, 1]),
    pts_neck=dict(in_channels=[32, 64], out_channels=[32, 32]),
    pts_bbox_head=dict(in_channels=64, share_conv_channel=16))
class_names = ['car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle', 'bicycle',
               'pedestrian', 'traffic_cone']
train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectNameFilter', classes=class_names),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d'])]
sample = dict(data_root=data_root, ann_file='n015-2018-07-24-11-22-45+0800.pkl', data_prefix=dict(pts='', img=''))
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(_delete_=True, type='NuScenesDataset', pipeline=train_pipeline,
                                     metainfo=dict(classes=class_names), test_mode=False, box_type_3d='LiDAR',
                                     **sample))
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=sample)
val_dataloader, val_evaluator, val_cfg = None, None, None  # one frame: no validation during the short schedule
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=2),
                     sparsity=dict(type='SparsityReportHook'))  # test/val runs log the weights' sparsity
load_from = None
