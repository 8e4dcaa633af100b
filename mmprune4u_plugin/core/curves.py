"""Per-layer distortion curves: measure (exact or fisher), validate, combine into DP costs, save and load.

C_l(s) = D_l(s) + beta * R_l(s) (DESIGN.md §1): D is the normalised task distortion, R the LSI regulariser, either
layer-local (each layer's own output channels) or downstream (sum_m w_m J_m at each modality's tap).

Scale of R. Both forms are channel-mean KL bounds (dimensionless, scale-free), so every layer of every modality is
already on one scale; the modality weights w_m then express preference between groups. One global factor puts R on
D's scale where the allocation is decided: at the grid level s* nearest the target sparsity,
median_l(R_l(s*)) * c = median_l(D_l(s*)), so beta = 1 means D and R weigh alike around the target. A per-modality
normaliser would not do: it would shrink the R of the group that pruning distorts most, and a growing beta would
then send sparsity to exactly that group. Medians, not means: at high levels killed channels make a few layers' R
large (finite, see core/lsi.py), and a mean would be dominated by them.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from torch import nn

from .estimate_exact import exact_curves
from .estimate_fisher import fisher_curves
from .layers import PrunableLayer, get_weight
from .local_lsi import local_lsi_curves
from .memo import DEFAULT_MEMO_DEPTH
from .sampled_levels import SampledR
from .taps import Tap


class Estimator(StrEnum):
    EXACT = 'exact'
    FISHER = 'fisher'


class RegulariserForm(StrEnum):
    LOCAL = 'local'
    DOWNSTREAM = 'downstream'


DEFAULT_GRID = tuple(round(0.01 * i, 2) for i in range(100))


@dataclass
class DistortionCurves:
    """Curves of every layer on a common sparsity grid (rows follow ``names``)."""

    names: list[str]
    modalities: list[str]
    numels: list[int]
    grid: np.ndarray
    task: np.ndarray
    local: np.ndarray
    downstream: dict[str, np.ndarray] = field(default_factory=dict)
    estimator: str = Estimator.EXACT
    stats: dict[str, Any] = field(default_factory=dict)
    source: str = ''  # what the curves were measured on (e.g. a weights fingerprint); '' = unknown

    def __post_init__(self) -> None:
        self.grid = np.asarray(self.grid, dtype=np.float64)
        shape = (len(self.names), len(self.grid))
        arrays = {'task': self.task, 'local': self.local, **{f'downstream[{m}]': a for m, a in self.downstream.items()}}
        for label, arr in arrays.items():
            if np.shape(arr) != shape:
                raise ValueError(f'curve array {label} has shape {np.shape(arr)}, expected {shape}')
            bad = np.argwhere(~np.isfinite(np.asarray(arr, dtype=np.float64)))
            if bad.size:
                li, k = bad[0]
                raise ValueError(f'{label} curve of layer {self.names[li]!r} is not finite at sparsity '
                                 f'{self.grid[k]}: {arr[li, k]}')

    def raw_regulariser(self, form: str = RegulariserForm.LOCAL,
                        modality_weights: Mapping[str, float] | None = None) -> np.ndarray:
        """[L, K] regulariser before scaling: w_m * local KL bound of each layer (weighted by the layer's modality),
        or sum_m w_m J_m for the downstream form."""
        weights = dict(modality_weights or {})
        if RegulariserForm(form) is RegulariserForm.DOWNSTREAM:
            if not self.downstream:
                raise ValueError('downstream regulariser needs modality taps measured with the exact estimator')
            return sum(weights.get(m, 1.0) * arr for m, arr in self.downstream.items())
        per_layer = np.array([weights.get(m, 1.0) for m in self.modalities], dtype=np.float64)
        return self.local * per_layer[:, None]

    def scale_level(self, target: float) -> int:
        """Index of the grid level nearest ``target`` (ties to the higher level)."""
        if not 0.0 <= target < 1.0:
            raise ValueError(f'`target` must be in [0, 1), but got target: {target}')
        return int(len(self.grid) - 1 - np.argmin(np.abs(self.grid[::-1] - target)))

    def regulariser_scale(self, target: float, form: str = RegulariserForm.LOCAL,
                          modality_weights: Mapping[str, float] | None = None) -> float:
        """c = median_l D_l(s*) / median_l R_l(s*) at the level s* nearest ``target`` (see module docstring)."""
        k = self.scale_level(target)
        k = k if k > 0 else min(1, len(self.grid) - 1)  # level 0 is the dense point: both curves are 0 there
        reg = self.raw_regulariser(form, modality_weights)[:, k]
        d_mid, r_mid = _robust_level(self.task[:, k]), _robust_level(reg)
        if r_mid <= 0:
            raise ValueError(f'the regulariser is zero for every layer at sparsity {self.grid[k]}: nothing to weigh')
        return (d_mid if d_mid > 0 else 1.0) / r_mid

    def regulariser(self, form: str = RegulariserForm.LOCAL, modality_weights: Mapping[str, float] | None = None,
                    *, target: float) -> np.ndarray:
        """[L, K] regulariser R on D's scale at ``target`` (see module docstring)."""
        return self.raw_regulariser(form, modality_weights) * self.regulariser_scale(target, form, modality_weights)

    def cost(self, beta: float = 0.0, form: str = RegulariserForm.LOCAL,
             modality_weights: Mapping[str, float] | None = None, *, target: float | None = None) -> np.ndarray:
        """C = D + beta * R; ``beta=0`` is the RD allocator's cost. ``target`` (the sparsity being allocated) sets
        R's scale and is needed when ``beta > 0``."""
        if beta < 0:
            raise ValueError(f'`beta` must be >= 0, but got beta: {beta}')
        if beta == 0:
            return self.task
        if target is None:
            raise ValueError('`target` (the sparsity being allocated) is needed to scale the regulariser')
        return self.task + beta * self.regulariser(form, modality_weights, target=target)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` holding the arrays and a json header (for the curve cache)."""
        meta = {'names': self.names, 'modalities': self.modalities, 'numels': [int(n) for n in self.numels],
                'estimator': str(self.estimator), 'stats': self.stats, 'downstream': sorted(self.downstream),
                'source': self.source}
        arrays = {f'downstream__{m}': a for m, a in self.downstream.items()}
        np.savez(Path(path), meta=np.array(json.dumps(meta)), grid=self.grid, task=self.task, local=self.local,
                 **arrays)

    @classmethod
    def load(cls, path: str | Path) -> 'DistortionCurves':
        if not Path(path).is_file():
            raise FileNotFoundError(f'curve cache {path} does not exist')
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data['meta']))
            return cls(meta['names'], meta['modalities'], meta['numels'], data['grid'], data['task'],
                       data['local'], {m: data[f'downstream__{m}'] for m in meta['downstream']},
                       meta['estimator'], meta['stats'], meta.get('source', ''))

    def matches(self, layers: Sequence[PrunableLayer], grid: Sequence[float], source: str | None = None) -> bool:
        """True when the curves were measured for these layers (names and sizes) on this grid, and, when ``source``
        is given, on that source (a cache measured on other weights must not be reused)."""
        same_grid = len(self.grid) == len(grid) and np.allclose(self.grid, np.asarray(grid, dtype=np.float64))
        return (self.names == [lay.name for lay in layers] and list(self.numels) == [lay.numel for lay in layers]
                and same_grid and (source is None or self.source == source))


def _robust_level(values: np.ndarray) -> float:
    """Median of the positive entries (layers that pruning cannot distort at all do not set the scale)."""
    positive = values[values > 0]
    return float(np.median(positive)) if positive.size else 0.0


def validate_grid(grid: Sequence[float]) -> np.ndarray:
    """Sorted unique levels in [0, 1) that start at 0."""
    arr = np.asarray(grid, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2 or arr[0] != 0 or np.any(np.diff(arr) <= 0) or arr[-1] >= 1:
        raise ValueError(f'`grid` must be increasing levels in [0, 1) starting at 0, but got grid: {list(grid)[:8]}')
    return arr


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run a block with ``model.eval()``, then restore every module's own training flag (``norm_eval`` BNs stay
    in eval mode, which ``model.train(True)`` alone would not guarantee for every model)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def gradients_enabled(model: nn.Module, layers: Sequence[PrunableLayer]) -> Iterator[None]:
    """Turn on ``requires_grad`` of frozen layer weights (the fisher estimator needs their gradients); restore it."""
    frozen = [w for w in (get_weight(model, lay) for lay in layers) if not w.requires_grad]
    for w in frozen:
        w.requires_grad_(True)
    try:
        yield
    finally:
        for w in frozen:
            w.requires_grad_(False)
            w.grad = None


def measure_curves(model: nn.Module, layers: Sequence[PrunableLayer], batches: Sequence[Any],
                   forward_fn: Callable[[nn.Module, Any], Any], *, task_taps: Sequence[Tap],
                   modality_taps: Mapping[str, Tap] | None = None, grid: Sequence[float] = DEFAULT_GRID,
                   estimator: str = Estimator.EXACT, num_probes: int = 8, memoise: bool = True,
                   memo_depth: int = DEFAULT_MEMO_DEPTH,
                   local_r: SampledR = SampledR(),
                   progress: Callable[[str, int], Callable[[int], None]] | None = None) -> DistortionCurves:
    """Measure the curves of ``layers`` in eval mode on the calibration ``batches`` (weights are left unchanged).

    ``local_r`` says how the layer-local regulariser is measured (exact, sampled or per layer, sampled_levels.py).

    ``progress(description, total)`` may return a callback advanced once per unit of work.
    """
    if len(batches) == 0:
        raise ValueError('calibration data is empty: `batches` has no batch')
    if not task_taps:
        raise ValueError('`task_taps` must name at least one tap')
    grid_arr = validate_grid(grid)
    est = Estimator(estimator)
    n_levels = int((grid_arr > 0).sum())
    tick = progress or (lambda desc, total: None)
    with eval_mode(model):
        if est is Estimator.EXACT:
            task, down, stats = exact_curves(model, layers, grid_arr, batches, forward_fn, task_taps=task_taps,
                                             modality_taps=dict(modality_taps or {}), memoise=memoise,
                                             memo_depth=memo_depth,
                                             progress=tick('exact curves', len(layers) * n_levels))
        else:
            with gradients_enabled(model, layers):
                task, stats = fisher_curves(model, layers, grid_arr, batches, forward_fn, task_taps=task_taps,
                                            num_probes=num_probes, progress=tick('fisher curves', len(batches)))
            down = {}
        local = local_lsi_curves(model, layers, grid_arr, batches, forward_fn,
                                 progress=tick('layer-local LSI', len(batches) + len(layers)), sample=local_r,
                                 stop_at=task_taps)
    return DistortionCurves([lay.name for lay in layers], [lay.modality for lay in layers],
                            [lay.numel for lay in layers], grid_arr, task, local, down, est, stats)
