"""MMPrune4U at 70% on the small MinkUNet trained on synthetic SemanticKITTI, then 500 finetuning iterations.

Fill ``load_from`` with the dense model: what ``tools/train.py`` writes for the dense config, i.e. ``--cfg-options
load_from=work_dirs/minkunet_small_spconv_1xb2-2k_synthetic-semantickitti/iter_2000.pth``. One modality (LiDAR); the task
tap is the classifier (``decode_head.conv_seg``).
"""
_base_ = ['./minkunet_small_spconv_1xb2-2k_synthetic-semantickitti.py']
# finetuning: 500 iterations, cosine from 1e-3 (a quarter of the dense schedule's peak), validation at the end
train_cfg = dict(max_iters=500, val_interval=500)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=500, eta_min=1e-5, by_epoch=False, begin=0, end=500)]
default_hooks = dict(checkpoint=dict(interval=500, max_keep_ckpts=1), mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', estimator='exact', calib_batches=2,
    grid=[0.0] + [round(0.05 * i, 2) for i in range(1, 20)] + [0.98],  # 21 levels (the default: 100)
    modalities=dict(lidar=['backbone', 'decode_head']), taps=dict(lidar='backbone'),
    lsi_loss=dict(type='LogSobolevLoss', loss_weight=0.1)))
load_from = None
