"""BEVFusion-Lite tiny (LiDAR + 6 cameras, conv fuser) on the real nuScenes keyframe: a few CPU iterations.

Fill these args: ``data_root`` in the data base (or set MMPRUNE4U_SHARED_DATA); sizes in the model base;
``load_from`` for trained weights. Variants: ``*_lidar_*`` (LiDAR-only), ``*_cam_*`` (camera-only).
"""
_base_ = ['./_base_/bevfusion-lite_tiny_nus-sample.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
load_from = None
