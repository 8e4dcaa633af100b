"""Segmentor plan of tools/benchmark.py (issue 10): LiDAR-camera MinkUNetPixelFusion on synthetic SemanticKITTI, CPU.

    .venv/bin/python tools/benchmark.py --plan configs/benchmark/minkunet-pixelfusion_cpu.py

Fill these args: those of configs/benchmark/bevfusion-lite_cpu.py (its docstring), plus ``metrics`` (the figures of
every table) and ``synthetic.kind``. The choices:
  - ``metrics``: mmdet3d's SegMetric logs ``miou``, ``acc`` (overall point accuracy) and ``acc_cls``; the tables
    report mIoU (primary: verdicts, β choice, plateau check) and acc.
  - ``synthetic``: the configs' own data root and tools/create_synthetic_semantickitti.py's defaults (20 scans per
    sequence; train 0-7, 9, 10 = 200 scans, val 8 = 20, test 11-13 = 60; HDL-64E at 1024 azimuth steps; images at half
    KITTI size). Data that tool wrote with these settings is kept. Val and test are other streets of the same
    generator, where the nuScenes plan's test split uses another generator seed.
  - ``splits``: every evaluation is ``Runner.test()``, so each split swaps the test dataloader's info pkl: val
    (sequence 8) chooses β, test (11-13) holds every table. Both score the points in the camera's view
    (``PointsInCameraFOV``), where fusion matters (see below).
  - ``model_options``: no validation loop inside the runs. The benchmark evaluates the checkpoints in its own cells.
  - ``dense``: one plain run of the config: 2000 iterations (AdamW 4e-3, cosine), a checkpoint every 500, each
    evaluated on val (the plateau curve, about 1.4 h).
  - ``hook``: the modality groups and taps of the config's mmprune4u-* twins. The task tap defaults to the classifier
    (``decode_head.conv_seg``). The grid, estimator, calibration and β sweep are the nuScenes plan's.
  - ``finetune``: the issue's rows, with one pass over the train split (100 iterations at batch 2 = 200 scans) and a
    constant lr of 1e-3 (the mmprune4u-* configs' finetuning lr, a quarter of the dense peak), at the issue's cut of
    70% and 90% (~1 min per cell on 2 cores), plus MMPrune4U with downstream R (task loss). The LSI loss is the
    mmprune4u-* configs' (weight 0.1), not tuned here.
  - ``costs``: kept (~10 min). Curve estimators, DP time, per-step overhead and checkpoint size on a sparse-conv
    model.
  - ``robustness``: None. The corruption presets model nuScenes' sensors (HDL-32E rings, six cameras), and a LiDAR
    corruption that drops points would have to drop their labels too.
Sized for about 3 h on 2 CPU cores without the dense model: curves 3 x ~8 min, one-shot 56 cells x ~45 s, β sweep 18
x ~25 s, additivity and costs ~15 min, finetuning 39 cells x ~1 min. The LiDAR-only plan,
configs/benchmark/minkunet_cpu.py, inherits this one.
"""
name = 'benchmark_minkunet-pixelfusion'
config = 'configs/semantickitti/minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py'
metrics = dict(primary='mIoU', secondary='acc', keys=dict(mIoU='miou'))
synthetic = dict(kind='semantickitti', root='data/synthetic_semantickitti', seed=0, frames=20, image_scale=0.5,
                 azimuth_steps=1024, splits=dict(train=[0, 1, 2, 3, 4, 5, 6, 7, 9, 10], val=[8], test=[11, 12, 13]),
                 workers=2)
# scored on the points the front camera sees (PMF's protocol; a fifth of a scan): where the camera can matter. On the
# whole scan the fused model's camera-only classes gain little, on its view a lot (one seed, test split, 2000
# iterations: mIoU 0.789 vs 0.659 for the LiDAR-only twin; parking 0.842 vs 0.316); outside it the fused model is
# slightly behind (whole scan 0.730 vs 0.748)
_fov_pipeline = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=4, use_dim=4),
                 dict(type='LoadAnnotations3D', with_bbox_3d=False, with_label_3d=False, with_seg_3d=True,
                      seg_3d_dtype='np.int32', seg_offset=2**16, dataset_type='semantickitti'),
                 dict(type='PointSegClassMapping'), dict(type='PointsInCameraFOV', camera='CAM2'),
                 dict(type='LoadMultiViewImageFromFiles', to_float32=True, num_views=1),
                 dict(type='Pack3DDetInputs', keys=['points', 'img', 'pts_semantic_mask'])]
splits = dict(val={'test_dataloader.dataset.ann_file': 'semantickitti_infos_val.pkl',
                   'test_dataloader.dataset.pipeline': _fov_pipeline},
              test={'test_dataloader.dataset.ann_file': 'semantickitti_infos_test.pkl',
                    'test_dataloader.dataset.pipeline': _fov_pipeline})
model_options = {'val_dataloader': None, 'val_evaluator': None, 'val_cfg': None}
hook = dict(estimator='exact', grid=[0.0] + [round(0.05 * i, 2) for i in range(1, 20)] + [0.98],  # 20 levels
            modalities=dict(camera=['img_backbone', 'img_neck'], lidar=['backbone'],
                            fusion=['fusion_layer', 'decode_head']),
            taps=dict(camera='img_neck', lidar='backbone'), lsi_reference='dense_stats')
calib = dict(samples=2, batch_size=2)  # one batch of two scans
dense = dict(iters=2000, eval_every=500, plateau_tol=0.01, options={'default_hooks.checkpoint.interval': 500})
seeds = [0, 1, 2]
sparsities = [0.5, 0.7, 0.8, 0.9]
methods = ['uniform', 'uniform_plus', 'global', 'lamp', 'erk', 'rd', 'mmprune4u_local', 'mmprune4u_downstream']
beta = dict(values=[0, 0.1, 0.3, 1, 3, 10], sparsity=0.8, choose_on_val=True, default=1.0)
lsi_loss = dict(type='LogSobolevLoss', loss_weight=0.1)
finetune = dict(sparsities=[0.7, 0.9],
                rows=[('dense', 'task'), ('global', 'task'), ('lamp', 'task'), ('rd', 'task'),
                      ('mmprune4u_local', 'task'), ('mmprune4u_local', 'lsi'), ('mmprune4u_downstream', 'task')],
                options={'train_cfg.max_iters': 100, 'optim_wrapper.optimizer.lr': 1e-3, 'param_scheduler': [],
                         'default_hooks.logger.interval': 10,
                         'default_hooks.checkpoint': dict(type='CheckpointHook', by_epoch=False, interval=100,
                                                          save_last=True, max_keep_ckpts=1)})
additivity = dict(random=32, level_range=[0.3, 0.95])
costs = dict(plain_layers=12, probes=8, steps=10, warmup=2)
robustness = None
docs = 'docs/benchmarks_minkunet-pixelfusion.md'
