"""Cylinder3D (mmdet3d's model base) shrunk for CPU, trained on the synthetic SemanticKITTI-format data.

Data, splits, augmentation and schedule: ``_base_/synthetic-semantickitti_1xb2-2k.py``. mmcv's sparse convs run on
CPU through spconv (mmprune4u_plugin.compat). The cylindrical grid is coarsened from the zoo's [480, 360, 32]
(rho, phi, z) cells over 0-50 m to [240, 180, 16], and the widths shrunk, for CPU.
"""
_base_ = ['mmdet3d::_base_/models/cylinder3d.py', './_base_/synthetic-semantickitti_1xb2-2k.py']
grid_shape = [240, 180, 16]
model = dict(data_preprocessor=dict(voxel_layer=dict(grid_shape=grid_shape)),
             voxel_encoder=dict(feat_channels=[16, 32, 64], feat_compression=16, grid_shape=grid_shape),
             backbone=dict(grid_size=grid_shape, input_channels=16, base_channels=8),
             decode_head=dict(channels=32))  # 4 x base_channels: the backbone's output width
