"""Segmentor smoke plan of tools/benchmark.py: every kind of cell once on the LiDAR-camera segmentor, in minutes.

    .venv/bin/python tools/benchmark.py --plan configs/benchmark/quick_seg.py

Fill these args: nothing. It inherits configs/benchmark/minkunet-pixelfusion_cpu.py and shrinks it: a tiny generated
set in the work dir (one scan per sequence, a quarter of the azimuth steps, images at a quarter of KITTI size), one
seed, two sparsities, two methods, four grid levels and a few iterations. Its figures mean nothing: it checks the
pipeline end to end with mIoU / acc (tests/test_benchmark_quick_seg.py).
"""
_base_ = ['./minkunet-pixelfusion_cpu.py']
name = 'benchmark_quick_seg'
synthetic = dict(root='{work_dir}/data', frames=1, image_scale=0.25, azimuth_steps=256, workers=1)
_root = '{work_dir}/data/'
model_options = {'train_dataloader.dataset.data_root': _root, 'test_dataloader.dataset.data_root': _root,
                 'train_dataloader.batch_size': 1, 'train_dataloader.num_workers': 0,
                 'train_dataloader.persistent_workers': False, 'test_dataloader.num_workers': 0,
                 'test_dataloader.persistent_workers': False}
hook = dict(grid=[0.0, 0.5, 0.8, 0.95])
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
docs = '{work_dir}/benchmarks.md'
