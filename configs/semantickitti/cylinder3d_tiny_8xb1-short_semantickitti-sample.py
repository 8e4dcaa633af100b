"""Cylinder3D (mmdet3d zoo config) shrunk for CPU, on the real SemanticKITTI sample frame.

A LiDAR segmentor: points in cylindrical cells, a point MLP max-pooled per cell (``SegVFE``), an asymmetric sparse-conv
U-Net (``Asymm3DSpconv``; mmcv's sparse convs, run by spconv on CPU: mmprune4u_plugin.compat) and a sparse-conv head.
As for the tiny MinkUNet, the plain pipeline of the dataset base is used. Fill these args: ``data_root`` (or set
MMPRUNE4U_SHARED_DATA); ``grid_shape`` and the widths in ``model``; ``load_from``.
"""
_base_ = ['mmdet3d::cylinder3d/cylinder3d_4xb4-3x_semantickitti.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
data_root = '{{$MMPRUNE4U_SHARED_DATA:../shared/data}}/semantickitti-sample/'
grid_shape = [48, 36, 16]  # (rho, phi, z) cells over the zoo's range; the zoo has [480, 360, 32]
model = dict(data_preprocessor=dict(voxel_layer=dict(grid_shape=grid_shape)),
             voxel_encoder=dict(feat_channels=[16, 32], feat_compression=8, grid_shape=grid_shape),
             backbone=dict(grid_size=grid_shape, input_channels=8, base_channels=8),
             decode_head=dict(channels=32))  # 4 x base_channels: the backbone's output width
sample = dict(data_root=data_root, ann_file='semantickitti_infos.pkl',
              data_prefix=dict(pts='sequences/00/velodyne', pts_semantic_mask='sequences/00/labels'))
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline={{_base_.test_pipeline}}, **sample))  # no flips on one frame
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(**sample))
val_dataloader, val_evaluator, val_cfg = None, None, None  # one frame: no validation during the short schedule
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4, val_interval=1000)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=2),
                     sparsity=dict(type='SparsityReportHook'))  # test/val runs log the weights' sparsity
load_from = None
