import pytest
import torch
from torch import nn

from helpers import TwoBranchNet
from mmprune4u_plugin.core.layers import canonical_name, find_prunable_layers, get_weight


def test_finds_conv_linear_and_skips_norm_and_bias():
    layers = find_prunable_layers(TwoBranchNet())
    assert [lay.name for lay in layers] == [
        'img_backbone.0.weight', 'img_backbone.2.weight', 'pts_backbone.0.weight', 'pts_backbone.2.weight',
        'fusion_layer.weight', 'bbox_head.0.weight', 'bbox_head.2.weight']
    assert [lay.numel for lay in layers] == [108, 144, 40, 32, 48, 324, 18]
    assert [lay.channel_dim for lay in layers] == [1, 1, -1, -1, 1, 1, 1]


def test_all_layer_types():
    model = nn.ModuleDict(dict(c1=nn.Conv1d(2, 3, 3), c3=nn.Conv3d(2, 3, 3), t1=nn.ConvTranspose1d(2, 3, 2),
                               t2=nn.ConvTranspose2d(2, 3, 2), t3=nn.ConvTranspose3d(2, 3, 2),
                               attn=nn.MultiheadAttention(8, 2), bn=nn.BatchNorm1d(3), ln=nn.LayerNorm(3)))
    names = [lay.name for lay in find_prunable_layers(model)]
    assert names == ['c1.weight', 'c3.weight', 't1.weight', 't2.weight', 't3.weight', 'attn.in_proj_weight',
                     'attn.out_proj.weight']


def test_sparse_conv_detected_by_mro_without_import():
    class SparseConvolution(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(4, 3, 3, 3, 2))

    class SubMConv3d(SparseConvolution):
        pass

    layers = find_prunable_layers(nn.Sequential(SubMConv3d()))
    assert [(lay.name, lay.kind, lay.numel, lay.channel_dim) for lay in layers] == [
        ('0.weight', 'SubMConv3d', 216, -1)]


def test_ddp_prefix_is_stripped_and_weights_found():
    wrapped = nn.Module()
    wrapped.module = TwoBranchNet()
    layers = find_prunable_layers(wrapped)
    assert layers[0].name == 'img_backbone.0.weight'
    assert get_weight(wrapped, layers[0]) is wrapped.module.img_backbone[0].weight
    assert canonical_name('module.module.a.b') == 'a.b'


def test_include_exclude_and_modalities():
    layers = find_prunable_layers(TwoBranchNet(), include=[r'^img_', r'^pts_', 'fusion'], exclude=[r'\.2\.'],
                                  modalities=dict(camera=['img_'], lidar=['pts_']))
    assert [(lay.name, lay.modality) for lay in layers] == [
        ('img_backbone.0.weight', 'camera'), ('pts_backbone.0.weight', 'lidar'), ('fusion_layer.weight', 'other')]


@pytest.mark.parametrize('kwargs, message', [
    (dict(include=['nope']), r"`include` patterns \['nope'\] match no prunable layer"),
    (dict(exclude=['nope']), r"`exclude` patterns \['nope'\]"),
    (dict(include=['img_'], exclude=['img_']), 'no prunable layer left'),
    (dict(modalities=dict(camera=['radar'])), r"`modalities\['camera'\]` patterns \['radar'\]"),
    (dict(modalities=dict(camera='img_')), 'must be a list of patterns'),
    (dict(include=['(']), 'not a valid regular expression'),
])
def test_bad_patterns(kwargs, message):
    with pytest.raises(ValueError, match=message):
        find_prunable_layers(TwoBranchNet(), **kwargs)


def test_model_without_prunable_weights():
    with pytest.raises(ValueError, match='has no prunable weights'):
        find_prunable_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))
