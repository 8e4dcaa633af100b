"""Cylinder3D (mmdet3d's zoo config, shrunk) on CPU, on the real SemanticKITTI sample frame.

Before the shims of mmprune4u_plugin.compat this failed in the data preprocessor (mmdet3d's ``dynamic_scatter_3d``:
no CPU kernel), then in ``SegVFE`` (mmcv's ``dynamic_scatter``) and in the backbone and head (mmcv's sparse convs:
``get_indice_pairs is not implemented on CPU``).
"""
import pytest
import torch

from zoo import build_from_config, require_sample

pytest.importorskip('mmdet3d')
CONFIG = 'semantickitti/cylinder3d_tiny_8xb1-short_semantickitti-sample.py'


def test_tiny_cylinder3d_loss_backward_and_predict_on_cpu():
    require_sample('semantickitti-sample')
    from mmcv.ops.sparse_conv import SparseConvolution
    from mmdet3d.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    torch.manual_seed(0)
    cfg, model, dataset = build_from_config(CONFIG)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, SparseConvolution)}
    assert len(convs) > 40 and any(n.startswith('decode_head') for n in convs)
    assert all(m.weight.shape[-2:] == (m.in_channels, m.out_channels) for m in convs.values())  # mmcv's layout

    model.train()
    data = model.data_preprocessor(pseudo_collate([dataset[0]]), True)
    num_points = len(data['inputs']['points'][0])
    assert data['inputs']['voxels']['voxels'].shape == (num_points, 6)
    assert (data['data_samples'][0].point2voxel_map >= 0).all()  # the range is clamped: every point has a voxel
    losses = model(**data, mode='loss')
    assert set(losses) == {'decode.loss_ce', 'decode.loss_lovasz'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(m.weight.grad.abs().sum() > 0 for m in convs.values())  # every sparse conv is in the graph

    model.eval()
    test_set = DATASETS.build(cfg.test_dataloader.dataset)
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate([test_set[0]]), False)
        first, second = (model(**data, mode='predict')[0].pred_pts_seg.pts_semantic_mask for _ in range(2))
    assert first.shape == (num_points,) and 0 <= int(first.min()) and int(first.max()) < 20
    assert torch.equal(first, second)  # rulebooks are rebuilt per call, not leaked between calls
