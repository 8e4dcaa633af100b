"""The configs each cell runs, derived from one model config and the plan; and their content for the cell keys.

Every run is the model config (``--config``) with the plan's ``model_options`` merged in, plus:
  - dense training / evaluation: the MMPrune4UHook entry removed (the plain model);
  - pruning (one-shot or finetuned): the hook entry (the config's own, or the plan's ``hook``) with the method's
    allocator / sparsity / beta / regulariser, the seed's calibration samples and curve cache;
  - evaluation: the plain config with the split's options (the test split is another generated set); under a
    corruption, its test pipeline also holds the corruption preset (``with_corruption``, the plan's corruption seed);
  - a reference model (single-sensor, from ``robustness.references``): its own config with the plan's data options
    (the ``model_options`` on dataloaders and evaluators) and the split's options.
A seed sets ``randomness.seed`` (so the finetuning data order) and the calibration samples: a seeded random subset of
the train set, read through the test pipeline (deterministic: no augmentation), so curves measured once per seed
are reused by every method and sparsity of that seed (the hook's ``curve_cache`` checks their content key).
"""
from __future__ import annotations

import copy
import math
import random
from pathlib import Path
from typing import Any

from .plan import METHODS, Plan

HOOK_TYPE = 'MMPrune4UHook'
DATA_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator')


def hook_location(cfg) -> tuple[str, Any] | None:
    """``('default_hooks', name)`` or ``('custom_hooks', index)`` of the config's MMPrune4UHook entry, or None."""
    for name, hook in (cfg.get('default_hooks') or {}).items():
        if isinstance(hook, dict) and str(hook.get('type', '')).split('.')[-1] == HOOK_TYPE:
            return 'default_hooks', name
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, dict) and str(hook.get('type', '')).split('.')[-1] == HOOK_TYPE:
            return 'custom_hooks', i
    return None


def hook_entry(cfg) -> dict:
    """The config's MMPrune4UHook entry (mutable), created in ``default_hooks`` when absent."""
    where = hook_location(cfg)
    if where is None:
        cfg.default_hooks = dict(cfg.get('default_hooks') or {}, mmprune4u=dict(type=HOOK_TYPE, sparsity=0.5))
        where = ('default_hooks', 'mmprune4u')
    return cfg[where[0]][where[1]]


def without_hook(cfg):
    """A copy of ``cfg`` without its MMPrune4UHook entry (mmengine refuses ``None`` for a non-default hook name)."""
    cfg = copy.deepcopy(cfg)
    where = hook_location(cfg)
    if where is not None:
        if where[0] == 'default_hooks':
            del cfg.default_hooks[where[1]]
        else:
            cfg.custom_hooks = [h for i, h in enumerate(cfg.custom_hooks) if i != where[1]]
    return cfg


def inner_dataset(dataset_cfg: dict) -> dict:
    """The dataset inside wrappers such as RepeatDataset / CBGSDataset / ClassBalancedDataset."""
    while isinstance(dataset_cfg.get('dataset'), dict):
        dataset_cfg = dataset_cfg['dataset']
    if 'datasets' in dataset_cfg:
        raise ValueError('the train set is a ConcatDataset: set the plan\'s `calib.dataset` explicitly')
    return dataset_cfg


def ann_path(dataset_cfg: dict) -> Path:
    """``ann_file`` joined with ``data_root`` (some metrics name the full path already; then it is taken as is)."""
    ann = str(dataset_cfg['ann_file'])
    root = str(dataset_cfg.get('data_root') or '')
    if Path(ann).is_absolute() or not root or (Path(ann).is_file() and not (Path(root) / ann).is_file()):
        return Path(ann)
    return Path(root) / ann


def count_samples(path: Path) -> int:
    """Samples in an mmdet3d 1.x info pkl (``data_list``)."""
    from mmengine.fileio import load
    return len(load(str(path))['data_list'])


class ConfigFactory:
    """Builds every config of the benchmark from the model config and the plan."""

    def __init__(self, plan: Plan, config_path: str, work_dir: Path) -> None:
        from mmengine.config import Config
        self.plan, self.work = plan, Path(work_dir)
        base = Config.fromfile(config_path)
        if plan.model_options:
            base.merge_from_dict(dict(plan.model_options))
        if plan.hook:
            entry = hook_entry(base)
            for k, v in plan.hook.items():
                entry[k] = copy.deepcopy(v)
        self.base = base
        self._num_train: int | None = None

    # ------------------------------------------------------------------------------------------------ pieces
    def hook_args(self) -> dict:
        """The hook entry's own settings (modalities, include / exclude) as plain data."""
        entry = hook_entry(copy.deepcopy(self.base))
        return {k: copy.deepcopy(entry.get(k)) for k in ('modalities', 'include', 'exclude', 'taps', 'grid')}

    def calib_indices(self, seed: int) -> list[int]:
        """The seed's calibration samples: a seeded random subset of the train set."""
        if self._num_train is None:
            self._num_train = count_samples(ann_path(inner_dataset(self.base.train_dataloader.dataset)))
        k = int(self.plan.calib['samples'])
        if not 0 < k <= self._num_train:
            raise ValueError(f'`calib.samples` must be in [1, {self._num_train}], but got {k}')
        return sorted(random.Random(f'calib-{seed}').sample(range(self._num_train), k))

    def calib_dataloader(self, seed: int) -> dict:
        train = self.base.train_dataloader
        dataset = copy.deepcopy(inner_dataset(train.dataset))
        dataset.update(pipeline=copy.deepcopy(self.base.test_dataloader.dataset.pipeline), test_mode=True,
                       indices=self.calib_indices(seed))
        loader = dict(batch_size=int(self.plan.calib['batch_size']), num_workers=0, persistent_workers=False,
                      dataset=dataset)
        if train.get('collate_fn') is not None:
            loader['collate_fn'] = copy.deepcopy(train.collate_fn)
        return loader

    # ------------------------------------------------------------------------------------------------ configs
    def plain(self):
        return without_hook(self.base)

    def dense_train(self):
        cfg = self.plain()
        cfg.merge_from_dict(dict(self.plan.dense.get('options', {})))
        return cfg

    def evaluation(self, split: str, *, corruption: str | None = None):
        """The plain model on ``split``; with ``corruption`` (a preset of ``CORRUPTIONS``), the test dataloader's
        pipeline degrades one sensor, with the plan's corruption seed (the same for every model: paired)."""
        cfg = self.plain()
        cfg.merge_from_dict(dict(self.plan.splits[split]))
        if corruption is not None:
            from mmprune4u_plugin.datasets.corruptions import with_corruption
            dataset = inner_dataset(cfg.test_dataloader.dataset)
            seed = (self.plan.robustness or {}).get('seed')
            dataset.pipeline = with_corruption(dataset.pipeline, corruption, seed=seed)
        return cfg

    def reference(self, sensor: str, split: str = 'test'):
        """The single-sensor reference model's config (``robustness.references[sensor]``) on ``split``: its own
        config, without any MMPrune4UHook, with the plan's ``model_options`` on data (dataloaders and evaluators;
        the others are written for the fused model) and the split's options."""
        from mmengine.config import Config
        cfg = without_hook(Config.fromfile(self.plan.references()[sensor]['config']))
        cfg.merge_from_dict({k: v for k, v in self.plan.model_options.items() if k.split('.')[0] in DATA_KEYS})
        cfg.merge_from_dict(dict(self.plan.splits[split]))
        return cfg

    def pruning(self, method: str, sparsity: float, seed: int | None, *, beta: float | None = None,
                variant: str = 'task'):
        """The hook configured for one method; ``seed`` None for methods that use no calibration data."""
        info = METHODS[method]
        cfg = copy.deepcopy(self.base)
        entry = hook_entry(cfg)
        entry.update(sparsity=float(sparsity), allocator=info.allocator, report=False,
                     lsi_loss=copy.deepcopy(self.plan.lsi_loss) if variant == 'lsi' else None)
        for key in ('curve_cache', 'calib_dataloader'):
            entry.pop(key, None)
        if info.allocator == 'mmprune4u':
            entry.update(beta=float(beta), regulariser=info.regulariser)
        if seed is not None:
            cfg.randomness = dict(cfg.get('randomness') or {}, seed=int(seed))
            samples, batch = int(self.plan.calib['samples']), int(self.plan.calib['batch_size'])
            entry.update(calib_dataloader=self.calib_dataloader(seed), calib_batches=math.ceil(samples / batch),
                         curve_cache=str(self.curve_cache(seed)))
        return cfg

    def finetune(self, method: str, variant: str, sparsity: float | None, seed: int, *, beta: float | None = None):
        if method == 'dense':
            cfg = self.plain()
            cfg.randomness = dict(cfg.get('randomness') or {}, seed=int(seed))
        else:
            cfg = self.pruning(method, sparsity, seed, beta=beta, variant=variant)
        cfg.merge_from_dict(dict(self.plan.finetune.get('options', {})))
        return cfg

    def curve_cache(self, seed: int) -> Path:
        """Where the hook keeps the seed's curves (it appends ``_round1``)."""
        return self.work / 'curves' / f'seed{seed}.npz'


def config_content(cfg) -> dict:
    """What a config contributes to a key: its resolved content without the output locations and ``load_from``
    (a checkpoint enters keys by its digest)."""
    data = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    for key in ('work_dir', 'experiment_name', 'load_from', 'launcher'):
        data.pop(key, None)
    return data


def ann_files(obj: Any) -> list[Path]:
    """Every annotation file a config names (``ann_file`` joined with its ``data_root``), and the synthetic
    generator's stage key in each data root (it changes when the generator does)."""
    found: list[Path] = []
    if isinstance(obj, dict):
        if 'ann_file' in obj and isinstance(obj['ann_file'], str):
            path = ann_path(obj)
            found.append(path)
            key = Path(str(obj.get('data_root') or path.parent)) / '.mmprune4u_stage_key'
            if key.is_file():
                found.append(key)
        for v in obj.values():
            found += ann_files(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found += ann_files(v)
    return sorted(set(found))
