"""mmprune4u_plugin.runner_guard: a pruning request that mmengine's Runner would ignore fails while it is built."""
import pytest

pytest.importorskip('mmdet3d')
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import FlexibleRunner, Runner  # noqa: E402
from mmengine.testing import RunnerTestCase  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401  (installs the guard)
from mmprune4u_plugin import runner_guard  # noqa: E402
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402

LEGACY_MESSAGE = (r"sets `mmprune4u_hook`, which mmengine's Runner ignores .* Write instead: "
                  r"default_hooks = dict\(mmprune4u=dict\(type='MMPrune4UHook', sparsity=0.7, allocator='lamp'\)\)")


def test_recommended_form_reads_as_config_text():
    spec = ConfigDict(sparsity=0.7, modalities=dict(lidar=['pts_']), grid=(0.0, 0.5))
    assert runner_guard.recommended_form(spec) == (
        "default_hooks = dict(mmprune4u=dict(type='MMPrune4UHook', sparsity=0.7, modalities={'lidar': ['pts_']}, "
        'grid=(0.0, 0.5)))')


def test_apply_is_idempotent():
    assert runner_guard.apply() == ['Runner', 'FlexibleRunner']
    wrapped = Runner.register_hooks
    assert runner_guard.apply() == ['Runner', 'FlexibleRunner']
    assert Runner.register_hooks is wrapped
    assert not getattr(Runner.register_hooks.__wrapped__, '_mmprune4u_guarded', False)  # wrapped exactly once
    assert getattr(FlexibleRunner.register_hooks, '_mmprune4u_guarded', False)


class TestRunnerGuard(RunnerTestCase):

    def test_legacy_key_fails_in_from_cfg(self):
        cfg = self.epoch_based_cfg
        cfg.mmprune4u_hook = dict(sparsity=0.7, allocator='lamp')
        with self.assertRaisesRegex(ValueError, LEGACY_MESSAGE):
            self.build_runner(cfg)

    def test_legacy_key_fails_in_registered_runner(self):
        for runner_type in ('Runner', 'FlexibleRunner'):
            cfg = self.epoch_based_cfg.copy()
            cfg.update(runner_type=runner_type, experiment_name=self.experiment_name,
                       mmprune4u_hook=dict(sparsity=0.7, allocator='lamp'))
            with self.assertRaisesRegex(ValueError, LEGACY_MESSAGE):
                RUNNERS.build(cfg)

    def test_default_hooks_entry_is_registered_beside_the_defaults(self):
        cfg = self.epoch_based_cfg
        cfg.default_hooks.mmprune4u = dict(type='MMPrune4UHook', sparsity=0.5, allocator='lamp')
        cfg.custom_hooks = [dict(type='EMAHook')]
        runner = self.build_runner(cfg)
        names = [type(h).__name__ for h in runner.hooks]
        assert names.count('MMPrune4UHook') == 1 and 'EMAHook' in names and 'CheckpointHook' in names
        assert next(h for h in runner.hooks if isinstance(h, MMPrune4UHook)).args['sparsity'] == 0.5

    def test_two_prune_hooks_fail(self):
        cfg = self.epoch_based_cfg
        cfg.default_hooks.mmprune4u = dict(type='MMPrune4UHook', sparsity=0.5)
        cfg.custom_hooks = [dict(type='MMPrune4UHook', sparsity=0.7)]
        with self.assertRaisesRegex(ValueError, 'the runner has 2 MMPrune4UHooks'):
            self.build_runner(cfg)

    def test_config_without_pruning_passes(self):
        names = [type(h).__name__ for h in self.build_runner(self.epoch_based_cfg).hooks]
        assert 'MMPrune4UHook' not in names and 'LoggerHook' in names
