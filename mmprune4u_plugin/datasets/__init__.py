"""Synthetic nuScenes-format data (same on-disk format as mmdet3d 1.x nuScenes infos) and its helpers.

With mmdet3d installed, importing this package also registers the degraded-sensor transforms of
:mod:`mmprune4u_plugin.datasets.corruptions` (TRANSFORMS).
"""
import importlib.util

from .synthetic_nuscenes import SceneGenerator, SyntheticNuScenesConfig, generate_synthetic_nuscenes

__all__ = ['SceneGenerator', 'SyntheticNuScenesConfig', 'generate_synthetic_nuscenes']

if importlib.util.find_spec('mmdet3d') is not None:
    from .corruptions import (CORRUPTIONS, CameraBlackout, CameraBlur, CameraLowLight, LidarAbsent,  # noqa: E402
                              LidarBeamReduce, LidarRangeDrop, with_corruption)

    __all__ += ['CORRUPTIONS', 'CameraBlackout', 'CameraBlur', 'CameraLowLight', 'LidarAbsent', 'LidarBeamReduce',
                'LidarRangeDrop', 'with_corruption']
