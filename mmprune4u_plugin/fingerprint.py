"""Content digests that key cached results (curve caches, tool stages, benchmark cells) on what they depend on.

Pure Python + PyTorch: a stale result must never be reused, so keys hash contents (weights, buffers, calibration
batches, configs, the plugin's own source), not names or modification times.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ['content_digest', 'file_digest', 'plugin_version', 'update_digest']


def update_digest(sha: 'hashlib._Hash', obj: Any) -> None:
    """Feed the content of ``obj`` (tensors, arrays, mappings, sequences, data elements, scalars) into ``sha``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        shape = tuple(obj.shape)
        sha.update(f'T{shape}{t.dtype}'.encode())
        if t.numel():
            sha.update((t.view(torch.uint8) if t.dtype != torch.bool else t.to(torch.uint8)).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        sha.update(f'A{obj.shape}{obj.dtype}'.encode())
        sha.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            sha.update(f'K{key!s}'.encode())
            update_digest(sha, obj[key])
    elif isinstance(obj, (list, tuple)):
        sha.update(f'L{len(obj)}'.encode())
        for item in obj:
            update_digest(sha, item)
    elif hasattr(obj, 'features') and hasattr(obj, 'indices'):  # spconv SparseConvTensor
        update_digest(sha, [obj.features, obj.indices, list(getattr(obj, 'spatial_shape', []))])
    elif hasattr(obj, 'to_dict') and callable(obj.to_dict):  # mmengine data elements (metainfo + data fields)
        update_digest(sha, obj.to_dict())
    elif hasattr(obj, 'tensor') and isinstance(getattr(obj, 'tensor'), torch.Tensor):  # mmdet3d boxes / points
        update_digest(sha, [type(obj).__name__, obj.tensor])
    else:
        sha.update(f'V{type(obj).__name__}:{obj!r}'.encode())


def content_digest(*objs: Any) -> str:
    """SHA-1 hex digest of the contents of ``objs``."""
    sha = hashlib.sha1()
    for obj in objs:
        update_digest(sha, obj)
    return sha.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-1 of a file's bytes."""
    sha = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha.update(chunk)
    return sha.hexdigest()


@functools.lru_cache(maxsize=1)
def plugin_version(part: str = '') -> str:
    """``<__version__>+<digest of the plugin's source files>``: changes whenever the plugin's code changes
    (``part``: only the files below that sub-package, e.g. ``'datasets'`` for what the synthetic data depends on)."""
    from . import __version__
    root = Path(__file__).resolve().parent
    sha = hashlib.sha1()
    for path in sorted((root / part).rglob('*.py')):
        sha.update(str(path.relative_to(root)).encode())
        sha.update(path.read_bytes())
    return f'{__version__}+{sha.hexdigest()[:12]}'
