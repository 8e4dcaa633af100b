import io

import pytest
import torch

from mmprune4u_plugin.core.export import (SPARSE_KEY, compress_state_dict, compress_tensor, decompress_state_dict,
                                          is_compressed)


def _size(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def test_roundtrip_is_bit_exact_and_smaller():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, 3, 3, generator=gen)
    w[torch.rand(w.shape, generator=gen) < 0.7] = 0
    state = {'conv.weight': w, 'conv.bias': torch.randn(64, generator=gen), 'bn.num_batches_tracked': torch.tensor(3)}
    packed = compress_state_dict(state)
    assert is_compressed(packed) and SPARSE_KEY in packed['conv.weight']
    assert packed['conv.bias'] is state['conv.bias']  # dense tensors stay as they are
    back = decompress_state_dict(packed)
    assert all(torch.equal(back[k], state[k]) for k in state)
    # 30% density: 1/8 byte mask + 0.3 * 4 bytes per entry instead of 4 bytes
    assert _size(packed['conv.weight']) < 0.36 * _size(w)


def test_dense_tensor_is_not_inflated():
    w = torch.ones(1000)
    assert compress_tensor(w) is w
    w[:10] = 0  # 99% dense: the mask would cost more than it saves
    assert compress_tensor(w) is w


@pytest.mark.parametrize('dtype', [torch.float16, torch.float64])
def test_other_dtypes(dtype):
    w = torch.zeros(4, 50, dtype=dtype)
    w[0, ::7] = torch.arange(8, dtype=dtype) + 1
    assert torch.equal(decompress_state_dict(compress_state_dict({'w': w}))['w'], w)
