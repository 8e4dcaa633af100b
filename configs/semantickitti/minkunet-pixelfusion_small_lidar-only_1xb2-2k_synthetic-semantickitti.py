"""The LiDAR-only twin of ``minkunet-pixelfusion_small_1xb2-2k_synthetic-semantickitti.py``: the same network with its
camera branch off (``fusion_layer`` takes the LiDAR features alone), the same data, seed and schedule."""
_base_ = ['./minkunet_small_spconv_1xb2-2k_synthetic-semantickitti.py']
model = dict(type='MinkUNetPixelFusion', fusion_layer=dict(type='PointCamFuser', in_channels=[32], out_channels=32))
