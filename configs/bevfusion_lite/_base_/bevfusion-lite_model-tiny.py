"""BEVFusion-Lite, ``tiny`` size: a LiDAR-camera BEV detector that trains on 2 CPU cores (module names as BEVFusion).

Camera: 6 views at 128x352 -> ResNet-18 (base 32) -> FPN (stride 8, 16x44) -> LSS (59 depth bins of 1 m, 0.8 m BEV
cells) -> 32 x 128 x 128. LiDAR: 0.2 x 0.2 x 0.4 m hard voxels -> HardSimpleVFE -> spconv SparseEncoder (stride 4) ->
64 x 128 x 128. Both grids cover the 51.2 m range with 0.8 m cells (rows y, columns x), so the fuser concatenates
them cell by cell. Then conv fuser (32) -> SECOND [32, 64] -> SECONDFPN (64) -> CenterHead (6 tasks, the 10
nuScenes classes). 3.3 M weights, 2.8 M of them in the image backbone. Paper scale: ``bevfusion-lite_model-paper.py``.
"""
point_cloud_range = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
voxel_size = [0.2, 0.2, 0.4]
grid_size = [512, 512, 20]
out_size_factor = 4  # LiDAR encoder stride: 512 voxels -> 128 BEV cells
bev_bound = [-51.2, 51.2, 0.8]
image_size = [128, 352]
# BN momentum 0.1 (mmdet3d's LiDAR configs use 0.01): with 0.01 the running statistics still lag after ~100 steps
# and eval-mode predictions of a briefly trained model collapse (checked: overfitting the sample, 41/50 boxes recalled
# in eval mode after 100 steps with 0.1, none with 0.01)
bn, bn1d = dict(type='BN', eps=1e-3, momentum=0.1), dict(type='BN1d', eps=1e-3, momentum=0.1)
class_names = ['car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle', 'bicycle',
               'pedestrian', 'traffic_cone']
model = dict(
    type='BEVFusionLite',
    data_preprocessor=dict(
        type='Det3DDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32, voxel=True, voxel_type='hard',
        voxel_layer=dict(max_num_points=10, point_cloud_range=point_cloud_range, voxel_size=voxel_size,
                         max_voxels=(60000, 60000))),
    img_backbone=dict(type='mmdet.ResNet', depth=18, base_channels=32, num_stages=4, out_indices=(1, 2, 3),
                      frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                      style='pytorch', init_cfg=None),
    img_neck=dict(type='mmdet.FPN', in_channels=[64, 128, 256], out_channels=64, num_outs=3),
    view_transform=dict(type='LSSViewTransform', in_channels=64, out_channels=32, image_size=image_size,
                        feature_size=[image_size[0] // 8, image_size[1] // 8], xbound=bev_bound, ybound=bev_bound,
                        zbound=[-10.0, 10.0, 20.0], dbound=[1.0, 60.0, 1.0], downsample=1),
    pts_voxel_encoder=dict(type='HardSimpleVFE', num_features=5),
    pts_middle_encoder=dict(
        type='SparseEncoder', in_channels=5, sparse_shape=[grid_size[2] + 1, grid_size[1], grid_size[0]],
        base_channels=16, output_channels=32, order=('conv', 'norm', 'act'), norm_cfg=bn1d,
        encoder_channels=((16, ), (32, 32), (64, 64)), encoder_paddings=((1, ), (1, 1), ([0, 1, 1], 1)),
        block_type='conv_module'),
    fusion_layer=dict(type='BEVConvFuser', in_channels=[32, 64], out_channels=32),
    pts_backbone=dict(type='SECOND', in_channels=32, out_channels=[32, 64], layer_nums=[1, 1],
                      layer_strides=[1, 2], norm_cfg=bn,
                      conv_cfg=dict(type='Conv2d', bias=False)),
    pts_neck=dict(type='SECONDFPN', in_channels=[32, 64], out_channels=[32, 32], upsample_strides=[1, 2],
                  norm_cfg=bn, upsample_cfg=dict(type='deconv', bias=False),
                  use_conv_for_no_stride=True),
    bbox_head=dict(
        type='CenterHead', in_channels=64, share_conv_channel=32,
        tasks=[dict(num_class=1, class_names=['car']),
               dict(num_class=2, class_names=['truck', 'construction_vehicle']),
               dict(num_class=2, class_names=['bus', 'trailer']),
               dict(num_class=1, class_names=['barrier']),
               dict(num_class=2, class_names=['motorcycle', 'bicycle']),
               dict(num_class=2, class_names=['pedestrian', 'traffic_cone'])],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)),
        bbox_coder=dict(type='CenterPointBBoxCoder', pc_range=point_cloud_range[:2],
                        post_center_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0], max_num=500,
                        score_threshold=0.1, out_size_factor=out_size_factor, voxel_size=voxel_size[:2],
                        code_size=9),
        separate_head=dict(type='SeparateHead', init_bias=-2.19, final_kernel=1, head_conv=16),
        loss_cls=dict(type='mmdet.GaussianFocalLoss', reduction='mean'),
        loss_bbox=dict(type='mmdet.L1Loss', reduction='mean', loss_weight=0.25),
        norm_bbox=True),
    train_cfg=dict(
        grid_size=grid_size, voxel_size=voxel_size, out_size_factor=out_size_factor,
        point_cloud_range=point_cloud_range, dense_reg=1, gaussian_overlap=0.1, max_objs=500, min_radius=2,
        code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2]),
    test_cfg=dict(
        pc_range=point_cloud_range[:2], post_center_limit_range=[-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
        max_per_img=500, max_pool_nms=False, min_radius=[4, 12, 10, 1, 0.85, 0.175], score_threshold=0.1,
        out_size_factor=out_size_factor, voxel_size=voxel_size[:2], nms_type='rotate', pre_max_size=1000,
        post_max_size=83, nms_thr=0.2))
