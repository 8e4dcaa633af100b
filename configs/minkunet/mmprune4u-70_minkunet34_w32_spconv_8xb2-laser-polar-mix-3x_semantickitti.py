"""MMPrune4U at 70% on mmdet3d's full-size MinkUNet34 (spconv) for real SemanticKITTI, on a GPU.

Inherits mmdet3d's packaged config (data in ``data/semantickitti``, its LaserMix / PolarMix pipeline); its 36-epoch
schedule becomes a 3-epoch cosine finetune at a tenth of its learning rate. Fill ``load_from`` with mmdet3d's trained
checkpoint. The fisher estimator keeps the curve measurement to a few backward passes on this full-size model; the
task tap is the classifier (``decode_head.conv_seg``), the LiDAR tap the backbone's output.
"""
_base_ = ['mmdet3d::minkunet/minkunet34_w32_spconv_8xb2-laser-polar-mix-3x_semantickitti.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
train_cfg = dict(max_epochs=3, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=8e-4))  # a tenth of the dense schedule's
param_scheduler = [dict(type='CosineAnnealingLR', T_max=3, eta_min=1e-5, by_epoch=True, begin=0, end=3)]
default_hooks = dict(mmprune4u=dict(
    type='MMPrune4UHook', sparsity=0.7, allocator='mmprune4u', estimator='fisher', calib_batches=4,
    modalities=dict(lidar=['backbone', 'decode_head']), taps=dict(lidar='backbone'),
    lsi_loss=dict(type='LogSobolevLoss', loss_weight=0.1)))
