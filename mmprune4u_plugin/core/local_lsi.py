"""Layer-local regulariser R_l(s): LSI bound on KL between a layer's own output channels, pruned vs dense.

The layer's own output is its *runner's* output (layers.py): the conv / linear / sparse-conv output, and for both
weights of an ``nn.MultiheadAttention`` (``in_proj_weight`` and ``out_proj.weight``) the attention's output, the
tensor the rest of the network sees (``out_proj`` alone never runs as a module).

Pruning only layer l leaves its input unchanged, so R_l needs no extra network pass: in one dense pass over the
calibration batches, hooks on the runners pool, per output channel and level, the sums n, sum and sum of squares of
the dense and the pruned output, which a :class:`MomentAccumulator` turns into the bound. Two ways to the pruned sums:

- Gram (exact, no work per level during the pass): runners whose output is affine in input patches (patches.py:
  Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, spconv convs, attention out_proj) accumulate the patch Gram matrix
  (conv_gram.py and sparse_patches.py build it without the patches where they can); all levels follow from it at the
  end (gram_levels.py), at a cost that does not grow with the calibration data. A reconstruction check on the first
  call (P W^T + b == output) guards the patch form; a runner that fails it goes per level, with a warning.
- Per level (any other runner: attention in_proj, custom modules): the runner is called again with the weight
  pruned to every level (``torch.func.functional_call``). spconv submanifold convs reuse the index pairs the dense
  call built.

The pass stops early (``stop_at``, the task taps) once every tapped output is out and every layer has run in it:
a detector's post-processing (NMS: 3/4 of BEVFusion-Lite's predict pass on random weights) adds nothing to R.

``progress(1)`` is called once per calibration batch and once per layer: total ``len(batches) + len(layers)``.
"""
from __future__ import annotations

import math
import warnings
import zlib
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .gram_levels import PatchMoments, layer_level_sums
from .layers import PrunableLayer, get_weight, module_by_name, module_index
from .lsi import MomentAccumulator, pooled_kl_bounds
from .patch_rows import patch_rows
from .patches import PatchMap, patch_map
from .sampled_levels import SampledR, exact_is_cheaper, exact_level_count, sampled_level_sums
from .sparse_patches import NotAffine, with_reused_pairs
from .taps import StopForward, Tap, tensors_in

CHECK_ROWS = 256  # output rows compared with P W^T + b on a runner's first call


_SAME_WIDTH_INT = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16,
                   torch.bfloat16: torch.int16}


def magnitude_order(weight: torch.Tensor) -> torch.Tensor:
    """Flat indices of ``weight`` from smallest to largest magnitude (stable, so ties go by index).

    Non-negative IEEE floats are ordered like their bit patterns read as integers, and torch sorts integers several
    times faster (radix sort): the same order, bit for bit, as sorting the magnitudes themselves."""
    magnitude = weight.detach().abs().reshape(-1).contiguous()
    as_int = _SAME_WIDTH_INT.get(magnitude.dtype)
    return torch.sort(magnitude if as_int is None else magnitude.view(as_int), stable=True).indices


def pruned_copy(weight: torch.Tensor, order: torch.Tensor, sparsity: float) -> torch.Tensor:
    """``weight`` with its round(sparsity * n) smallest-magnitude entries zeroed (same rule as ``magnitude_mask``)."""
    out = weight.detach().clone()
    m = int(round(float(sparsity) * weight.numel()))
    out.view(-1)[order[:m]] = 0
    return out


SUM_BLOCK = 512  # output rows summed in float32 before the float64 accumulation (channel_sums)


def channel_sums(out: torch.Tensor, channel: int, precise: bool = False) -> torch.Tensor:
    """(2, C) float64: per channel, the sum and the sum of squares of ``out`` over every other dim (``precise``:
    accumulated in float64, for the exact route, whose pruned sums subtract from these).

    A channel's values along contiguous trailing dims, or in blocks of ``SUM_BLOCK`` rows of a (rows, C) output, are
    summed in float32 (rounding ~1e-7 relative, checked in tests/core/test_local_lsi.py), those sums in float64: as
    exact as a float64 accumulation for what R resolves, ~4x faster, and without a float64 copy of the output."""
    if precise or out.dtype == torch.float64:
        dims = [i for i in range(out.dim()) if i != channel]
        return torch.stack([out.sum(dims, dtype=torch.float64), (out * out).sum(dims, dtype=torch.float64)])
    out = out.float()  # a no-op for float32; half precision would round the block sums
    if channel == out.dim() - 1:  # (rows, C), e.g. sparse features: blocks of rows
        flat = out.reshape(-1, out.shape[-1])
        head = flat.shape[0] // SUM_BLOCK * SUM_BLOCK
        blocks = flat[:head].view(-1, SUM_BLOCK, flat.shape[1])
        tail = flat[head:]
        return torch.stack([blocks.sum(1).sum(0, dtype=torch.float64) + tail.sum(0, dtype=torch.float64),
                            blocks.square().sum(1).sum(0, dtype=torch.float64)
                            + tail.square().sum(0, dtype=torch.float64)])
    # (before, C, after): float32 sums along the contiguous trailing dims (a cascade sum), float64 over the rest
    rows = out.reshape(math.prod(out.shape[:channel]), out.shape[channel], -1)
    return torch.stack([rows.sum(2).sum(0, dtype=torch.float64), rows.square().sum(2).sum(0, dtype=torch.float64)])


class LevelMoments(Sequence[MomentAccumulator]):
    """Every grid level's pooled sums of one layer over the same dense sums, as (K, C) tensors.

    Reads as a sequence of :class:`MomentAccumulator` (built on access; an empty one where the level is unused), but
    R of all levels comes from one batched call (:meth:`kl_bounds`): building 100 accumulators per layer and
    re-checking that they share the dense sums cost as much as BEVFusion-Lite's whole network pass."""

    def __init__(self, n: int, s_p: torch.Tensor, ss_p: torch.Tensor, s_q: torch.Tensor, ss_q: torch.Tensor, *,
                 used: Sequence[bool]) -> None:
        if s_q.shape != ss_q.shape or s_q.shape[0] != len(used) or s_q.shape[1:] != s_p.shape:
            raise ValueError(f'pruned sums {tuple(s_q.shape)} / {tuple(ss_q.shape)} do not match {len(used)} levels '
                             f'of dense sums {tuple(s_p.shape)}')
        self.n, self.s_p, self.ss_p, self.s_q, self.ss_q = n, s_p, ss_p, s_q, ss_q
        self.used = [bool(u) for u in used]

    def __len__(self) -> int:
        return len(self.used)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if not self.used[k]:
            return MomentAccumulator()
        return MomentAccumulator(n=self.n, s_p=self.s_p, ss_p=self.ss_p, s_q=self.s_q[k], ss_q=self.ss_q[k])

    def kl_bounds(self) -> list[float]:
        """R at every level (0 where unused): :meth:`MomentAccumulator.kl_bound` of each, in one call."""
        out = [0.0] * len(self.used)
        picks = [k for k, u in enumerate(self.used) if u]
        if picks and self.n > 0:
            index = torch.as_tensor(picks)
            values = pooled_kl_bounds(self.n, self.s_p, self.ss_p, self.s_q[index], self.ss_q[index])
            for k, v in zip(picks, values.tolist()):
                out[k] = v
        return out


class _LayerProbe:
    """Pools one layer's dense and pruned output sums over the calibration pass (module docstring)."""

    def __init__(self, model: nn.Module, layer: PrunableLayer, grid: Sequence[float], use_gram: bool,
                 sample: SampledR | None = None, num_batches: int = 1,
                 modules: dict[str, nn.Module] | None = None) -> None:
        self.layer, self.grid = layer, [float(s) for s in grid]
        self.sample = None if sample is None or sample.mode == 'exact' else sample
        self.num_batches = max(1, num_batches)
        self.rate: float | None = None  # share of each call's rows kept (sampled mode), set on the first call
        self.sampled: list[torch.Tensor] = []  # kept patch rows (groups, rows, J) and their 1 / probability
        self.row_weight: list[torch.Tensor] = []
        self.sampled_out: list[torch.Tensor] = []  # the dense output at the kept rows (rows, all channels)
        self.gen = torch.Generator().manual_seed((sample.seed if sample else 0) * 1_000_003 + zlib.crc32(
            layer.name.encode()))
        self.runner = module_by_name(model, layer.runner, modules)
        self.weight = get_weight(model, layer, modules)
        self.order = magnitude_order(self.weight)
        self.plan: PatchMap | None = patch_map(self.runner, layer) if use_gram else None
        self.checked = False
        self.calls = 0
        self.levels = [MomentAccumulator() for _ in grid]
        self.n, self.dense, self.patches = 0, None, PatchMoments()

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.calls += 1
        if self.calls == 1 and self.sample is not None and self.sample.mode == 'auto' and self.plan is not None:
            self._choose_route(output)
        if self.plan is not None and (self._pool_sample if self.sample else self._pool_gram)(args, kwargs, output):
            return
        args = with_reused_pairs(self.runner, args, output)
        dense = tensors_in(output)[0]
        for k, s in enumerate(self.grid):
            if s > 0:
                params = {self.layer.runner_param: pruned_copy(self.weight, self.order, s)}
                pruned = tensors_in(functional_call(module, params, args, kwargs))[0]
                self.levels[k].add(pruned, dense, self._channel_dim(dense))

    def _choose_route(self, output: Any) -> None:
        """``auto``: the exact route where it costs no more than sampling (rows of all batches guessed from the
        first call's)."""
        dense = tensors_in(output)[0]
        rows = dense.numel() // max(1, dense.shape[self._channel_dim(dense)]) * self.num_batches
        _, channels, dim = self.plan.index.shape
        if exact_is_cheaper(self.sample, rows=rows, dim=dim, channels=channels,
                            num_levels=sum(1 for s in self.grid if s > 0)):
            self.sample = None

    def _channel_dim(self, out: torch.Tensor) -> int:
        """The layer's channel dim, or 0 for a conv run on an unbatched input (output (C, *spatial))."""
        spatial = getattr(self.runner, 'kernel_size', None)
        unbatched = isinstance(self.runner, nn.modules.conv._ConvNd) and out.dim() == len(spatial) + 1
        return 0 if unbatched else self.layer.channel_dim

    def _pool_gram(self, args: tuple, kwargs: dict, output: Any) -> bool:
        dense = tensors_in(output)[0]
        rows = dense.numel() // max(1, dense.shape[self._channel_dim(dense)])
        try:
            if self.plan.gram is not None and self.patches.count + rows > self.plan.index.shape[2]:
                if not self.checked:
                    self._check(*next(iter(self.plan.chunks(args, kwargs, output))))
                self.patches.add_gram(*self.plan.gram(args, kwargs, output))
            else:
                for patches, out in self.plan.chunks(args, kwargs, output):
                    if not self.checked:
                        self._check(patches, out)
                    self.patches.add(patches)
        except NotAffine as err:
            if self.patches.count:
                raise RuntimeError(f'layer {self.layer.name!r}: {err} after earlier calls were affine') from err
            warnings.warn(f'layer {self.layer.name!r}: {err}; its local regulariser is measured level by level')
            self.plan = None
            return False
        self._add_dense(dense)
        return True

    def _pool_sample(self, args: tuple, kwargs: dict, output: Any) -> bool:
        """Sampled mode: keep each patch row with probability min(1, c |P_n|^2), c set on the first call so that
        about ``sample.rows`` rows are kept over the calibration batches (sampled_levels.py)."""
        dense = tensors_in(output)[0]
        by_row = dense.detach().movedim(self._channel_dim(dense), -1)  # a view: rows in the patches' order
        num_rows = by_row.numel() // max(1, by_row.shape[-1])
        try:
            found = patch_rows(self.runner, args, kwargs, output)
            norms, gather = found if found is not None else self._chunk_rows(args, kwargs, output)
            if norms.numel() != num_rows:
                raise RuntimeError(f'layer {self.layer.name!r}: {norms.numel()} patch rows for {num_rows} '
                                   'output rows')
            if not self.checked:
                first = torch.arange(min(CHECK_ROWS, num_rows))
                self._check(gather(first), by_row[torch.unravel_index(first, by_row.shape[:-1])])
        except NotAffine as err:
            if self.sampled:
                raise RuntimeError(f'layer {self.layer.name!r}: {err} after earlier calls were affine') from err
            warnings.warn(f'layer {self.layer.name!r}: {err}; its local regulariser is measured level by level')
            self.plan = None
            return False
        if self.rate is None:
            mass = float(norms.double().sum())
            if norms.numel() * self.num_batches <= self.sample.rows:
                self.rate = math.inf  # few rows: keep every one (then the sums are exact)
            else:
                self.rate = self.sample.rows / (mass * self.num_batches) if mass > 0 else 0.0
        prob = (self.rate * norms.double()).clamp(max=1.0) if math.isfinite(self.rate) else (norms > 0).double()
        keep = (torch.rand(prob.shape, generator=self.gen, dtype=torch.float64) < prob).nonzero()[:, 0]
        if keep.numel():
            self.sampled.append(gather(keep).detach())  # in the output's precision (sampled_level_sums casts)
            self.row_weight.append(1.0 / prob[keep])
            self.sampled_out.append(by_row[torch.unravel_index(keep, by_row.shape[:-1])])
        self._add_dense(dense)
        return True

    def _chunk_rows(self, args: tuple, kwargs: dict, output: Any):
        """(norms, gather) from the patch chunks themselves, for runners patch_rows.py does not cover."""
        rows = torch.cat([patches.detach() for patches, _ in self.plan.chunks(args, kwargs, output)], 1)
        return rows.float().square().sum((0, 2)), lambda idx: rows[:, idx]

    def _add_dense(self, dense: torch.Tensor) -> None:
        """Exact per-channel sum and sum of squares of the dense output (:func:`channel_sums`; accumulated in float64
        on the exact route and for a layer that keeps every row: their pruned sums are these minus terms that can
        nearly cancel them)."""
        out = dense.detach()
        channel = self._channel_dim(out) % out.dim()
        few_rows = self.rate is not None and math.isinf(self.rate)  # every row kept: small, and maybe exact
        sums = channel_sums(out, channel, precise=self.sample is None or few_rows)
        self.dense = sums if self.dense is None else self.dense + sums
        self.n += out.numel() // max(1, out.shape[channel])

    def _check(self, patches: torch.Tensor, out: torch.Tensor) -> None:
        weight, bias = self.plan.weight(self.weight), self.plan.bias
        patches, out = patches[:, :CHECK_ROWS], out[:CHECK_ROWS]
        # in the output's precision where that is float32 or better (rounding ~1e-6, 100x inside the tolerance)
        work = torch.float64 if out.dtype == torch.float64 else torch.float32
        rec = torch.einsum('gnj,gcj->ngc', patches.to(work), weight.to(work)).reshape(out.shape)
        rec = rec if bias is None else rec + bias.to(work)
        scale = float(out.detach().abs().max()) if out.numel() else 0.0
        if not torch.allclose(rec, out.to(work), rtol=1e-4, atol=1e-5 * scale + 1e-12):
            raise NotAffine(f'{type(self.runner).__name__} output is not P W^T + b of its patches')
        self.checked = True

    def _sampled_sums(self, weight: torch.Tensor, bias: torch.Tensor, rank: torch.Tensor,
                      counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_q, ss_q) of every level from the kept rows and the exact dense sums (sampled_levels.py)."""
        groups, per_group, dim = weight.shape
        rows = torch.cat(self.sampled, 1) if self.sampled else weight.new_zeros(groups, 0, dim)
        row_weight = torch.cat(self.row_weight) if self.row_weight else torch.zeros(0, dtype=torch.float64)
        outputs = torch.cat(self.sampled_out) if self.sampled_out else weight.new_zeros(0, groups * per_group)
        pruned_levels = sum(c > 0 for c in counts)
        levels = exact_level_count(self.sample, rows=self.n, kept=rows.shape[1], weights=self.weight.numel(),
                                   num_levels=pruned_levels)
        precise = self.rate is not None and math.isinf(self.rate) and levels >= pruned_levels  # = the exact route
        part = [slice(g * per_group, (g + 1) * per_group) for g in range(groups)]
        terms = [sampled_level_sums(rows[g], row_weight, outputs=outputs[:, part[g]], weight=weight[g],
                                    bias=bias[part[g]], rank=rank[g], counts=counts, levels=levels, numel=self.weight.numel(), n=self.n,
                                    dense=self.dense[:, part[g]], precise=precise) for g in range(groups)]
        return torch.cat([t[0] for t in terms], 1), torch.cat([t[1] for t in terms], 1)

    def finish(self) -> Sequence[MomentAccumulator]:
        """One accumulator per grid level (empty, i.e. R = 0, at sparsity 0)."""
        if self.calls == 0:
            warnings.warn(f'layer {self.layer.name!r}: its module {self.layer.runner!r} never ran on the calibration '
                          'data; its local regulariser is 0')
        if self.plan is None or self.dense is None:
            return self.levels
        rank = torch.empty_like(self.order)
        rank[self.order] = torch.arange(self.order.numel())
        rank = rank[self.plan.index]
        weight = self.plan.weight(self.weight)
        bias = self.plan.bias if self.plan.bias is not None else weight.new_zeros(weight.shape[0] * weight.shape[1])
        counts = [int(round(s * self.weight.numel())) for s in self.grid]
        s_p, ss_p = self.dense
        if self.sample is None:
            lin, cross, quad = layer_level_sums(self.patches, weight=weight, bias=bias, rank=rank, counts=counts)
            s_q, ss_q = s_p - lin, ss_p - 2 * cross + quad
        else:
            s_q, ss_q = self._sampled_sums(weight, bias, rank, counts)
        # a channel that loses all its weights outputs its bias: exact sums (its steep LSI term would magnify the
        # rounding of the sums above)
        dead = rank.reshape(-1, rank.shape[-1]).amax(1) < torch.as_tensor(counts)[:, None]
        b = bias.double().expand_as(s_q)
        s_q, ss_q = torch.where(dead, self.n * b, s_q), torch.where(dead, self.n * b * b, ss_q)
        return LevelMoments(self.n, s_p, ss_p, s_q, ss_q, used=[s > 0 for s in self.grid])


def local_lsi_moments(model: nn.Module, layers: Sequence[PrunableLayer], grid: Sequence[float],
                      batches: Sequence[Any], forward_fn: Callable[[nn.Module, Any], Any],
                      progress: Callable[[int], None] | None = None, *,
                      use_gram: bool = True, sample: SampledR | None = None,
                      stop_at: Sequence[Tap] = ()) -> list[list[MomentAccumulator]]:
    """[L][K] pooled moments of each layer's dense and pruned output (``use_gram=False``: every layer per level;
    ``sample``: affine layers from a sample of their rows, sampled_levels.py; ``stop_at``: taps after whose
    outputs, once every layer has run, the pass stops; input taps are ignored)."""
    modules = module_index(model)
    probes = [_LayerProbe(model, layer, grid, use_gram, sample, len(batches), modules) for layer in layers]
    busy = [False]
    ran: set[int] = set()  # probes called in the current pass
    fired: set[str] = set()  # output taps out in the current pass

    def guarded(index: int, probe: _LayerProbe):
        def hook(module, args, kwargs, output):
            if busy[0]:  # a call made by a probe (per level, or the attention's identity call)
                return
            busy[0] = True
            try:
                probe(module, args, kwargs, output)
            finally:
                busy[0] = False
            ran.add(index)
        return hook
    handles = [p.runner.register_forward_hook(guarded(i, p), with_kwargs=True) for i, p in enumerate(probes)]
    handles += _stop_hooks(model, stop_at, modules, busy, ran, fired, len(probes))  # after the probes': they fire last
    try:
        with torch.no_grad():
            for batch in batches:
                ran.clear()
                fired.clear()
                try:
                    forward_fn(model, batch)
                except StopForward:
                    pass
                if progress is not None:
                    progress(1)
    finally:
        for h in handles:
            h.remove()
    moments = []
    with torch.no_grad():
        for probe in probes:
            moments.append(probe.finish())
            if progress is not None:
                progress(1)
    return moments


def _stop_hooks(model: nn.Module, taps: Sequence[Tap], modules: dict[str, nn.Module], busy: list[bool],
                ran: set[int], fired: set[str], num_probes: int) -> list[Any]:
    """Hooks that raise :class:`StopForward` once every output tap has fired in a pass and every probe has run
    (a layer that never runs keeps the pass going to its end: nothing is cut short)."""
    outputs = list(dict.fromkeys(tap.module for tap in taps if tap.io == 'output'))

    def stop_hook(name: str):
        def hook(module, args, output):
            if busy[0]:
                return
            fired.add(name)
            if len(fired) == len(outputs) and len(ran) == num_probes:
                raise StopForward
        return hook
    return [module_by_name(model, name, modules).register_forward_hook(stop_hook(name)) for name in outputs]


def local_lsi_curves(model: nn.Module, layers: Sequence[PrunableLayer], grid: Sequence[float],
                     batches: Sequence[Any], forward_fn: Callable[[nn.Module, Any], Any],
                     progress: Callable[[int], None] | None = None, sample: SampledR | None = None,
                     stop_at: Sequence[Tap] = ()) -> np.ndarray:
    """[L, K] array: channel-mean LSI-KL bound of each layer's output at each grid level (column 0 is 0)."""
    moments = local_lsi_moments(model, layers, grid, batches, forward_fn, progress, sample=sample, stop_at=stop_at)
    return np.array([layer_curve(row) for row in moments], dtype=np.float64).reshape(len(moments), len(grid))


def layer_curve(row: Sequence[MomentAccumulator]) -> list[float]:
    """R at every level of one layer: the levels that pooled the same dense sums (the Gram and sampled routes) in
    one batched call, any others one by one."""
    if isinstance(row, LevelMoments):
        return row.kl_bounds()
    used = [k for k, acc in enumerate(row) if acc.n > 0]
    out = [0.0] * len(row)
    if not used:
        return out
    first = row[used[0]]
    if all(row[k].n == first.n and torch.equal(row[k].s_p, first.s_p) and torch.equal(row[k].ss_p, first.ss_p)
           for k in used):
        values = pooled_kl_bounds(first.n, first.s_p, first.ss_p, torch.stack([row[k].s_q for k in used]),
                                  torch.stack([row[k].ss_q for k in used]))
        for k, v in zip(used, values.tolist()):
            out[k] = v
        return out
    return [acc.kl_bound() for acc in row]
