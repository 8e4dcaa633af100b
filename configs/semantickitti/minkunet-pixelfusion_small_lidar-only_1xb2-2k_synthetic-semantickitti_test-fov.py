"""Evaluate the LiDAR-only twin on the points the fused model's camera sees (``tools/test.py THIS CHECKPOINT``)."""
_base_ = ['./minkunet-pixelfusion_small_lidar-only_1xb2-2k_synthetic-semantickitti.py']
test_dataloader = dict(dataset=dict(pipeline={{_base_.fov_test_pipeline}}))
