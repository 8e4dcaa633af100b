"""MMPrune4U at 70% on the shrunk Cylinder3D (LiDAR segmentor), exact curves, then 4 finetuning iterations.

Prunable: the point MLP (``voxel_encoder``), mmcv's sparse convs in ``backbone`` and ``decode_head``. The task taps
default to the segmentation classifier (``decode_head.conv_seg``, a sparse conv: backbone features in, class logits
out). Fill these args: ``sparsity``; ``load_from`` (dense weights); ``estimator`` ('fisher' for large models).
"""
_base_ = ['./cylinder3d_tiny_8xb1-short_semantickitti-sample.py']
default_hooks = dict(mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', estimator='exact', calib_batches=1,
    grid=[0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95], modalities=dict(lidar=['voxel_encoder', 'backbone', 'decode_head']),
    taps=dict(lidar='backbone'), lsi_loss=dict(type='LogSobolevLoss', loss_weight=0.1)))
