"""MMPrune4U at 70% on BEVFusion (lidar), then finetuning with LogSobolevLoss. Needs MMDET3D_ROOT and a GPU.

Fill these args: ``load_from`` (trained weights); ``train_cfg.max_epochs`` (finetuning length).
"""
_base_ = ['./_base_/mmprune4u_bevfusion_lidar.py']
default_hooks = dict(mmprune4u=dict(sparsity=0.70))
