"""Models shared by the layer-local regulariser tests (tests/core/test_local_lsi.py, test_sampled_levels.py)."""
import torch
from torch import nn

from mmprune4u_plugin.core.layers import find_prunable_layers

GRID = (0.0, 0.1, 0.37, 0.5, 0.9, 0.99)


class AttnNet(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.head(a)


class WeightStandardisedConv2d(nn.Conv2d):
    """Output not affine in the stored weight: the Gram path must notice and fall back."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


class DeconvToSize(nn.Module):
    """A transposed conv told its output size (``output_size``: output padding chosen at run time)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.conv(self.up(x, output_size=(2 * x.shape[2], 2 * x.shape[3])))


CASES = {
    'conv1d': (lambda: nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2), nn.ReLU(),
                                     nn.Conv1d(4, 5, 2, padding='same', padding_mode='circular')), (2, 3, 17)),
    'conv1d-unbatched': (lambda: nn.Conv1d(3, 4, 3, padding=2), (3, 11)),
    'conv2d': (lambda: nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
        nn.Conv2d(6, 6, 3, groups=6, bias=False, padding=1, padding_mode='reflect'),
        nn.Conv2d(6, 4, (2, 3), padding='same', padding_mode='replicate')), (2, 4, 9, 8)),
    'conv3d': (lambda: nn.Sequential(nn.Conv3d(2, 3, (3, 2, 3), stride=(1, 2, 1), padding=1, dilation=(2, 1, 1)),
                                     nn.ReLU(), nn.Conv3d(3, 4, 1)), (2, 2, 7, 6, 5)),
    'conv-transpose1d': (lambda: nn.Sequential(
        nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1, dilation=2),
        nn.ConvTranspose1d(4, 4, 2, groups=2, bias=False), nn.ConvTranspose1d(4, 2, 3, stride=3, padding=3)),
        (2, 3, 7)),
    'conv-transpose2d': (lambda: nn.Sequential(
        nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2),
        nn.ConvTranspose2d(6, 2, 2, stride=2)), (2, 4, 5, 4)),
    'conv-transpose3d': (lambda: nn.ConvTranspose3d(2, 3, 3, stride=2, padding=2, dilation=2), (1, 2, 4, 5, 3)),
    'conv-transpose-output-size': (DeconvToSize, (2, 3, 5, 4)),
    'linear': (lambda: nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3, bias=False)), (2, 3, 5)),
    'linear-few-rows': (lambda: nn.Linear(64, 5), (2, 3, 64)),  # 12 rows < 64 inputs: levels from the rows
    'linear-rows-then-gram': (lambda: nn.Linear(30, 4), (20, 30)),  # 20 rows, then 40 > 30: the Gram matrix
    'attention': (lambda: AttnNet(True), (2, 5, 4)),
    'attention-seq-first': (lambda: AttnNet(False), (5, 2, 4)),
    'fallback': (lambda: nn.Sequential(WeightStandardisedConv2d(3, 4, 3), nn.ReLU()), (2, 3, 6, 7)),
}


def call_model(model, batch):
    return model(batch)


def build_case(name: str, dtype: torch.dtype):
    build, shape = CASES[name]
    torch.manual_seed(0)
    model = build().to(dtype).eval()
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(shape, generator=gen).to(dtype) * 2 + 0.5 for _ in range(2)]
    return model, find_prunable_layers(model), batches


def assert_same_moments(fast, ref, tol: float) -> None:
    """Equal n and per-channel sums; sums are compared on the scale of the dense ones."""
    for row_f, row_r in zip(fast, ref):
        for a, b in zip(row_f, row_r):
            assert a.n == b.n
            if b.n == 0:
                continue
            ss_scale = float(b.ss_p.max())
            for field, scale in (('s_p', (b.n * ss_scale) ** 0.5), ('s_q', (b.n * ss_scale) ** 0.5),
                                 ('ss_p', ss_scale), ('ss_q', ss_scale)):
                torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=tol, atol=tol * scale)


def sparse_net(spconv_nn, dtype: torch.dtype):
    """Submanifold (shared and new index keys, non-cubic kernel, 1x1x1), strided and inverse sparse convs."""
    gen = torch.Generator().manual_seed(0)
    batch, size = 2, 12
    indices = (torch.rand(batch, size, size, size, generator=gen) < 0.15).nonzero().int().contiguous()

    class SparseNet(nn.Module):
        def __init__(self):
            super().__init__()
            sp = spconv_nn
            self.subm_a = sp.SubMConv3d(4, 6, 3, indice_key='s1', bias=False)
            self.subm_b = sp.SubMConv3d(6, 6, 3, indice_key='s1', bias=False)
            self.down = sp.SparseConv3d(6, 5, 3, stride=2, padding=1, indice_key='d1', bias=False)
            self.up = sp.SparseInverseConv3d(5, 3, 3, indice_key='d1', bias=False)
            self.subm_c = sp.SubMConv3d(3, 3, (1, 3, 1), bias=False)
            self.subm_1 = sp.SubMConv3d(3, 2, 1, bias=False)  # spconv's 1x1 path (MinkUNet has these)

        def forward(self, feats):
            x = spconv_nn.SparseConvTensor(feats, indices, [size] * 3, batch)
            return self.subm_1(self.subm_c(self.up(self.down(self.subm_b(self.subm_a(x))))))

    model = SparseNet().to(dtype).eval()
    batches = [torch.randn(len(indices), 4, generator=gen).to(dtype) for _ in range(2)]
    return model, batches
