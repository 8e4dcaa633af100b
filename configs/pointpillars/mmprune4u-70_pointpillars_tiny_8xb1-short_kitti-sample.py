"""MMPrune4U at 70% on the shrunk PointPillars (LiDAR only), then 4 finetuning iterations.

Fill these args: ``sparsity``; ``load_from`` (dense weights); ``grid`` (finer for real runs).
"""
_base_ = ['./pointpillars_tiny_8xb1-short_kitti-sample.py']
default_hooks = dict(mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', calib_batches=1, grid=[0.0, 0.3, 0.5, 0.7, 0.8, 0.9],
    modalities=dict(lidar=['']), taps=dict(lidar='neck'), lsi_loss=dict(type='LogSobolevLoss', loss_weight=0.1)))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', clip_grad=None,
                     optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-2))
