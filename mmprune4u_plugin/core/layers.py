"""Find the prunable weights of a model, select them by name patterns and group them by modality.

Prunable: the weights of Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear, spconv sparse convolutions (SubMConv3d,
SparseConv3d, SparseInverseConv3d: 5-D weights) and nn.MultiheadAttention (``in_proj_weight`` and its
``out_proj.weight``). Biases and normalisation layers are never pruned. Names are parameter fqns with any DDP
``module.`` prefix removed, so the same config and masks work on a wrapped and an unwrapped model.

Owner vs runner: a weight belongs to one module (its ``module_name``) but may be used by another module's forward.
``nn.MultiheadAttention`` reads ``out_proj.weight`` inside ``F.multi_head_attention_forward`` and never calls its
``out_proj`` module, so hooks on ``out_proj`` never fire. Each layer therefore also names its ``runner``: the module
whose forward actually uses the weight (the attention module for both ``in_proj_weight`` and ``out_proj.weight``,
the owner itself otherwise). Anything that observes or re-runs "the layer" (the layer-local regulariser, the
memoised forward's dirty set) works at the runner.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

_DENSE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                nn.Linear)
_SPARSE_CONV_BASE = 'SparseConvolution'  # spconv.pytorch.conv.SparseConvolution, matched by name (no import)
OTHER_MODALITY = 'other'


@dataclass(frozen=True)
class PrunableLayer:
    """One prunable weight tensor.

    Attributes:
        name: Canonical parameter name, e.g. ``pts_backbone.blocks.0.0.weight``.
        module_name: Canonical name of the owning module.
        param_name: Attribute of the weight on its module (``weight`` or ``in_proj_weight``).
        kind: Class name of the owning module.
        shape: Weight shape.
        modality: Modality group, ``other`` when no modality pattern matches.
        channel_dim: Dimension of the runner's output that holds channels (1 for convs, -1 for linear, sparse and
            attention).
        runner: Canonical name of the module whose forward uses the weight (``module_name`` when not given).
    """

    name: str
    module_name: str
    param_name: str
    kind: str
    shape: tuple[int, ...]
    modality: str = OTHER_MODALITY
    channel_dim: int = 1
    runner: str | None = None

    def __post_init__(self) -> None:
        if self.runner is None:
            object.__setattr__(self, 'runner', self.module_name)

    @property
    def runner_param(self) -> str:
        """Path of the weight relative to the runner (``weight``, ``in_proj_weight`` or ``out_proj.weight``), as
        ``torch.func.functional_call(runner, {runner_param: w}, ...)`` expects it."""
        if self.runner == self.module_name:
            return self.param_name
        return self.name[len(self.runner) + 1:] if self.runner else self.name

    @property
    def numel(self) -> int:
        """Number of weights."""
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


def canonical_name(name: str) -> str:
    """Strip the ``module.`` prefixes that DDP / model wrappers add."""
    while name.startswith('module.'):
        name = name[len('module.'):]
    return name


def is_sparse_conv(module: nn.Module) -> bool:
    """True for spconv sparse convolutions (checked through the MRO, without importing spconv)."""
    return any(cls.__name__ == _SPARSE_CONV_BASE for cls in type(module).__mro__)


def _weights_of(module: nn.Module) -> list[tuple[str, int]]:
    """(attribute, channel dim of the output) of the prunable weights owned directly by ``module``."""
    if isinstance(module, nn.MultiheadAttention):
        return [('in_proj_weight', -1)] if module.in_proj_weight is not None else []
    if isinstance(module, nn.Linear):
        return [('weight', -1)]
    if isinstance(module, _DENSE_TYPES):
        return [('weight', 1)]
    if is_sparse_conv(module) and isinstance(getattr(module, 'weight', None), nn.Parameter):
        return [('weight', -1)]
    return []


def _attention_runners(model: nn.Module) -> dict[int, str]:
    """id(out_proj module) -> canonical name of the nn.MultiheadAttention that uses its weight without calling it."""
    return {id(module.out_proj): canonical_name(name) for name, module in model.named_modules()
            if isinstance(module, nn.MultiheadAttention) and isinstance(module.out_proj, nn.Linear)}


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, name) for p in patterns)


def _check_patterns(arg: str, patterns: Sequence[str], names: Sequence[str]) -> None:
    for p in patterns:
        try:
            re.compile(p)
        except re.error as err:
            raise ValueError(f'`{arg}` pattern {p!r} is not a valid regular expression: {err}') from err
    unused = [p for p in patterns if not any(re.search(p, n) for n in names)]
    if unused:
        raise ValueError(f'`{arg}` patterns {unused} match no prunable layer; '
                         f'examples of names: {list(names[:5])}')


def find_prunable_layers(model: nn.Module, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
                         modalities: Mapping[str, Sequence[str]] | None = None) -> list[PrunableLayer]:
    """List the prunable weights of ``model`` in module order.

    Args:
        include: Regex patterns (``re.search`` on the canonical weight name); empty means every prunable weight.
        exclude: Regex patterns of weights to leave alone. Applied after ``include``.
        modalities: Modality name -> patterns. A layer belongs to the first group that matches, else ``other``.

    Raises:
        ValueError: a pattern is invalid or matches no prunable weight, or nothing is left to prune.
    """
    found: list[PrunableLayer] = []
    seen: set[int] = set()
    runners = _attention_runners(model)
    for mod_name, module in model.named_modules():
        for attr, channel_dim in _weights_of(module):
            weight = getattr(module, attr)
            if not isinstance(weight, torch.Tensor) or id(weight) in seen:
                continue
            seen.add(id(weight))
            cname = canonical_name(f'{mod_name}.{attr}' if mod_name else attr)
            found.append(PrunableLayer(cname, canonical_name(mod_name), attr, type(module).__name__,
                                       tuple(weight.shape), OTHER_MODALITY, channel_dim,
                                       runners.get(id(module), canonical_name(mod_name))))
    all_names = [layer.name for layer in found]
    if not found:
        raise ValueError(f'model {type(model).__name__} has no prunable weights (Conv, Linear, spconv, attention)')
    _check_patterns('include', include, all_names)
    _check_patterns('exclude', exclude, all_names)
    selected = [lay for lay in found
                if (not include or _matches(lay.name, include)) and not _matches(lay.name, exclude)]
    if not selected:
        raise ValueError(f'no prunable layer left after include={list(include)} and exclude={list(exclude)}')
    if modalities:
        for group, patterns in modalities.items():
            if isinstance(patterns, str):
                raise ValueError(f'`modalities[{group!r}]` must be a list of patterns, but got {patterns!r}')
            _check_patterns(f'modalities[{group!r}]', patterns, [lay.name for lay in selected])
        selected = [_with_modality(lay, modalities) for lay in selected]
    return selected


def _with_modality(layer: PrunableLayer, modalities: Mapping[str, Sequence[str]]) -> PrunableLayer:
    for group, patterns in modalities.items():
        if _matches(layer.name, patterns):
            return dataclasses.replace(layer, modality=group)
    return layer


def module_index(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule by canonical name (look-ups of many layers build it once)."""
    return {canonical_name(n): m for n, m in model.named_modules()}


def module_by_name(model: nn.Module, name: str, modules: dict[str, nn.Module] | None = None) -> nn.Module:
    """The submodule with canonical ``name`` (with or without a wrapper's ``module.`` prefix); ``modules``: a
    :func:`module_index` of ``model``."""
    name = canonical_name(name)
    modules = module_index(model) if modules is None else modules
    if name not in modules:
        raise ValueError(f'model has no module named {name!r}')
    return modules[name]


def get_weight(model: nn.Module, layer: PrunableLayer, modules: dict[str, nn.Module] | None = None) -> torch.Tensor:
    """The weight parameter of ``layer`` in ``model``."""
    return getattr(module_by_name(model, layer.module_name, modules), layer.param_name)


def weights_fingerprint(model: nn.Module, layers: Sequence[PrunableLayer]) -> str:
    """SHA-1 of the layers' names, shapes and weight bytes: tells whether cached curves belong to these weights."""
    sha = hashlib.sha1()
    for lay in layers:
        weight = get_weight(model, lay).detach().cpu().contiguous()
        sha.update(f'{lay.name}:{tuple(weight.shape)}:{weight.dtype}'.encode())
        sha.update(weight.view(torch.uint8).numpy().tobytes() if weight.numel() else b'')
    return sha.hexdigest()
