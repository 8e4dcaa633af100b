"""MMPrune4U: layer-adaptive unstructured pruning for multimodal 3D perception, as an MMDetection3D plugin.

``custom_imports = dict(imports=['mmprune4u_plugin'])`` registers ``MMPrune4UHook`` (HOOKS) and ``LogSobolevLoss``
(MODELS) and applies the CPU shims of :mod:`mmprune4u_plugin.compat`. ``mmprune4u_plugin.core`` alone needs only
PyTorch and NumPy.
"""
import importlib.util

__version__ = '0.1.0'

if importlib.util.find_spec('mmdet3d') is not None:
    from .compat import apply_cpu_shims

    apply_cpu_shims()
    from .hooks import MMPrune4UHook  # noqa: E402
    from .losses import LogSobolevLoss  # noqa: E402
    from . import models  # noqa: E402,F401  (BEVFusionLite and its parts, MultiViewImageResizeCrop)
    from .evaluation import SyntheticNuScenesMetric  # noqa: E402

    __all__ = ['MMPrune4UHook', 'LogSobolevLoss', 'SyntheticNuScenesMetric', 'apply_cpu_shims']
