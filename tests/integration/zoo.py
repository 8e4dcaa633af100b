"""Build shrunk mmdet3d zoo models and their sample data for the integration tests."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get('MMPRUNE4U_SHARED_DATA', REPO.parent / 'shared' / 'data'))


def require_sample(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f'real sample data {path} is absent (it lives in ../shared/data beside the repo in CI)')
    return path


def build_from_config(config: str, split: str = 'train'):
    """(config, model, dataset) for a config under configs/."""
    pytest.importorskip('mmdet3d')
    from mmengine.config import Config

    import mmprune4u_plugin  # noqa: F401  (registers the plugin and applies the CPU shims)
    from mmdet3d.registry import DATASETS, MODELS
    from mmdet3d.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(REPO / 'configs' / config))
    model = MODELS.build(cfg.model)
    loader = cfg.train_dataloader if split == 'train' else cfg.test_dataloader
    dataset_cfg = loader.dataset
    dataset = DATASETS.build(dataset_cfg)
    return cfg, model, dataset


def free_port() -> int:
    """A TCP port free on this machine now (for a torchrun master)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
