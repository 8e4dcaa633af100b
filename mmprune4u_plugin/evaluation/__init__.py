"""nuScenes detection metrics (devkit mAP / NDS / TP errors) computed from info pkls, without the database."""
from .nuscenes_metric import SyntheticNuScenesMetric

__all__ = ['SyntheticNuScenesMetric']
