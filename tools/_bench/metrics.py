"""The figures a plan reports (its ``metrics``): a primary and a secondary metric, by the names the tables show, with
``keys`` where the evaluator logs them under other names (mmdet3d's SegMetric logs mIoU as ``miou``).

The primary one drives the verdicts, the β choice, the dense model's plateau check and retention under corruption;
both are columns of every table. Pure Python, no OpenMMLab import.
"""
from __future__ import annotations

DEFAULT_METRICS = {'primary': 'NDS', 'secondary': 'mAP'}
METRIC_KEYS = ('primary', 'secondary', 'keys')


def metric_value(metrics: dict, spec: dict, name: str) -> float | None:
    """Figure ``name`` (a name of ``spec``, the plan's ``metrics``) in a result's metrics (by short name, as
    tools/test.py's json and the cells store them): under ``spec['keys'][name]`` where set, else under ``name``."""
    return metrics.get((spec.get('keys') or {}).get(name, name))


def metric_problems(spec) -> list[str]:
    """Everything wrong with a plan's ``metrics``, in words ([] when it is fine)."""
    if not isinstance(spec, dict):
        return [f'it must be a dict, but got metrics: {spec!r}']
    found = [f'unknown key {k!r} (known: {list(METRIC_KEYS)})' for k in spec if k not in METRIC_KEYS]
    for k in ('primary', 'secondary'):
        if not (isinstance(spec.get(k), str) and spec[k]):
            found.append(f'`{k}` must be a metric name, but got {k}: {spec.get(k)!r}')
    if spec.get('primary') is not None and spec.get('primary') == spec.get('secondary'):
        found.append(f'`primary` and `secondary` must differ, but both are {spec["primary"]!r}')
    keys = spec.get('keys') or {}
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        found.append(f'`keys` must map names to the evaluator\'s metric names, but got keys: {keys!r}')
    elif set(keys) - {spec.get('primary'), spec.get('secondary')}:
        found.append(f'`keys` names {sorted(set(keys) - {spec.get("primary"), spec.get("secondary")})}, which are '
                     'neither `primary` nor `secondary`')
    return found
