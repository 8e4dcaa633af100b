"""Content digests that key cached results (curve caches, tool stages, benchmark cells) on what they depend on.

Pure Python + PyTorch: a stale result must never be reused, so keys hash contents (weights, buffers, calibration
batches, configs, the plugin's own source), not names or modification times.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ['MODEL_CODE', 'content_digest', 'file_digest', 'plugin_files', 'plugin_version', 'update_digest',
           'weights_digest']


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


def weights_digest(path: str | Path) -> str:
    """SHA-1 of a checkpoint's weights: the names, dtypes, shapes and values of its ``state_dict`` (or of the file's
    top-level tensors when it has none).

    A checkpoint file's bytes also hold the time it was saved, the optimizer and the message hub: the same weights
    trained again have another file digest but this one. A file that holds no tensor is refused (not a checkpoint).
    """
    ckpt = torch.load(str(path), map_location='cpu', weights_only=False)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ValueError(f'{path} holds no weights (neither a state_dict nor top-level tensors)')
    return content_digest(tensors)


# What a dense model's training and evaluation depend on: the models, the data, the CPU shims, the metric and the
# package's registrations (the sparsity report hook only logs). Not core/ nor the pruning hook: editing the pruner
# must not make a resumable benchmark retrain its dense model.
MODEL_CODE = ('__init__.py', 'models', 'datasets', 'compat', 'evaluation', 'runner_guard.py',
              'hooks/sparsity_report.py')


def plugin_files(part: str | Sequence[str] = '') -> list[Path]:
    """The plugin's source files below ``part`` (a sub-package or file, relative to the package; a sequence of them;
    ``''``: all), sorted."""
    root = Path(__file__).resolve().parent
    files = set()
    for name in [part] if isinstance(part, str) else list(part):
        target = root / name
        if target.is_file():
            files.add(target)
        elif target.is_dir():
            files.update(target.rglob('*.py'))
        else:
            raise FileNotFoundError(f'{target} is neither a file nor a directory of the plugin')
    return sorted(files)


def plugin_version(part: str | Sequence[str] = '') -> str:
    """``<__version__>+<digest of the plugin's source files>``: changes whenever the plugin's code changes
    (``part``: only :func:`plugin_files` of it, e.g. ``'datasets'`` for what the synthetic data depends on,
    :data:`MODEL_CODE` for a dense model). Computed once per process and part: the code a process runs is the code
    it loaded."""
    return _plugin_version((part,) if isinstance(part, str) else tuple(part))


@functools.lru_cache(maxsize=16)
def _plugin_version(parts: tuple[str, ...]) -> str:
    from . import __version__
    root = Path(__file__).resolve().parent
    sha = hashlib.sha1()
    for path in plugin_files(parts):
        sha.update(str(path.relative_to(root)).encode())
        sha.update(path.read_bytes())
    return f'{__version__}+{sha.hexdigest()[:12]}'
