"""Segmentor plan of tools/benchmark.py (issue 10): the LiDAR-only small MinkUNet on synthetic SemanticKITTI, CPU.

    .venv/bin/python tools/benchmark.py --plan configs/benchmark/minkunet_cpu.py

Fill these args: nothing. It inherits configs/benchmark/minkunet-pixelfusion_cpu.py, whose docstring explains every
choice: the same data, splits (scored on the whole scan here), metrics (mIoU / acc), seeds, sparsities, methods, β sweep, finetuning matrix,
additivity and costs. Only the model and its one modality change. The LiDAR network is the fused model's LiDAR
branch, so the two reports compare the methods with and without the camera. The modality groups and tap are the
config's mmprune4u-* twins': LiDAR = backbone and head, tapped at the backbone. Sized for about 2 h on 2 CPU cores
without the dense model (~50 min at ~1.5 s per iteration), mostly the 39 finetuning cells and the 56 one-shot ones.
"""
_base_ = ['./minkunet-pixelfusion_cpu.py']
name = 'benchmark_minkunet'
config = 'configs/semantickitti/minkunet_small_spconv_1xb2-2k_synthetic-semantickitti.py'
hook = dict(modalities=dict(_delete_=True, lidar=['backbone', 'decode_head']),
            taps=dict(_delete_=True, lidar='backbone'))
# the whole scan (a LiDAR-only model has no camera view to be scored on)
splits = dict(_delete_=True, val={'test_dataloader.dataset.ann_file': 'semantickitti_infos_val.pkl'},
              test={'test_dataloader.dataset.ann_file': 'semantickitti_infos_test.pkl'})
docs = 'docs/benchmarks_minkunet.md'
