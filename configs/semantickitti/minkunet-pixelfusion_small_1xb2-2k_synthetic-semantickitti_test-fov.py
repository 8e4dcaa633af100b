"""Evaluate the LiDAR-camera segmentor on the points its camera sees (``tools/test.py THIS CHECKPOINT``)."""
_base_ = ['./minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py']
test_dataloader = dict(dataset=dict(pipeline={{_base_.camera_fov_test_pipeline}}))
