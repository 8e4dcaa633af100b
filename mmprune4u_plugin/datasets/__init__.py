"""Synthetic nuScenes-format data (same on-disk format as mmdet3d 1.x nuScenes infos) and its helpers."""
from .synthetic_nuscenes import SceneGenerator, SyntheticNuScenesConfig, generate_synthetic_nuscenes

__all__ = ['SceneGenerator', 'SyntheticNuScenesConfig', 'generate_synthetic_nuscenes']
