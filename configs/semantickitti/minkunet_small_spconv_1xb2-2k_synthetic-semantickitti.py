"""MinkUNet (spconv backend; mmdet3d's model base) shrunk for CPU, trained on the synthetic SemanticKITTI-format data.

Data: ``python tools/create_synthetic_semantickitti.py --out-dir data/synthetic_semantickitti --workers 2``; splits,
augmentation and schedule in ``_base_/synthetic-semantickitti_1xb2-2k.py``. Voxels are 0.1 m instead of the zoo's
0.05 m to halve the CPU cost; ``batch_first`` (spconv) and no voxel cap, as in the zoo's spconv MinkUNet34. The scans
are 64-beam HDL-64E ray casts (about 61k points).
"""
_base_ = ['mmdet3d::_base_/models/minkunet.py', './_base_/synthetic-semantickitti_1xb2-2k.py']
voxel_size = 0.1
model = dict(
    data_preprocessor=dict(batch_first=True, max_voxels=None, voxel_layer=dict(voxel_size=[voxel_size] * 3)),
    backbone=dict(sparseconv_backend='spconv', base_channels=16, encoder_channels=[16, 32, 32, 64],
                  encoder_blocks=[1, 1, 1, 1], decoder_channels=[64, 32, 32, 32], decoder_blocks=[1, 1, 1, 1]),
    decode_head=dict(channels=32))
