"""Hooks registered in mmdet3d's HOOKS (mmengine's HOOKS is their parent)."""
from .prune_hook import MMPrune4UHook

__all__ = ['MMPrune4UHook']
