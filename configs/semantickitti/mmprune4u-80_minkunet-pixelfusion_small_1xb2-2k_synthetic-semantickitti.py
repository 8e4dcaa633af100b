"""mmprune4u-70_minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py at 80% sparsity."""
_base_ = ['./mmprune4u-70_minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py']
default_hooks = dict(mmprune4u=dict(sparsity=0.8))
