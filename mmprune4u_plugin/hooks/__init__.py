"""Hooks registered in mmdet3d's HOOKS (mmengine's HOOKS is their parent)."""
from .prune_hook import MMPrune4UHook
from .sparsity_report import SparsityReportHook

__all__ = ['MMPrune4UHook', 'SparsityReportHook']
