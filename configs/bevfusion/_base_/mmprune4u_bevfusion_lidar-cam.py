"""MMPrune4U settings for mmdet3d's projects/BEVFusion LiDAR-camera model (GPU, full nuScenes).

Fill these args: MMDET3D_ROOT (an mmdetection3d v1.4.0 checkout, see configs/bevfusion/README.md); ``sparsity`` in
the child config; ``load_from`` (trained BEVFusion weights).
"""
_base_ = ['{{$MMDET3D_ROOT:../mmdetection3d}}/projects/BEVFusion/configs/'
          'bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['projects.BEVFusion.bevfusion', 'mmprune4u_plugin'], allow_failed_imports=False)
default_hooks = dict(mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', estimator='fisher', num_probes=16, calib_batches=8,
    beta=1.0,
    modalities=dict(camera=['^img_', r'^v(iew_)?transform'], lidar=['^pts_middle_encoder'],
                    fusion=['^fusion_layer', '^pts_backbone', '^pts_neck', '^bbox_head']),
    taps=dict(camera='view_transform', lidar='pts_middle_encoder'),
    lsi_loss=dict(type='LogSobolevLoss', loss_weight=1.0), lsi_reference='teacher',
    curve_cache='work_dirs/mmprune4u_bevfusion_lidar-cam_curves.npz'))
