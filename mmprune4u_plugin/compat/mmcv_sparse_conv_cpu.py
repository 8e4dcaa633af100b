"""Shim: mmcv 2.1.0's sparse convolutions (``SubMConv3d``, ``SparseConv3d``, ``SparseInverseConv3d``...) are CUDA-only.

Upstream gap (mmcv 2.1.0): ``mmcv.ops.sparse_conv.SparseConvolution.forward`` builds its rulebook with
``mmcv.ops.sparse_ops.get_indice_pairs``, whose CPU branch raises ``RuntimeError: get_indice_pairs is not implemented
on CPU`` (and the gather-GEMM-scatter ops behind it have no CPU kernels either). mmdet3d's ``Asymm3DSpconv``
(Cylinder3D's backbone) imports these classes from ``mmcv.ops`` by name, so mmdet3d's ``IS_SPCONV2_AVAILABLE``
switch (which only re-registers spconv's classes for ``build_conv_layer``) does not reach it.

Reproduced: ``mmcv.ops.SubMConv3d(4, 4, 3)(mmcv.ops.SparseConvTensor(torch.randn(2, 4), torch.tensor([[0, 1, 1, 1],
[0, 2, 2, 2]]).int(), [4, 4, 4], 1))``.

Patch: ``SparseConvolution.forward`` becomes a dispatcher: CPU features go to :func:`sparse_conv_cpu`, mmcv's own
forward with spconv 2's CPU ops in place of mmcv's CUDA ones (``spconv.pytorch.ops.get_indice_pairs``, native
algorithm, and ``spconv.pytorch.functional.indice_{subm_,,inverse_}conv``); every other device, and mmcv's 1x1 path
(a plain ``torch.mm``), goes to the original. What stays mmcv's:

- the module, its weight layout ``[*kernel, in, out]`` and its state-dict keys: spconv's ``[out, *kernel, in]``
  layout is a permuted view taken in each call, so gradients reach mmcv's parameter and checkpoints load either way;
- the ``mmcv.ops.SparseConvTensor`` in and out, whose ``indice_dict`` holds the CPU rulebooks in mmcv's tuple order
  ``(out_indices, indices, pairs, pair_num, spatial_shape)``;
- mmcv's reuse rule: a layer whose ``indice_key`` is already in the tensor reuses that rulebook *without* checking
  its kernel size (spconv's own modules raise instead). Cylinder3D relies on it: each ``AsymmResBlock`` shares one
  key between its 1x3x3 and 3x1x3 convs, so on CUDA the 3x1x3 ones run on the 1x3x3 neighbourhoods; so they do here.
"""
from __future__ import annotations

from typing import Any, Callable, List

import torch

_MARK = '_mmprune4u_shim'


def spconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """mmcv's ``[*kernel, in, out]`` weight as spconv's ``[out, *kernel, in]`` (differentiable)."""
    ndim = weight.dim() - 2
    return weight.permute(ndim + 1, *range(ndim), ndim).contiguous()


def _rulebook(conv: Any, input: Any, spatial_shape: List[int]) -> tuple:
    """``(out_indices, pairs, pair_num, out_spatial_shape)`` by mmcv's lookup rules, built with spconv if absent."""
    from mmcv.ops import sparse_ops
    from spconv.pytorch import ops
    from spconv.pytorch.core import ConvAlgo

    data = input.find_indice_pair(conv.indice_key)
    if conv.inverse:
        if data is None:
            raise ValueError(f'inverse conv needs the rulebook of its strided conv, but got indice_key: '
                             f'{conv.indice_key!r} (in the tensor: {sorted(map(str, input.indice_dict))})')
        _, out_indices, pairs, pair_num, out_shape = data
        if pairs.shape[1] != len(pair_num) or len(pair_num) != int(torch.tensor(conv.kernel_size).prod()):
            raise ValueError('inverse conv must have same kernel size as its couple conv')
        return out_indices, pairs, pair_num, out_shape
    if conv.subm:
        out_shape = input.spatial_shape
    elif conv.transposed:
        out_shape = sparse_ops.get_deconv_output_size(spatial_shape, conv.kernel_size, conv.stride, conv.padding,
                                                      conv.dilation, conv.output_padding)
    else:
        out_shape = sparse_ops.get_conv_output_size(spatial_shape, conv.kernel_size, conv.stride, conv.padding,
                                                    conv.dilation)
    if data is not None:
        out_indices, _, pairs, pair_num, _ = data
        return out_indices, pairs, pair_num, out_shape
    out_indices, pairs, pair_num = ops.get_indice_pairs(
        input.indices.int().contiguous(), int(input.batch_size), spatial_shape, ConvAlgo.Native,
        list(conv.kernel_size), list(conv.stride), list(conv.padding), list(conv.dilation),
        list(conv.output_padding), conv.subm, conv.transposed)
    if conv.indice_key is not None:
        input.indice_dict[conv.indice_key] = (out_indices, input.indices, pairs, pair_num, input.spatial_shape)
    return out_indices, pairs, pair_num, out_shape


def sparse_conv_cpu(conv: Any, input: Any) -> Any:
    """mmcv's ``SparseConvolution.forward`` on CPU tensors, computed with spconv 2's CPU ops."""
    from mmcv.ops import SparseConvTensor
    from spconv.pytorch import functional as Fsp
    from spconv.pytorch.core import ConvAlgo

    spatial_shape = [int(s) for s in input.spatial_shape]
    out_indices, pairs, pair_num, out_shape = _rulebook(conv, input, spatial_shape)
    op = Fsp.indice_subm_conv if conv.subm else Fsp.indice_inverse_conv if conv.inverse else Fsp.indice_conv
    features = op(input.features.contiguous(), spconv_weight(conv.weight), pairs, pair_num, out_indices.shape[0],
                  ConvAlgo.Native)
    if conv.bias is not None:  # fused_bn in mmcv is the same conv with the bias added in the kernel
        features = features + conv.bias
    out = SparseConvTensor(features, out_indices, out_shape, input.batch_size)
    out.indice_dict = input.indice_dict
    out.grid = input.grid
    return out


def make_dispatcher(original: Callable) -> Callable:
    """CPU features go to :func:`sparse_conv_cpu` (except mmcv's device-agnostic 1x1 path), the rest to ``original``."""

    def forward(self: Any, input: Any) -> Any:
        if input.features.device.type == 'cpu' and not self.conv1x1:
            return sparse_conv_cpu(self, input)
        return original(self, input)

    forward.__wrapped__ = original
    setattr(forward, _MARK, True)
    return forward


def apply() -> bool:
    """Install the dispatcher on mmcv's ``SparseConvolution`` (idempotent). Returns True."""
    import spconv.pytorch  # noqa: F401  (raises ImportError here, where apply_cpu_shims expects it, if absent)
    from mmcv.ops.sparse_conv import SparseConvolution

    if not getattr(SparseConvolution.forward, _MARK, False):
        SparseConvolution.forward = make_dispatcher(SparseConvolution.forward)
    return True
