"""SparsityReportHook: log the sparsity of the weights a test (or validation) run evaluated, and return it."""
from __future__ import annotations

from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS as ENGINE_HOOKS
from mmdet3d.registry import HOOKS

from ..core.layers import find_prunable_layers, get_weight, module_index
from ..core.masks import SparsityReport, sparsity_report

METRIC_KEY = 'mmprune4u/sparsity'


@ENGINE_HOOKS.register_module()  # also usable from configs without mmdet3d's default scope
@HOOKS.register_module()
class SparsityReportHook(Hook):
    """Reports the prunable-weight sparsity of the model that a test or validation run evaluates.

    With ``default_hooks = dict(sparsity=dict(type='SparsityReportHook'))`` in a plain config (no pruning hook),
    mmdet3d's ``tools/test.py CONFIG pruned.pth`` logs the fraction of exact zeros among all prunable weights (Conv,
    Linear, spconv, attention) of the model it tested, and adds it to the metrics as ``mmprune4u/sparsity``: in
    the LoggerHook's line, the json log and the dict that ``runner.test()`` returns.

    Note:
        - Counted in ``before_test`` / ``before_val``: ``runner.test()`` has loaded the checkpoint by then.
        - Priority ``HIGHEST``: the value is in ``metrics`` before RuntimeInfoHook (VERY_HIGH) copies them to the
          message hub, which the LoggerHook reads.
    """

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self.report: Optional[SparsityReport] = None

    def before_val(self, runner) -> None:
        self._count(runner, 'validated')

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._add_to(metrics)

    def before_test(self, runner) -> None:
        self._count(runner, 'tested')

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        self._add_to(metrics)

    def _count(self, runner, what: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        with torch.no_grad():
            modules = module_index(model)
            self.report = sparsity_report([(lay.name, lay.modality, get_weight(model, lay, modules))
                                           for lay in find_prunable_layers(model)])
        runner.logger.info(f'mmprune4u: prunable-weight sparsity of the {what} model: '
                           f'{self.report.global_sparsity:.4f} ({self.report.zeros}/{self.report.total} weights '
                           f'in {len(self.report.layers)} layers)')

    def _add_to(self, metrics: Optional[dict]) -> None:
        if metrics is not None and self.report is not None:
            metrics[METRIC_KEY] = self.report.global_sparsity
