"""Find the prunable weights of a model, select them by name patterns and group them by modality.

Prunable: the weights of Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear, spconv sparse convolutions (SubMConv3d,
SparseConv3d, SparseInverseConv3d: 5-D weights) and nn.MultiheadAttention (``in_proj_weight``; its ``out_proj`` is a
Linear). Biases and normalisation layers are never pruned. Names are parameter fqns with any DDP ``module.`` prefix
removed, so the same config and masks work on a wrapped and an unwrapped model.
"""
from __future__ import annotations

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
        channel_dim: Dimension of the module's output that holds channels (1 for convs, -1 for linear and sparse).
    """

    name: str
    module_name: str
    param_name: str
    kind: str
    shape: tuple[int, ...]
    modality: str = OTHER_MODALITY
    channel_dim: int = 1

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
    for mod_name, module in model.named_modules():
        for attr, channel_dim in _weights_of(module):
            weight = getattr(module, attr)
            if not isinstance(weight, torch.Tensor) or id(weight) in seen:
                continue
            seen.add(id(weight))
            cname = canonical_name(f'{mod_name}.{attr}' if mod_name else attr)
            found.append(PrunableLayer(cname, canonical_name(mod_name), attr, type(module).__name__,
                                       tuple(weight.shape), OTHER_MODALITY, channel_dim))
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
            return PrunableLayer(layer.name, layer.module_name, layer.param_name, layer.kind, layer.shape, group,
                                 layer.channel_dim)
    return layer


def module_by_name(model: nn.Module, name: str) -> nn.Module:
    """The submodule with canonical ``name`` (with or without a wrapper's ``module.`` prefix)."""
    name = canonical_name(name)
    modules = {canonical_name(n): m for n, m in model.named_modules()}
    if name not in modules:
        raise ValueError(f'model has no module named {name!r}')
    return modules[name]


def get_weight(model: nn.Module, layer: PrunableLayer) -> torch.Tensor:
    """The weight parameter of ``layer`` in ``model``."""
    return getattr(module_by_name(model, layer.module_name), layer.param_name)


def weights_fingerprint(model: nn.Module, layers: Sequence[PrunableLayer]) -> str:
    """SHA-1 of the layers' names, shapes and weight bytes: tells whether cached curves belong to these weights."""
    sha = hashlib.sha1()
    for lay in layers:
        weight = get_weight(model, lay).detach().cpu().contiguous()
        sha.update(f'{lay.name}:{tuple(weight.shape)}:{weight.dtype}'.encode())
        sha.update(weight.view(torch.uint8).numpy().tobytes() if weight.numel() else b'')
    return sha.hexdigest()
