"""Static validation of MMPrune4UHook arguments (no runner needed): each error names the arg and its value."""
from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any, Mapping

from ..core.allocation import AllocatorName
from ..core.curves import Estimator, RegulariserForm, validate_grid
from ..core.sampled_levels import SampledR
from ..core.schedule import Schedule, round_targets
from ..core.taps import Tap


class LSIReference(StrEnum):
    TEACHER = 'teacher'
    DENSE_STATS = 'dense_stats'


def check_choice(arg: str, value: Any, enum_cls) -> str:
    try:
        return enum_cls(value).value
    except ValueError:
        raise ValueError(f'`{arg}` must be one of {[e.value for e in enum_cls]}, but got {arg}: {value!r}') from None


def parse_tap(label: str, spec: Any) -> Tap:
    """``'img_neck'`` or ``dict(module='img_neck', io='output', channel_dim=1)``."""
    if isinstance(spec, str):
        return Tap(spec)
    if isinstance(spec, Mapping) and 'module' in spec and set(spec) <= {'module', 'io', 'channel_dim'}:
        return Tap(spec['module'], spec.get('io', 'output'), int(spec.get('channel_dim', 1)))
    raise ValueError(f'`taps[{label!r}]` must be a module name or dict(module=..., io=..., channel_dim=...), '
                     f'but got {spec!r}')


def parse_taps(taps: Mapping[str, Any] | None) -> tuple[list[Tap] | None, dict[str, Tap]]:
    """(task taps or None for the default, modality taps) from the ``taps`` config."""
    taps = dict(taps or {})
    task = taps.pop('task', None)
    if task is not None:
        task = [parse_tap('task', t) for t in (task if isinstance(task, (list, tuple)) else [task])]
        if not task:
            raise ValueError('`taps["task"]` must name at least one tap')
    return task, {m: parse_tap(m, spec) for m, spec in taps.items()}


def parse_local_r(spec: Any) -> SampledR:
    """``'auto'`` / ``'exact'`` / ``'sampled'``, or ``dict(mode=..., rows=..., levels=..., share=..., seed=...)``."""
    if isinstance(spec, str):
        return SampledR(mode=spec)
    fields = {f.name for f in dataclasses.fields(SampledR)}
    if isinstance(spec, Mapping) and set(spec) <= fields:
        return SampledR(**spec)
    raise ValueError(f"`local_r` must be 'auto', 'exact', 'sampled' or a dict with keys from {sorted(fields)}, "
                     f'but got local_r: {spec!r}')


def validate_static(args: Mapping[str, Any]) -> None:
    """Everything about the hook's arguments that can be checked without a model."""
    s = args['sparsity']
    if not isinstance(s, (int, float)) or not 0.0 < float(s) < 1.0:
        raise ValueError(f'`sparsity` must be in (0, 1) (0 prunes nothing), but got sparsity: {s}')
    check_choice('allocator', args['allocator'], AllocatorName)
    check_choice('estimator', args['estimator'], Estimator)
    check_choice('regulariser', args['regulariser'], RegulariserForm)
    check_choice('schedule', args['schedule'], Schedule)
    check_choice('lsi_reference', args['lsi_reference'], LSIReference)
    round_targets(float(s), rounds=args['rounds'], schedule=args['schedule'])
    if args['rounds'] > 1 and (args['interval'] is None or args['interval'] < 1):
        raise ValueError(f'`interval` (iterations or epochs between rounds) must be >= 1 with {args["rounds"]} rounds, '
                         f'but got interval: {args["interval"]}')
    if args['beta'] < 0:
        raise ValueError(f'`beta` must be >= 0, but got beta: {args["beta"]}')
    if args['calib_batches'] < 1:
        raise ValueError(f'`calib_batches` must be >= 1, but got calib_batches: {args["calib_batches"]}')
    if not isinstance(args['memo_depth'], int) or isinstance(args['memo_depth'], bool) or args['memo_depth'] < 1:
        raise ValueError(f'`memo_depth` must be an integer >= 1, but got memo_depth: {args["memo_depth"]!r}')
    if args['grid'] is not None:
        validate_grid(args['grid'])
    for m, b in dict(args['modality_budgets'] or {}).items():
        if not 0.0 <= b < 1.0:
            raise ValueError(f'`modality_budgets[{m!r}]` must be in [0, 1), but got {b}')
    for p, b in dict(args['layer_bounds'] or {}).items():
        if len(b) != 2 or not 0.0 <= b[0] <= b[1] <= 1.0:
            raise ValueError(f'`layer_bounds[{p!r}]` must be (s_min, s_max) with 0 <= s_min <= s_max <= 1, '
                             f'but got {b}')
    parse_taps(args['taps'])
    parse_local_r(args['local_r'])
