"""MMPrune4U at 70% on the shrunk CenterPoint (spconv encoder), fisher curves, then 4 finetuning iterations.

Fill these args: ``sparsity``; ``load_from`` (dense weights); ``estimator`` ('exact' is slower and more faithful).
"""
_base_ = ['./centerpoint_tiny_8xb1-short_nus-sample.py']
default_hooks = dict(mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', estimator='fisher', num_probes=4, calib_batches=1,
    grid=[0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95], modalities=dict(lidar=['pts_']), taps=dict(lidar='pts_neck'),
    lsi_loss=dict(type='LogSobolevLoss', loss_weight=0.1)))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', clip_grad=None,
                     optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=1e-2))
