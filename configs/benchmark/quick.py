"""Smoke plan of tools/benchmark.py (``--quick``): every kind of cell once, on a tiny generated set, in minutes.

Fill these args: nothing; it inherits the default plan and shrinks it (1 seed, 2 sparsities, 2 methods, 4 grid
levels, a few iterations). Its figures mean nothing; it checks the pipeline end to end.
"""
_base_ = ['./bevfusion-lite_cpu.py']
name = 'benchmark_quick'
synthetic = dict(root='{work_dir}/data/train', num_train=3, num_val=2, test_root='{work_dir}/data/test', num_test=2)
_train, _test = '{work_dir}/data/train/', '{work_dir}/data/test/'
model_options = {'train_dataloader.dataset.dataset.data_root': _train, 'test_dataloader.dataset.data_root': _train,
                 'test_evaluator.data_root': _train, 'train_dataloader.batch_size': 1}
splits = dict(test={'test_dataloader.dataset.data_root': _test, 'test_evaluator.data_root': _test})
hook = dict(grid=[0.0, 0.5, 0.8, 0.95], exclude=['img_backbone'])  # the costly camera backbone stays dense
calib = dict(samples=1, batch_size=1)
dense = dict(_delete_=True, iters=4, eval_every=2, options={
    'train_cfg.max_iters': 4, 'param_scheduler': [], 'default_hooks.logger.interval': 1,
    'default_hooks.checkpoint': dict(type='CheckpointHook', by_epoch=False, interval=2, save_last=True,
                                     max_keep_ckpts=-1)})
seeds = [0]
sparsities = [0.5, 0.8]
methods = ['global', 'mmprune4u_local']
beta = dict(values=[0, 1])
finetune = dict(_delete_=True, sparsities=[0.8],
                rows=[('dense', 'task'), ('global', 'task'), ('mmprune4u_local', 'task'), ('mmprune4u_local', 'lsi')],
                options={'train_cfg.max_iters': 2, 'param_scheduler': [], 'default_hooks.logger.interval': 1,
                         'default_hooks.checkpoint': dict(type='CheckpointHook', by_epoch=False, interval=2,
                                                          save_last=True, max_keep_ckpts=1)})
additivity = dict(random=4)
costs = dict(plain_layers=2, probes=2, steps=2, warmup=1)
# two corruptions; the "LiDAR-only reference" is a stand-in (the smoke run's own dense model) to run that cell too
robustness = dict(_delete_=True, corruptions=['lidar_beams_1/4', 'camera_all_black'], seed=0,
                  oneshot=dict(methods=['global', 'mmprune4u_local'], sparsities=[0.8]),
                  finetune=dict(sparsities=[0.8]),
                  references=dict(lidar=dict(config='configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py',
                                             checkpoint='{work_dir}/cells/dense_train/iter_4.pth')))
docs = '{work_dir}/benchmarks.md'
related = []  # a smoke run's page summarises no published report
