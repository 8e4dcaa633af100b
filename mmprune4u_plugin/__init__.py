"""MMPrune4U: layer-adaptive unstructured pruning for multimodal 3D perception, as an MMDetection3D plugin.

``custom_imports = dict(imports=['mmprune4u_plugin'])`` registers ``MMPrune4UHook`` and ``SparsityReportHook``
(HOOKS) and ``LogSobolevLoss`` (MODELS), applies the CPU shims of :mod:`mmprune4u_plugin.compat`, and installs
:mod:`mmprune4u_plugin.runner_guard` (a config asking for pruning in a form mmengine's Runner ignores fails before
training). ``mmprune4u_plugin.core`` alone needs only PyTorch and NumPy.
"""
import importlib.util

__version__ = '0.1.0'

if importlib.util.find_spec('mmdet3d') is not None:
    from .compat import apply_cpu_shims

    apply_cpu_shims()
    from . import runner_guard  # noqa: E402

    runner_guard.apply()
    from .hooks import MMPrune4UHook, SparsityReportHook  # noqa: E402
    from .losses import LogSobolevLoss  # noqa: E402
    from . import models  # noqa: E402,F401  (BEVFusionLite and its parts, MultiViewImageResizeCrop)
    from .evaluation import SyntheticNuScenesMetric  # noqa: E402

    __all__ = ['MMPrune4UHook', 'SparsityReportHook', 'LogSobolevLoss', 'SyntheticNuScenesMetric',
               'apply_cpu_shims']
