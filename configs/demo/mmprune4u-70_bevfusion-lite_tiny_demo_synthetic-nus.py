"""The demo's pruning run: MMPrune4U at 70% on the dense BEVFusion-Lite tiny, then finetuning with LogSobolevLoss.

Fill these args: ``load_from`` (the dense checkpoint; tools/demo.py passes it); ``sparsity``; ``train_cfg.max_iters``.
"""
_base_ = ['./bevfusion-lite_tiny_demo-finetune_synthetic-nus.py']  # the finetuning schedule
default_hooks = dict(mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', estimator='exact', calib_batches=1, beta=1.0,
    grid=[0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
    modalities=dict(camera=['img_', 'view_transform'], lidar=['pts_middle_encoder'],
                    fusion=['fusion_layer', 'pts_backbone', 'pts_neck', 'bbox_head']),
    taps=dict(camera='view_transform', lidar='pts_middle_encoder'),
    lsi_loss=dict(type='LogSobolevLoss', loss_weight=1.0), lsi_reference='teacher',
    curve_cache='work_dirs/demo/curves.npz'))
