"""SparsityReportHook on mmengine's RunnerTestCase: the tested weights' sparsity is logged and returned."""
import pytest
import torch

pytest.importorskip('mmdet3d')
from mmengine.testing import RunnerTestCase  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.hooks import SparsityReportHook  # noqa: E402
from mmprune4u_plugin.hooks.sparsity_report import METRIC_KEY  # noqa: E402


class TestSparsityReportHook(RunnerTestCase):
    """ToyModel: linear1 (2x2) and linear2 (1x2), six prunable weights."""

    def _runner_with_zeros(self, zeros: int):
        cfg = self.epoch_based_cfg
        cfg.default_hooks.sparsity = dict(type='SparsityReportHook')
        runner = self.build_runner(cfg)
        weights = [runner.model.linear1.weight, runner.model.linear2.weight]
        with torch.no_grad():  # weights 1..n, then the first ``zeros`` of linear1, linear2 (row-major) set to 0
            for w in weights:
                w.copy_(torch.arange(1.0, w.numel() + 1).view_as(w))
            for w, i in [(w, i) for w in weights for i in range(w.numel())][:zeros]:
                w.view(-1)[i] = 0.0
        path = f'{self.temp_dir.name}/zeros.pth'
        torch.save({'state_dict': runner.model.state_dict()}, path)
        cfg.load_from = path
        return self.build_runner(cfg)

    def test_runs_first(self):
        cfg = self.epoch_based_cfg
        cfg.default_hooks.sparsity = dict(type='SparsityReportHook')
        hooks = self.build_runner(cfg).hooks
        assert isinstance(hooks[0], SparsityReportHook)  # before RuntimeInfoHook hands metrics to the message hub

    def test_with_runner_test(self):
        runner = self._runner_with_zeros(3)
        metrics = runner.test()
        assert metrics[METRIC_KEY] == pytest.approx(0.5)
        assert runner.message_hub.get_scalar(f'test/{METRIC_KEY}').current() == pytest.approx(0.5)
        with open(f'{runner.log_dir}/{runner.timestamp}.log') as f:
            log = f.read()
        assert 'prunable-weight sparsity of the tested model: 0.5000 (3/6 weights in 2 layers)' in log
        assert f'{METRIC_KEY}: 0.5000' in log  # the LoggerHook's line of test metrics

    def test_with_runner_val(self):
        metrics = self._runner_with_zeros(2).val()
        assert metrics[METRIC_KEY] == pytest.approx(2 / 6)

    def test_without_metrics_nothing_is_added(self):
        hook = SparsityReportHook()
        hook.after_test_epoch(None, None)  # no report yet, no metrics: a no-op
        metrics = {}
        hook.after_val_epoch(None, metrics)
        assert metrics == {}
