"""nn.MultiheadAttention weights: listed with the attention as their runner, and both curves (task distortion D of
the exact estimator, layer-local regulariser R) equal to a brute-force computation: prune the weight in place, run
the whole model, compute the quantity by hand. ``out_proj`` never runs as a module, so before the runner existed its
R was 0 and the memoised D was 0 (later units were served from the dense record)."""
import numpy as np
import pytest
import torch
from torch import nn

from mmprune4u_plugin.core.estimate_exact import exact_curves
from mmprune4u_plugin.core.layers import find_prunable_layers, get_weight
from mmprune4u_plugin.core.local_lsi import local_lsi_curves
from mmprune4u_plugin.core.lsi import feature_lsi
from mmprune4u_plugin.core.taps import Tap

GRID = (0.0, 0.2, 0.5, 0.8, 0.95)


class AttnNet(nn.Module):
    """Embedding -> self-attention (with a mask passed as a keyword) -> residual -> head, named like a detector."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        length = x.shape[1] if self.attn.batch_first else x.shape[0]
        mask = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        return self.head(torch.relu(a + h))


def _setup(batch_first: bool = True):
    gen = torch.Generator().manual_seed(0)
    model = AttnNet(batch_first).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / 2)
    shape = (2, 5, 4) if batch_first else (5, 2, 4)
    batches = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    return model, find_prunable_layers(model), batches


def _forward(model, batch):
    return model(batch)


def _pruned_in_place(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the round(s n) smallest-magnitude weights (ties by index) in place; return the original."""
    original = weight.detach().clone()
    order = torch.sort(original.abs().flatten(), stable=True).indices
    with torch.no_grad():
        weight.view(-1)[order[:round(sparsity * weight.numel())]] = 0
    return original


def test_attention_weights_are_listed_with_their_runner():
    model, layers, _ = _setup()
    by_name = {lay.name: lay for lay in layers}
    assert list(by_name) == ['embed.weight', 'attn.in_proj_weight', 'attn.out_proj.weight', 'head.weight']
    in_proj, out_proj = by_name['attn.in_proj_weight'], by_name['attn.out_proj.weight']
    assert (out_proj.module_name, out_proj.param_name, out_proj.runner, out_proj.runner_param) == (
        'attn.out_proj', 'weight', 'attn', 'out_proj.weight')
    assert (in_proj.module_name, in_proj.runner, in_proj.runner_param) == ('attn', 'attn', 'in_proj_weight')
    assert (by_name['head.weight'].runner, by_name['head.weight'].runner_param) == ('head', 'weight')
    assert get_weight(model, out_proj) is model.attn.out_proj.weight
    assert get_weight(model, in_proj) is model.attn.in_proj_weight


@pytest.mark.parametrize('memoise', [True, False])
@pytest.mark.parametrize('batch_first', [True, False])
def test_exact_task_distortion_matches_brute_force(memoise, batch_first):
    model, layers, batches = _setup(batch_first)
    task, _, _ = exact_curves(model, layers, GRID, batches, _forward, task_taps=[Tap('head', channel_dim=-1)],
                              modality_taps={}, memoise=memoise)
    with torch.no_grad():
        dense = [model(b) for b in batches]
        energy = sum(float(d.pow(2).sum()) for d in dense)
        for li, layer in enumerate(layers):
            weight = get_weight(model, layer)
            for k, s in enumerate(GRID):
                original = _pruned_in_place(weight, s)
                num = sum(float((model(b) - d).pow(2).sum()) for b, d in zip(batches, dense))
                weight.copy_(original)
                assert task[li, k] == pytest.approx(num / energy, rel=1e-9, abs=1e-15), (layer.name, s)
    out_proj = [lay.name for lay in layers].index('attn.out_proj.weight')
    assert np.all(task[out_proj, 1:] > 0)


@pytest.mark.parametrize('batch_first', [True, False])
def test_local_regulariser_is_the_attention_output_lsi(batch_first):
    """R of in_proj and of out_proj: the LSI bound between the attention's output with the weight pruned (in place,
    whole model run) and dense, pooled over the batches."""
    model, layers, batches = _setup(batch_first)
    local = local_lsi_curves(model, layers, GRID, batches, _forward)
    captured = []
    handle = model.attn.register_forward_hook(lambda mod, args, out: captured.append(out[0].detach()))
    try:
        with torch.no_grad():
            for b in batches:
                model(b)
            dense = torch.cat([c.reshape(-1, 8) for c in captured])
            for name in ('attn.in_proj_weight', 'attn.out_proj.weight'):
                li = [lay.name for lay in layers].index(name)
                weight = get_weight(model, layers[li])
                for k, s in enumerate(GRID[1:], start=1):
                    captured.clear()
                    original = _pruned_in_place(weight, s)
                    for b in batches:
                        model(b)
                    weight.copy_(original)
                    pruned = torch.cat([c.reshape(-1, 8) for c in captured])
                    ref = float(feature_lsi(pruned, dense, channel_dim=-1, fisher=False))
                    assert local[li, k] == pytest.approx(ref, rel=1e-9, abs=1e-15), (name, s)
                    assert ref > 0
    finally:
        handle.remove()
    assert np.all(local[:, 0] == 0)
