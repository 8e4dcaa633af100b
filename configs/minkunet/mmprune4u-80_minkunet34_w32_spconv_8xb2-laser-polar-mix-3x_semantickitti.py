"""mmprune4u-70_minkunet34_w32_spconv_8xb2-laser-polar-mix-3x_semantickitti.py at 80% sparsity."""
_base_ = ['./mmprune4u-70_minkunet34_w32_spconv_8xb2-laser-polar-mix-3x_semantickitti.py']
default_hooks = dict(mmprune4u=dict(sparsity=0.8))
