"""MMPrune4U at 70% on the shrunk MVX-Net (LiDAR + camera), then 4 finetuning iterations with LogSobolevLoss.

Fill these args: ``sparsity``; ``modalities`` / ``taps`` (module names of your model); ``load_from`` (dense weights).
"""
_base_ = ['./mvxnet_tiny_8xb1-short_kitti-sample.py']
default_hooks = dict(mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', beta=1.0, calib_batches=1,
    grid=[0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
    modalities=dict(camera=['img_'], fusion=['fusion_layer'], lidar=['pts_']),
    taps=dict(camera='img_neck', lidar='pts_middle_encoder'),
    lsi_loss=dict(type='LogSobolevLoss', loss_weight=0.1), lsi_reference='teacher'))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', clip_grad=None,
                     optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-2))
