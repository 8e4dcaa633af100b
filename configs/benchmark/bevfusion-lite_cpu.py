"""Default plan of tools/benchmark.py (`make bench`): BEVFusion-Lite tiny on the synthetic nuScenes-format set, CPU.

Fill these args: ``config`` (the dense model config), ``hook`` (MMPrune4UHook settings shared by every method:
modality patterns, taps, grid, estimator), ``seeds`` (>= 3), ``sparsities``, ``finetune`` (rows, sparsities, the
equal budget of every row), ``splits`` (val: where beta is chosen; test: where every table is reported),
``robustness`` (degraded sensors: the corruptions, and which one-shot / finetuned models are evaluated under them).
Sized for about 2-3 h on 2 CPU cores without ``robustness``; the finetuned cells are the issue's cut (70% / 90%;
dense, global, LAMP, RD, MMPrune4U with and without the LSI loss), and the report says so. ``robustness`` adds one
test evaluation per corruption to the dense test cell and to each selected cell (8 x 30 = 240 evaluations here).
"""
name = 'benchmark'
config = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py'
synthetic = dict(root='data/synthetic_nuscenes', num_train=200, num_val=40,
                 test_root='data/synthetic_nuscenes_test', test_seed=1, num_test=40)
_test = 'data/synthetic_nuscenes_test/'
splits = dict(val={}, test={'test_dataloader.dataset.data_root': _test, 'test_evaluator.data_root': _test})
hook = dict(estimator='exact', grid=[0.0] + [round(0.05 * i, 2) for i in range(1, 20)] + [0.98],  # 20 levels
            modalities=dict(camera=['img_', 'view_transform'], lidar=['pts_middle_encoder'],
                            fusion=['fusion_layer', 'pts_backbone', 'pts_neck', 'bbox_head']),
            taps=dict(camera='view_transform', lidar='pts_middle_encoder'), lsi_reference='dense_stats')
calib = dict(samples=2, batch_size=2)  # one batch, as the demo: the curves cost grows with it
dense = dict(iters=900, eval_every=300, plateau_tol=0.01, options={
    'train_cfg.max_iters': 900,
    'param_scheduler': [dict(type='CosineAnnealingLR', T_max=900, eta_min=1e-4, by_epoch=False, begin=0, end=900)],
    'default_hooks.checkpoint': dict(type='CheckpointHook', by_epoch=False, interval=300, save_last=True,
                                     max_keep_ckpts=-1)})
seeds = [0, 1, 2]
sparsities = [0.5, 0.7, 0.8, 0.9]
methods = ['uniform', 'uniform_plus', 'global', 'lamp', 'erk', 'rd', 'mmprune4u_local', 'mmprune4u_downstream']
beta = dict(values=[0, 0.1, 0.3, 1, 3, 10], sparsity=0.8, choose_on_val=True, default=1.0)
lsi_loss = dict(type='LogSobolevLoss', loss_weight=1.0, form='kl_bound')
finetune = dict(sparsities=[0.7, 0.9],
                rows=[('dense', 'task'), ('global', 'task'), ('lamp', 'task'), ('rd', 'task'),
                      ('mmprune4u_local', 'task'), ('mmprune4u_local', 'lsi')],
                options={'train_cfg.max_iters': 100, 'optim_wrapper.optimizer.lr': 5e-4, 'param_scheduler': [],
                         'default_hooks.logger.interval': 10,
                         'default_hooks.checkpoint': dict(type='CheckpointHook', by_epoch=False, interval=100,
                                                          save_last=True, max_keep_ckpts=1)})
additivity = dict(random=32, level_range=[0.3, 0.95])
costs = dict(plain_layers=12, probes=8, steps=10, warmup=2)
# Degraded sensors (issue 12): the dense model, these one-shot cells and every finetune row at these sparsities are
# also evaluated on test under each corruption, with one corruption seed for every model (paired). `references`: the
# single-sensor models of tools/compare_modalities.py, evaluated clean, e.g. lidar=dict(config=
# 'configs/demo/bevfusion-lite_tiny_lidar_demo_synthetic-nus.py', checkpoint=<the .pth named by
# work_dirs/modalities/stage2_lidar/last_checkpoint>), camera likewise with the _cam_ config and stage2_camera.
robustness = dict(corruptions=['lidar_beams_1/2', 'lidar_beams_1/4', 'lidar_range_30m', 'lidar_absent',
                               'camera_one_black', 'camera_all_black', 'camera_blur', 'camera_low_light'], seed=0,
                  oneshot=dict(methods=['global', 'lamp', 'rd', 'mmprune4u_local', 'mmprune4u_downstream'],
                               sparsities=[0.8]),
                  finetune=dict(sparsities=[0.9]), references=dict(lidar=None, camera=None))
docs = 'docs/benchmarks.md'
