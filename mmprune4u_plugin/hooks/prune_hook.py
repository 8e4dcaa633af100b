"""MMPrune4UHook: measure curves, allocate, mask and finetune any mmdet3d model from its config."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from mmengine.dist import broadcast_object_list, get_rank, is_distributed
from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS as ENGINE_HOOKS
from mmdet3d.registry import DATASETS, HOOKS, MODELS

from ..core.curves import DEFAULT_GRID, DistortionCurves, measure_curves
from ..core.layers import find_prunable_layers, get_weight, module_by_name
from ..core.memo import DEFAULT_MEMO_DEPTH
from ..core.plan import AllocationSpec, allocate_layers, resolve_bounds
from ..core.pruner import Pruner
from ..core.schedule import round_targets
from ..fingerprint import content_digest, plugin_version
from .calibration import collect_batches, default_task_taps, mmdet3d_forward
from .distributed import (every_rank, layer_costs, measure_sharded, sync_buffers, tensors_digest, world_free_loader,
                          write_evidence)
from .lsi_finetune import LSIFinetuner, dense_statistics
from .options import parse_local_r, parse_taps, validate_static
from .report import summary, write_report

CHECKPOINT_KEY = 'mmprune4u'


@ENGINE_HOOKS.register_module()  # also usable from configs without mmdet3d's default scope
@HOOKS.register_module()
class MMPrune4UHook(Hook):
    """Layer-adaptive unstructured pruning (MMPrune4U) with optional log-Sobolev finetuning. See README for keys.

    Note:
        - Prunes in ``before_train`` (pretrained / loaded weights are in the model then) and, for iterative
          schedules, after every ``interval`` iterations (or epochs with ``by_epoch=True``); masks are re-applied after each optimizer step, also to
          an EMAHook's averaged copy.
        - Masks and the allocation go into ``checkpoint['mmprune4u']``; ``--resume`` restores them, no re-measuring.
    """

    priority = 'LOW'  # after EMAHook (NORMAL) updates its copy, before CheckpointHook (VERY_LOW) saves

    def __init__(self, sparsity: float, allocator: str = 'mmprune4u', *, grid: Sequence[float] | None = None,
                 estimator: str = 'exact', num_probes: int = 8, calib_batches: int = 4,
                 calib_dataloader: dict | None = None, taps: Mapping[str, Any] | None = None,
                 modalities: Mapping[str, Sequence[str]] | None = None, beta: float = 1.0,
                 regulariser: str = 'local', modality_weights: Mapping[str, float] | None = None,
                 modality_budgets: Mapping[str, float] | None = None,
                 layer_bounds: Mapping[str, Sequence[float]] | None = None, keep_dense: Sequence[str] = (),
                 include: Sequence[str] = (), exclude: Sequence[str] = (), schedule: str = 'one_shot',
                 rounds: int = 1, interval: int | None = None, by_epoch: bool = False, curve_cache: str | None = None,
                 report: bool = True, lsi_loss: dict | None = None, lsi_reference: str = 'dense_stats',
                 num_bins: int = 10_000, memoise: bool = True, memo_depth: int = DEFAULT_MEMO_DEPTH, prune_frozen: bool = True,
                 local_r: str | Mapping[str, Any] = 'auto') -> None:
        args = dict(locals())
        args.pop('self')
        args.pop('__class__', None)
        validate_static(args)
        self.args = args
        self.task_taps, self.modality_taps = parse_taps(taps)
        self.grid = tuple(DEFAULT_GRID if grid is None else grid)
        self.local_r = parse_local_r(local_r)
        self.targets = round_targets(float(sparsity), rounds=rounds, schedule=schedule)
        self.spec = AllocationSpec(float(sparsity), allocator, beta, regulariser, dict(modality_weights or {}),
                                   {p: tuple(b) for p, b in dict(layer_bounds or {}).items()}, tuple(keep_dense),
                                   dict(modality_budgets or {}), num_bins)
        self.pruner: Pruner | None = None
        self.finetuner: LSIFinetuner | None = None
        self.rounds_done = 0
        self.allocation: dict[str, float] = {}
        self.dense_stats: dict | None = None
        self._resume_state: dict | None = None
        self._floor_state: dict | None = None

    # ----------------------------------------------------------------------------------------------- callbacks
    def before_run(self, runner) -> None:
        """Find the layers and check every pattern and tap now, before any weight can change."""
        model = self._model(runner)
        layers = find_prunable_layers(model, include=self.args['include'], exclude=self.args['exclude'],
                                      modalities=self.args['modalities'])
        if not self.args['prune_frozen']:
            layers = [lay for lay in layers if get_weight(model, lay).requires_grad]
            if not layers:
                raise ValueError('every selected layer is frozen (requires_grad=False) and `prune_frozen` is False: '
                                 'nothing to prune')
        for tap in [*(self.task_taps or []), *self.modality_taps.values()]:
            module_by_name(model, tap.module)
        resolve_bounds(layers, self.spec)
        if self.spec.needs_curves and self.task_taps is None:
            self.task_taps = default_task_taps(model)
        self.pruner = Pruner(layers)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved masks for ``before_train`` (this runs before the weights are copied in).

        ``--resume`` continues the same run: its masks, allocation and round are restored. ``load_from`` starts a new
        pruning run from those weights: a pruned checkpoint's masks become a floor that the new target builds on.
        """
        state = checkpoint.get(CHECKPOINT_KEY)
        if getattr(runner, '_resume', False):
            self._resume_state = state
            if state is None:
                runner.logger.warning('resumed checkpoint has no mmprune4u state: pruning starts from scratch')
        elif state is not None:
            self._floor_state = state

    def before_train(self, runner) -> None:
        self.pruner.prepare(self._model(runner))
        if self._resume_state is not None:
            self._restore(runner, self._resume_state)
            return
        if self._floor_state is not None:
            self._keep_loaded_masks(runner, self._floor_state)
        if self.rounds_done == 0:
            self._prune_round(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.pruner.apply()
        self._mask_ema(runner)
        if not self.args['by_epoch'] and self._round_due(runner.iter + 1):
            self._prune_round(runner)

    def after_train_epoch(self, runner) -> None:
        if self.args['by_epoch'] and self._round_due(runner.epoch + 1):
            self._prune_round(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {'masks': self.pruner.state_dict(), 'allocation': dict(self.allocation),
                                      'rounds_done': self.rounds_done, 'dense_stats': self.dense_stats}

    def after_train(self, runner) -> None:
        if self.finetuner is not None:
            self.finetuner.remove()
            self.finetuner = None

    # ------------------------------------------------------------------------------------------------- helpers
    def _round_due(self, progress: int) -> bool:
        """A later round is due after every ``interval`` iterations (or epochs) until all rounds are done."""
        interval = self.args['interval']
        return self.rounds_done < len(self.targets) and bool(interval) and progress % interval == 0

    @staticmethod
    def _model(runner) -> torch.nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _prune_round(self, runner) -> None:
        model = self._model(runner)
        target = self.targets[self.rounds_done]
        spec = dataclasses.replace(self.spec, sparsity=target)
        need_batches = self.spec.needs_curves or self.args['lsi_loss'] is not None
        batches = collect_batches(model, self._calibration_loader(runner), self.args['calib_batches']) \
            if need_batches else []
        teacher = None
        if self.args['lsi_loss'] is not None and self.finetuner is None:
            if not self.modality_taps:
                raise ValueError('`lsi_loss` needs modality taps: set `taps` with one entry per modality')
            if self.args['lsi_reference'] == 'teacher':
                teacher = LSIFinetuner.make_teacher(model)
        # Every rank runs the same passes on the same batches (the curves sharded, hooks/distributed.py): no rank
        # waits alone in a collective. Rank 0's result is broadcast, so every rank holds exactly its masks.
        stats = None
        if self.args['lsi_loss'] is not None and self.dense_stats is None:
            stats = dense_statistics(model, self.modality_taps, batches, mmdet3d_forward)
        result = [(*self._allocate(runner, model, spec, batches), stats)]
        if is_distributed():
            broadcast_object_list(result, src=0)
        self.allocation, curves_costs, stats = result[0]
        self.dense_stats = self.dense_stats if stats is None else stats
        self.pruner.set_sparsities(self.allocation)
        self._zero_optimizer_state(runner)
        measured = self.pruner.report()
        # evidence that every rank, and a single-process run, holds the same masks and calibration batches
        write_evidence(Path(runner.work_dir) / 'mmprune4u', get_rank(), mask_digest=self.pruner.digest(),
                       calib_fingerprint=tensors_digest(batches))
        if measured.zeros == 0:
            raise RuntimeError(f'round {self.rounds_done + 1} pruned no weight (target {target})')
        self.rounds_done += 1
        runner.logger.info(f'MMPrune4U round {self.rounds_done}/{len(self.targets)}: {summary(measured)}')
        if self.args['report'] and get_rank() == 0:
            curves, costs = curves_costs if curves_costs else (None, None)
            out = Path(runner.work_dir) / 'mmprune4u' / f'round_{self.rounds_done}'
            write_report(out, self.pruner.layers, self.allocation, measured, curves=curves, costs=costs,
                         meta={'target': target, 'allocator': self.spec.allocator, 'round': self.rounds_done})
        if self.args['lsi_loss'] is not None and self.finetuner is None:
            self._install_finetuner(model, teacher)

    def _calibration_loader(self, runner):
        """A fresh, unshuffled loader over the train set (or ``calib_dataloader``): the first N batches, always the
        same (on every DDP rank too: not sharded by rank), and the Runner's own training iterator is left untouched."""
        cfg = copy.deepcopy(self.args['calib_dataloader'] or runner.cfg.train_dataloader)
        if isinstance(cfg.get('dataset'), dict):
            cfg['dataset'] = DATASETS.build(cfg['dataset'])
        if len(cfg['dataset']) == 0:
            raise ValueError('calibration data is empty: the calibration dataset has no samples')
        cfg['persistent_workers'] = False
        return world_free_loader(runner, cfg)

    def _allocate(self, runner, model, spec: AllocationSpec, batches: list) -> tuple[dict, tuple | None]:
        layers = self.pruner.layers
        floor = self.pruner.sparsities()  # earlier rounds or a loaded pruned checkpoint: sparsity never drops
        if not spec.needs_curves:
            weights = {lay.name: get_weight(model, lay).detach() for lay in layers}
            return allocate_layers(layers, spec, weights=weights, floor=floor), None
        curves = self._curves(runner, model, batches)
        costs = curves.cost(spec.beta if spec.allocator == 'mmprune4u' else 0.0, spec.regulariser,
                            spec.modality_weights, target=spec.sparsity)
        return allocate_layers(layers, spec, curves=curves, floor=floor), (curves, costs)

    def _curves(self, runner, model, batches: list) -> DistortionCurves:
        cache = self.args['curve_cache']
        path = None if cache is None else Path(cache).with_name(f'{Path(cache).stem}_round{self.rounds_done + 1}.npz')
        sync_buffers(model)  # DDP: every rank measures rank 0's model (BN statistics drift apart between ranks)
        source = self._curve_source(model, batches)
        cached = DistortionCurves.load(path) if path is not None and path.is_file() else None
        if every_rank(cached is not None and cached.matches(self.pruner.layers, self.grid, source)):
            runner.logger.info(f'MMPrune4U: curves loaded from {path}')
            return cached
        if cached is not None:
            runner.logger.warning(f'MMPrune4U: the curve cache {path} was measured for other layers, grid, weights '
                                  'or measurement settings; measuring again and overwriting it')

        def measure(layers: list) -> DistortionCurves:  # one rank's share of the layers (all of them outside DDP)
            return measure_curves(model, layers, batches, mmdet3d_forward, task_taps=self.task_taps,
                                  modality_taps=self.modality_taps, grid=self.grid, estimator=self.args['estimator'],
                                  num_probes=self.args['num_probes'], memoise=self.args['memoise'],
                                  memo_depth=self.args['memo_depth'],
                                  local_r=self.local_r, progress=_progress if get_rank() == 0 else None)

        def costs() -> list[float]:  # under DDP only: how to split the layers over the ranks
            return layer_costs(model, self.pruner.layers, batches[0], mmdet3d_forward, estimator=self.args['estimator'])
        curves = measure_sharded(measure, self.pruner.layers, inputs=(batches, model.state_dict()), costs=costs)
        curves.source = source
        runner.logger.info(f'MMPrune4U: curves measured in {curves.stats["seconds"]:.1f} s on {curves.stats["ranks"]} '
                           f'rank(s) ({curves.estimator}): {curves.stats}')
        if path is not None and get_rank() == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            curves.save(path)
        return curves

    def _curve_source(self, model, batches: list) -> str:
        """What the curves depend on besides layers and grid: every weight, bias and buffer of the model (BN
        statistics included), the calibration batches (so their samples and pipeline), the modality grouping, how
        they are measured, and the plugin's code."""
        settings = {k: self.args[k] for k in ('estimator', 'num_probes', 'calib_batches', 'memoise')}
        settings['local_r'] = repr(self.local_r)
        settings['taps'] = [repr(t) for t in self.task_taps] + [f'{m}={t!r}' for m, t in self.modality_taps.items()]
        settings['modalities'] = [(lay.name, lay.modality) for lay in self.pruner.layers]
        settings['plugin'] = plugin_version()
        return '|'.join([content_digest(model.state_dict()), content_digest(batches),
                         json.dumps(settings, sort_keys=True)])

    def _install_finetuner(self, model, teacher=None) -> None:
        reference = self.args['lsi_reference']
        if reference == 'dense_stats' and self.dense_stats is None:
            raise RuntimeError('dense statistics are missing')
        loss = MODELS.build(self.args['lsi_loss'])
        self.finetuner = LSIFinetuner(model, self.modality_taps, loss, reference=reference, teacher=teacher,
                                      dense_stats=self.dense_stats)

    def _restore(self, runner, state: dict) -> None:
        self.pruner.load_state_dict(state['masks'])
        self.pruner.apply()
        self.allocation = dict(state['allocation'])
        self.rounds_done = int(state['rounds_done'])
        self.dense_stats = state.get('dense_stats')
        runner.logger.info(f'MMPrune4U: masks restored from checkpoint ({summary(self.pruner.report())})')
        if self.args['lsi_loss'] is not None:
            if self.args['lsi_reference'] == 'teacher':
                runner.logger.warning('resume: the dense teacher is gone; LSI loss uses the dense statistics')
                self.args['lsi_reference'] = 'dense_stats'
            self._install_finetuner(self._model(runner))

    def _keep_loaded_masks(self, runner, state: dict) -> None:
        """``load_from`` a pruned checkpoint: its masks are the floor of this run, whose target must not be lower."""
        self.pruner.load_state_dict(state['masks'])
        self.pruner.apply()
        loaded = self.pruner.report().global_sparsity
        target = self.targets[-1]
        if target < loaded - 0.5 / self.pruner.report().total:
            raise ValueError(f'`sparsity` {target} is below the sparsity {loaded:.4f} of the loaded checkpoint: '
                             'pruned weights cannot be revived; set sparsity >= the loaded sparsity')
        self.targets = [max(t, loaded) for t in self.targets]
        runner.logger.info(f'MMPrune4U: the loaded checkpoint is pruned to {loaded:.4f}; its zeros are kept and '
                           f'pruning continues to {target}')

    def _zero_optimizer_state(self, runner) -> None:
        """Momentum / Adam moments of pruned weights are zeroed so they cannot revive them."""
        optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
        if not isinstance(optimizer, torch.optim.Optimizer):  # tools/prune.py: no optimizer was built
            return
        model = self._model(runner)
        for lay in self.pruner.layers:
            weight = get_weight(model, lay)
            for value in optimizer.state.get(weight, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == weight.shape:
                    value.masked_fill_(~self.pruner.mask_of(lay.name), 0)

    def _mask_ema(self, runner) -> None:
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model'):
                self.pruner.apply_to(hook.ema_model.module)


def _progress(description: str, total: int):
    from mmengine.utils import ProgressBar
    if total <= 0:
        return None
    bar = ProgressBar(total)
    return lambda n: [bar.update() for _ in range(n)]
