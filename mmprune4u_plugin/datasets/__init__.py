"""Synthetic nuScenes- and SemanticKITTI-format data (the on-disk formats mmdet3d 1.x reads) and their helpers.

With mmdet3d installed, importing this package also registers the degraded-sensor transforms of
:mod:`mmprune4u_plugin.datasets.corruptions` and :class:`~.camera_fov.PointsInCameraFOV` (TRANSFORMS).
"""
import importlib.util

from .synthetic_nuscenes import SceneGenerator, SyntheticNuScenesConfig, generate_synthetic_nuscenes
from .synthetic_semantickitti import SequenceGenerator, SyntheticSemanticKittiConfig, generate_synthetic_semantickitti

__all__ = ['SceneGenerator', 'SyntheticNuScenesConfig', 'generate_synthetic_nuscenes', 'SequenceGenerator',
           'SyntheticSemanticKittiConfig', 'generate_synthetic_semantickitti']

if importlib.util.find_spec('mmdet3d') is not None:
    from .camera_fov import PointsInCameraFOV  # noqa: E402
    from .corruptions import (CORRUPTIONS, CameraBlackout, CameraBlur, CameraLowLight, LidarAbsent,  # noqa: E402
                              LidarBeamReduce, LidarRangeDrop, with_corruption)

    __all__ += ['CORRUPTIONS', 'PointsInCameraFOV', 'CameraBlackout', 'CameraBlur', 'CameraLowLight', 'LidarAbsent', 'LidarBeamReduce',
                'LidarRangeDrop', 'with_corruption']
