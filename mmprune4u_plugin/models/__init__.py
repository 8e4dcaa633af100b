"""Plugin models (registered in mmdet3d's MODELS): the BEVFusion-style CPU detector and its parts.

Importing this package also registers :class:`~mmprune4u_plugin.datasets.transforms.MultiViewImageResizeCrop`
(TRANSFORMS), the pipeline step that writes the ``img_aug_matrix`` the view transform reads.
"""
from ..datasets.transforms import MultiViewImageResizeCrop
from .bev_pool import bev_pool
from .bevfusion_lite import BEVFusionLite
from .fuser import BEVConvFuser
from .view_transform import LSSViewTransform

__all__ = ['BEVFusionLite', 'BEVConvFuser', 'LSSViewTransform', 'MultiViewImageResizeCrop', 'bev_pool']
