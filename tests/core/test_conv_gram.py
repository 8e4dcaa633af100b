"""The patch Gram matrix of a stride-1 conv from lagged correlations equals P^T P of the unfolded patches."""
import math

import pytest
import torch

from mmprune4u_plugin.core.conv_gram import conv_gram


def _patches(x: torch.Tensor, kernel, dilation) -> torch.Tensor:
    """im2col of a stride-1 'valid' conv: rows = (batch, output position), columns = (input channel, offset)."""
    nd = len(kernel)
    for i, (k, d) in enumerate(zip(kernel, dilation)):
        x = x.unfold(2 + i, d * (k - 1) + 1, 1)[..., ::d]
    return x.permute(0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd)).reshape(
        -1, x.shape[1] * math.prod(kernel))


@pytest.mark.parametrize('shape, kernel, dilation', [
    ((2, 3, 9, 8), (3, 3), (1, 1)),
    ((1, 2, 7, 6, 9), (3, 2, 3), (2, 1, 1)),
    ((2, 4, 11), (2,), (3,)),
    ((1, 2, 6, 5), (3, 3), (2, 2)),  # the cores of the largest lags are empty
    ((1, 3, 5, 6), (1, 1), (1, 1)),
    ((3, 2, 4, 12), (4, 1), (1, 1)),
])
def test_lagged_gram_equals_im2col_gram(shape, kernel, dilation):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    gram, total, rows = conv_gram(x, kernel, dilation)
    p = _patches(x, kernel, dilation)
    torch.testing.assert_close(gram, p.T @ p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(total, p.sum(0), rtol=1e-12, atol=1e-12)
    assert rows == p.shape[0]
