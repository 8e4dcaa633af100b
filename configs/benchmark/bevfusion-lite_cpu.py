"""Default plan of tools/benchmark.py (`make bench`): BEVFusion-Lite tiny on the synthetic nuScenes-format set, CPU.

Fill these args: ``config`` (the dense model config), ``metrics`` (the primary and secondary figure of every table;
``keys`` where the evaluator logs them under other names), ``hook`` (MMPrune4UHook settings shared by every method:
modality patterns, taps, grid, estimator), ``seeds`` (>= 3), ``sparsities``, ``finetune`` (rows, sparsities, the
equal budget of every row), ``splits`` (val: where beta is chosen; test: where every table is reported),
``robustness`` (degraded sensors: the corruptions, and which one-shot / finetuned models are evaluated under them),
``dense`` (how the dense model is trained). Sized for about 2-3 h on 2 CPU cores without ``robustness`` and the dense
model (~1.5 h); the finetuned cells are the issue's cut (70% / 90%; dense, global, LAMP, RD, MMPrune4U with and
without the LSI loss), and the report says so. ``robustness`` adds one
test evaluation per corruption to the dense test cell and to each selected cell (8 x 30 = 240 evaluations here).
"""
name = 'benchmark'
config = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py'
metrics = dict(primary='NDS', secondary='mAP')  # SyntheticNuScenesMetric's (the default)
# 160 val scenes (the demo's 40 and 120 more; the same 200 train scenes: scene i depends only on seed, split and i):
# the β sweep and the dense model's plateau are read on val, and 40 scenes held only 54 construction vehicles
synthetic = dict(root='data/synthetic_nuscenes_val160', num_train=200, num_val=160,
                 test_root='data/synthetic_nuscenes_test', test_seed=1, num_test=40)
_root, _test = 'data/synthetic_nuscenes_val160/', 'data/synthetic_nuscenes_test/'
model_options = {'train_dataloader.dataset.dataset.data_root': _root, 'test_dataloader.dataset.data_root': _root,
                 'test_evaluator.data_root': _root}
splits = dict(val={}, test={'test_dataloader.dataset.data_root': _test, 'test_evaluator.data_root': _test})
hook = dict(estimator='exact', grid=[0.0] + [round(0.05 * i, 2) for i in range(1, 20)] + [0.98],  # 20 levels
            modalities=dict(camera=['img_', 'view_transform'], lidar=['pts_middle_encoder'],
                            fusion=['fusion_layer', 'pts_backbone', 'pts_neck', 'bbox_head']),
            taps=dict(camera='view_transform', lidar='pts_middle_encoder'), lsi_reference='dense_stats')
calib = dict(samples=2, batch_size=2)  # one batch, as the demo: the curves cost grows with it
# The dense model: tools/compare_modalities.py's two-stage recipe (BEVFusion's): the camera branch pretrained on the
# renderings' 2D targets, LiDAR-only and camera-only models trained `iters`, the fused model started from both and
# trained `iters2` more (each single-sensor model too: the references below), with a val evaluation every
# `eval_every` stage-2 iterations (the plateau curve). Trained in `work_dir` with the tool's own stage keys: a run of
# the tool with the same arguments is reused. A plain single run (as the quick plan) leaves the camera branch
# untrained: camera-only NDS 0.03 after 600 iterations, 0.19 after 2100 (seed 0, tools/compare_modalities.py).
# `img_pretrain_iters` 1800 and `lidar_dropout` (the fused stage 2 drops the LiDAR from 1/4 of its samples): with 600
# and without it the fused model ignored its camera (fuser weights on the camera map ~5x smaller per element; NDS 0.000
# with the LiDAR absent), and a linear probe of its camera BEV map told the look-alike classes apart only 68% of the
# time (tools/probe_camera_bev.py; 76% after 1800 pretraining steps; the LiDAR map: chance)
# `iters2` 1800: the fused val NDS still rose between 600 and 1200 stage-2 iterations and was flat after (seed 1,
# 160 val scenes, docs/modalities/seed1_val160). `fused_variant`: the dense model is the fused stage 2 trained with
# the camera branch at 0.1x the learning rate (BEVFusion's fine-tuning keeps its pretrained image backbone slow), which
# beat the LiDAR-dropout recipe by +0.021 val NDS on seed 1 (chosen on val; docs/modalities.md has every seed). The
# recipe's arguments are those of the runs of record of tools/compare_modalities.py: the seed-0 one is this cell.
_cam_lr = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus_lidar-dropout_cam-lr0.1.py'
dense = dict(recipe='modalities', iters=1200, iters2=1800, img_pretrain_iters=1800, lidar_dropout=True,
             eval_every=600, seed=0, jobs=2, work_dir='work_dirs/modalities', plateau_tol=0.01,
             fused_variant=f'cam-lr0.1={_cam_lr}')
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
# single-sensor models, evaluated clean: here the recipe's own stage-2 LiDAR-only and camera-only models
# (checkpoint='dense_recipe'); with another dense model, dict(config=..., checkpoint=<.pth>).
_demo = 'configs/demo/bevfusion-lite_tiny_'
_refs = dict(lidar=dict(config=_demo + 'lidar_demo_synthetic-nus.py', checkpoint='dense_recipe'),
             camera=dict(config=_demo + 'cam_demo_synthetic-nus.py', checkpoint='dense_recipe'))
robustness = dict(corruptions=['lidar_beams_1/2', 'lidar_beams_1/4', 'lidar_range_30m', 'lidar_absent',
                               'camera_one_black', 'camera_all_black', 'camera_blur', 'camera_low_light'], seed=0,
                  oneshot=dict(methods=['global', 'lamp', 'rd', 'mmprune4u_local', 'mmprune4u_downstream'],
                               sparsities=[0.8]),
                  finetune=dict(sparsities=[0.9]), references=_refs)
docs = 'docs/benchmarks.md'
# the segmentor plans' reports (configs/benchmark/minkunet*_cpu.py): their test tables are summarised at the end of
# this page, so one page holds every model's table (each from its own published json, rebuilt with --report-only)
related = ['docs/benchmarks_minkunet-pixelfusion.md', 'docs/benchmarks_minkunet.md']
