"""ForwardMemo with sparse tensors whose features the caller reassigns in place (mmcv's SparseConvTensor)."""
import torch
from torch import nn

from mmprune4u_plugin.core.memo import ForwardMemo


class _Sparse:
    """The shape of mmcv's SparseConvTensor: ``features`` and ``indices`` attributes, no ``replace_feature``."""

    def __init__(self, features: torch.Tensor, indices: torch.Tensor) -> None:
        self.features, self.indices = features, indices


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: _Sparse) -> _Sparse:
        return _Sparse(self.lin(x.features), x.indices)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = _Block()
        self.head = nn.Linear(6, 2)

    def forward(self, x: _Sparse) -> torch.Tensor:
        y = self.block(x)
        y.features = torch.cat([y.features, x.features], 1)  # on the unit's output, as Cylinder3D's backbone does
        return self.head(y.features)


def test_replayed_sparse_output_survives_in_place_feature_assignment():
    torch.manual_seed(0)
    net = _Net()
    x = _Sparse(torch.randn(5, 3), torch.zeros(5, 4, dtype=torch.int32))
    memo = ForwardMemo(net, depth=1)
    memo.start_batch(0)
    with memo.record():
        dense = net(x)
    for _ in range(2):  # a shared record would come back with 6, then 9 channels
        memo.start_batch(0)
        with memo.replay(dirty=['head']):
            out = net(x)
        torch.testing.assert_close(out, dense)
    assert memo.calls_served == 2
