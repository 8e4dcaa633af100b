"""BEVFusion-Lite at the paper's scale (BEVFusion, nuScenes: Swin-T image backbone, 256x704 images, 0.075 m voxels,
1440 x 1440 voxel grid, 180 x 180 BEV), with this plugin's parts: LSS view transform in pure PyTorch, conv fuser,
SECOND + SECONDFPN, and CenterHead instead of BEVFusion's TransFusion head. For GPU machines and the full dataset;
on CPU it builds but is far too slow to train. Same module names and variables as ``bevfusion-lite_model-tiny.py``.

Fill these args: ``img_backbone.init_cfg`` (ImageNet Swin-T weights, a local path: nothing is downloaded here).
"""
point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
voxel_size = [0.075, 0.075, 0.2]
grid_size = [1440, 1440, 40]
out_size_factor = 8  # LiDAR encoder stride: 1440 voxels -> 180 BEV cells of 0.6 m
bev_bound = [-54.0, 54.0, 0.3]  # camera grid 360 x 360, downsample 2 -> 180 x 180
image_size = [256, 704]
class_names = ['car', 'truck', 'construction_vehicle', 'bus', 'trailer', 'barrier', 'motorcycle', 'bicycle',
               'pedestrian', 'traffic_cone']
model = dict(
    type='BEVFusionLite',
    data_preprocessor=dict(
        type='Det3DDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32, voxel=True, voxel_type='hard',
        voxel_layer=dict(max_num_points=10, point_cloud_range=point_cloud_range, voxel_size=voxel_size,
                         max_voxels=(120000, 160000))),
    img_backbone=dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                      window_size=7, mlp_ratio=4, qkv_bias=True, drop_path_rate=0.2, patch_norm=True,
                      out_indices=[1, 2, 3], convert_weights=True, init_cfg=None),
    img_neck=dict(type='mmdet.FPN', in_channels=[192, 384, 768], out_channels=256, num_outs=3),
    view_transform=dict(type='LSSViewTransform', in_channels=256, out_channels=80, image_size=image_size,
                        feature_size=[image_size[0] // 8, image_size[1] // 8], xbound=bev_bound, ybound=bev_bound,
                        zbound=[-10.0, 10.0, 20.0], dbound=[1.0, 60.0, 0.5], downsample=2),
    pts_voxel_encoder=dict(type='HardSimpleVFE', num_features=5),
    pts_middle_encoder=dict(
        type='SparseEncoder', in_channels=5, sparse_shape=[grid_size[2] + 1, grid_size[1], grid_size[0]],
        output_channels=128, order=('conv', 'norm', 'act'),
        encoder_channels=((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)),
        encoder_paddings=((0, 0, 1), (0, 0, 1), (0, 0, [0, 1, 1]), (0, 0)), block_type='basicblock'),
    fusion_layer=dict(type='BEVConvFuser', in_channels=[80, 256], out_channels=256),
    pts_backbone=dict(type='SECOND', in_channels=256, out_channels=[128, 256], layer_nums=[5, 5],
                      layer_strides=[1, 2], norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01),
                      conv_cfg=dict(type='Conv2d', bias=False)),
    pts_neck=dict(type='SECONDFPN', in_channels=[128, 256], out_channels=[256, 256], upsample_strides=[1, 2],
                  norm_cfg=dict(type='BN', eps=1e-3, momentum=0.01), upsample_cfg=dict(type='deconv', bias=False),
                  use_conv_for_no_stride=True),
    bbox_head=dict(
        type='CenterHead', in_channels=512, share_conv_channel=64,
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
        separate_head=dict(type='SeparateHead', init_bias=-2.19, final_kernel=3),
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
