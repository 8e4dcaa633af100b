"""mmprune4u-70_cylinder3d_4xb4-3x_semantickitti.py at 90% sparsity."""
_base_ = ['./mmprune4u-70_cylinder3d_4xb4-3x_semantickitti.py']
default_hooks = dict(mmprune4u=dict(sparsity=0.9))
