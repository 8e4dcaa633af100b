"""The demo's dense model: BEVFusion-Lite tiny trained on the synthetic nuScenes-format set (tools/demo.py).

Fill these args: ``data_root`` (written by tools/create_synthetic_nuscenes.py); ``train_cfg.max_iters``.
"""
_base_ = ['../bevfusion_lite/_base_/bevfusion-lite_tiny_nus-sample.py']
custom_imports = dict(imports=['mmprune4u_plugin'], allow_failed_imports=False)
data_root = 'data/synthetic_nuscenes/'
cameras = ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT']
prefix = dict(pts='samples/LIDAR_TOP', **{cam: f'samples/{cam}' for cam in cameras})
# LiDAR depth supervision of the camera branch (BEVDepth's idea): without it the LSS branch learns next to nothing
# in this budget (camera-only NDS 0.000 after 600 iterations; tools/compare_modalities.py)
# pool='mean': a BEV cell gets the depth-weighted mean of the camera features landing in it instead of their sum,
# whose scale falls ~250x from 5-10 m to 30-40 m (most objects lie beyond 20 m; measured, see LSSViewTransform)
model = dict(view_transform=dict(depth_loss_weight=1.0, pool='mean'))
train_dataloader = dict(batch_size=2, dataset=dict(times=100, dataset=dict(
    data_root=data_root, ann_file='nuscenes_infos_train.pkl', data_prefix=prefix)))
test_dataloader = dict(dataset=dict(data_root=data_root, ann_file='nuscenes_infos_val.pkl', data_prefix=prefix))
test_evaluator = dict(_delete_=True, type='SyntheticNuScenesMetric', data_root=data_root,
                      ann_file='nuscenes_infos_val.pkl')
train_cfg = dict(max_iters=300)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=300, eta_min=1e-4, by_epoch=False, begin=0, end=300)]
randomness = dict(seed=0)  # the demo and tools/compare_modalities.py compare runs of the same seed
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=100000, save_last=True))
