"""The demo's finetuning schedule on the dense BEVFusion-Lite tiny, without pruning: the equal-budget reference.

The pruning run (mmprune4u-70_*) inherits this file and adds only the hook, so the dense reference and every pruned
model finetune with the same schedule. Fill these args: ``load_from`` (the dense checkpoint; tools/demo.py passes
it); ``train_cfg.max_iters``.
"""
_base_ = ['./bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py']
train_cfg = dict(max_iters=100)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = []
