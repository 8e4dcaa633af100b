"""Plugin models (registered in mmdet3d's MODELS): the BEVFusion-style CPU detector and its parts, and
the LiDAR-camera point segmentor.

Importing this package also registers :class:`~mmprune4u_plugin.datasets.transforms.MultiViewImageResizeCrop`
(TRANSFORMS), the pipeline step that writes the ``img_aug_matrix`` the view transform reads.
"""
from ..datasets.transforms import MultiViewImageResizeCrop
from .bev_pool import bev_pool
from .bevfusion_lite import BEVFusionLite
from .fuser import BEVConvFuser
from .pixel_fusion_seg import MinkUNetPixelFusion, PointCamFuser, gather_pixel_features
from .view_transform import LSSViewTransform

__all__ = ['BEVFusionLite', 'BEVConvFuser', 'LSSViewTransform', 'MinkUNetPixelFusion', 'MultiViewImageResizeCrop',
           'PointCamFuser', 'bev_pool', 'gather_pixel_features']
