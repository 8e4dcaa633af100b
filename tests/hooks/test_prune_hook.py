"""MMPrune4UHook on mmengine's RunnerTestCase with a small toy model (fast, no mmdet3d data)."""
import copy
import dataclasses
import os
from unittest import mock

import pytest
import torch
from torch import nn

pytest.importorskip('mmdet3d')
from mmengine.model import BaseModel  # noqa: E402
from mmengine.registry import DATASETS, MODELS  # noqa: E402
from mmengine.testing import RunnerTestCase  # noqa: E402

import mmprune4u_plugin  # noqa: E402,F401
from mmprune4u_plugin.core.allocation.base import InfeasibleAllocationError  # noqa: E402
from mmprune4u_plugin.hooks import MMPrune4UHook  # noqa: E402
from mmprune4u_plugin.hooks import prune_hook as hook_module  # noqa: E402

PRUNABLE = ('linear1.weight', 'linear2.weight', 'bbox_head.weight')


class PruneToyModel(BaseModel):
    """Three Linear layers; ``bbox_head`` so the default task taps apply."""

    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor)
        self.linear1 = nn.Linear(2, 32)
        self.linear2 = nn.Linear(32, 32)
        self.bbox_head = nn.Linear(32, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':  # through ``self.loss``, as mmdet3d detectors do (the LSI finetuner wraps it)
            return self.loss(inputs, data_samples)
        return self.features(torch.stack(inputs) if isinstance(inputs, list) else inputs)

    def features(self, x):
        return self.bbox_head(torch.relu(self.linear2(torch.relu(self.linear1(x)))))

    def loss(self, inputs, data_samples):
        out = self.features(torch.stack(inputs) if isinstance(inputs, list) else inputs)
        target = torch.stack(data_samples) if isinstance(data_samples, list) else data_samples
        return dict(loss=((out.squeeze(-1) - target) ** 2).mean())


class PruneToyBNModel(PruneToyModel):
    """PruneToyModel with a BatchNorm between the Linear layers (BN buffers must survive pruning unchanged)."""

    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor)
        self.norm = nn.BatchNorm1d(32)

    def features(self, x):
        return self.bbox_head(torch.relu(self.linear2(self.norm(torch.relu(self.linear1(x))))))


class EmptyToyDataset(torch.utils.data.Dataset):
    metainfo = {}

    def __len__(self):
        return 0

    def __getitem__(self, index):
        raise IndexError(index)


def _zeros(model):
    params = dict(model.named_parameters())
    return {n: int((params[n] == 0).sum()) for n in PRUNABLE}


class TestMMPrune4UHook(RunnerTestCase):

    def setUp(self):
        super().setUp()
        MODELS.register_module(name='PruneToyModel', module=PruneToyModel, force=True)
        MODELS.register_module(name='PruneToyBNModel', module=PruneToyBNModel, force=True)
        self.cfg = copy.deepcopy(self.iter_based_cfg)
        self.cfg.model = dict(type='PruneToyModel')
        self.cfg.train_cfg = dict(by_epoch=False, max_iters=4)
        self.cfg.val_cfg = self.cfg.val_dataloader = self.cfg.val_evaluator = None
        self.cfg.optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=0.1))
        self.cfg.default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False))
        self.cfg.env_cfg = dict(dist_cfg=dict(backend='gloo'))
        self.hook_cfg = dict(type='MMPrune4UHook', sparsity=0.7, grid=[0.0, 0.25, 0.5, 0.75, 0.9], calib_batches=2)

    def tearDown(self):
        MODELS.module_dict.pop('PruneToyModel', None)
        MODELS.module_dict.pop('PruneToyBNModel', None)
        super().tearDown()

    def _runner(self, **hook_kw):
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = [dict(self.hook_cfg, **hook_kw)]
        return self.build_runner(cfg)

    def test_init(self):
        bad = [
            (dict(sparsity=1.0), r'`sparsity` must be in \(0, 1\).*sparsity: 1.0'),
            (dict(sparsity=-0.1), r'`sparsity` must be in \(0, 1\).*sparsity: -0.1'),
            (dict(sparsity=0.0), r'0 prunes nothing'),
            (dict(allocator='magic'), r"`allocator` must be one of .*allocator: 'magic'"),
            (dict(estimator='guess'), r"`estimator` must be one of"),
            (dict(schedule='iterative', rounds=3), r'`interval`.* must be >= 1 with 3 rounds'),
            (dict(rounds=2), r'one_shot schedule has exactly 1 round'),
            (dict(beta=-1.0), r'`beta` must be >= 0'),
            (dict(calib_batches=0), r'`calib_batches` must be >= 1'),
            (dict(memo_depth=0), r'`memo_depth` must be an integer >= 1, but got memo_depth: 0'),
            (dict(memo_depth=2.5), r'`memo_depth` must be an integer >= 1'),
            (dict(grid=[0.1, 0.5]), r'`grid` must be increasing levels'),
            (dict(layer_bounds={'linear': (0.8, 0.2)}), r'`layer_bounds\[.linear.\]` must be'),
            (dict(taps=dict(camera=3)), r"`taps\['camera'\]` must be a module name"),
            (dict(lsi_reference='student'), r'`lsi_reference` must be one of'),
        ]
        for kwargs, message in bad:
            with self.assertRaisesRegex(ValueError, message):
                MMPrune4UHook(**dict(dict(sparsity=0.5), **kwargs))

    def test_bad_model_args_fail_before_weights_change(self):
        cases = [
            (dict(include=['no_such_layer']), ValueError, r"`include` patterns \['no_such_layer'\] match no"),
            (dict(modalities=dict(camera=['img_'])), ValueError, r"`modalities\['camera'\]` patterns"),
            (dict(taps=dict(task='no_such_module')), ValueError, "no module named 'no_such_module'"),
            (dict(layer_bounds={'linear': (0.9, 1.0)}, sparsity=0.5), InfeasibleAllocationError, 'needs'),
            (dict(keep_dense=['linear', 'bbox'], allocator='uniform'), InfeasibleAllocationError, 'allow only'),
            (dict(keep_dense=['nothing_here']), ValueError, r'`keep_dense` patterns'),
        ]
        for kwargs, error, message in cases:
            runner = self._runner(**kwargs)
            before = copy.deepcopy(runner.model.state_dict())
            with self.assertRaisesRegex(error, message):
                runner.train()
            for key, value in runner.model.state_dict().items():
                assert torch.equal(value, before[key]), f'{kwargs}: {key} changed before the error'

    def test_empty_calibration(self):
        DATASETS.register_module(name='EmptyToyDataset', module=EmptyToyDataset, force=True)
        try:
            runner = self._runner(calib_dataloader=dict(dataset=dict(type='EmptyToyDataset'), batch_size=3,
                                                        num_workers=0))
            before = copy.deepcopy(runner.model.state_dict())
            with self.assertRaisesRegex(ValueError, 'calibration data is empty'):
                runner.train()
            assert all(torch.equal(v, before[k]) for k, v in runner.model.state_dict().items())
        finally:
            DATASETS.module_dict.pop('EmptyToyDataset', None)

    def test_with_runner(self):
        runner = self._runner()
        runner.train()
        zeros = _zeros(runner.model)
        total = sum(dict(runner.model.named_parameters())[n].numel() for n in PRUNABLE)
        assert abs(sum(zeros.values()) / total - 0.7) <= 1e-4
        hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
        spread = max(hook.allocation.values()) - min(hook.allocation.values())
        assert spread > 0.1  # layer-adaptive: uniform's exact-count rounding spreads by < 1 / smallest layer size
        assert 1 / min(lay.numel for lay in hook.pruner.layers) < 0.1
        ckpt = torch.load(f'{runner.work_dir}/iter_4.pth', map_location='cpu', weights_only=False)
        assert set(ckpt['state_dict']) == set(PruneToyModel().state_dict())  # no extra keys or prefixes
        assert set(ckpt['mmprune4u']) == {'masks', 'allocation', 'rounds_done', 'dense_stats'}
        assert [e['name'] for e in ckpt['mmprune4u']['masks']['layers']] == list(PRUNABLE)
        report = runner.work_dir + '/mmprune4u/round_1'
        for name in ('allocation.json', 'layers.txt', 'sparsity_per_layer.png', 'curves_extremes.png'):
            assert open(f'{report}/{name}', 'rb').read(4)
        # the checkpoint loads into the plain model config (no hook) and keeps its zeros
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = []
        cfg.load_from = f'{runner.work_dir}/iter_4.pth'
        plain = self.build_runner(cfg)
        plain.load_or_resume()
        assert _zeros(plain.model) == zeros

    def test_resume_restores_masks_without_measuring(self):
        runner = self._runner()
        runner.train()
        hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
        masks = {n: hook.pruner.mask_of(n).clone() for n in PRUNABLE}
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = [self.hook_cfg]
        cfg.train_cfg = dict(by_epoch=False, max_iters=6)
        cfg.resume, cfg.load_from = True, f'{runner.work_dir}/iter_2.pth'
        resumed = self.build_runner(cfg)
        with mock.patch.object(hook_module, 'measure_curves', side_effect=AssertionError('re-measured')):
            resumed.train()
        hook2 = next(h for h in resumed.hooks if isinstance(h, MMPrune4UHook))
        assert resumed.iter == 6 and hook2.rounds_done == 1
        for n in PRUNABLE:
            assert torch.equal(hook2.pruner.mask_of(n), masks[n])
            assert torch.all(dict(resumed.model.named_parameters())[n][~masks[n]] == 0)

    def test_curve_cache_is_reused_only_for_the_same_weights(self):
        cache = f'{self.temp_dir.name}/cache/curves.npz'
        measured = mock.patch.object(hook_module, 'measure_curves', wraps=hook_module.measure_curves)

        def train(seed: int) -> int:
            cfg = copy.deepcopy(self.cfg)
            cfg.custom_hooks = [dict(self.hook_cfg, curve_cache=cache)]
            cfg.randomness = dict(seed=seed)
            with measured as spy:
                self.build_runner(cfg).train()
            return spy.call_count

        assert train(0) == 1 and os.path.isfile(cache.replace('curves.npz', 'curves_round1.npz'))
        assert train(0) == 0  # same seed, same initial weights: the cache is used
        assert train(1) == 1  # other weights: measured again, not the stale cache

    def test_ema_copy_has_the_same_zeros(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = [dict(type='EMAHook', momentum=0.5), self.hook_cfg]
        runner = self.build_runner(cfg)
        runner.train()
        ema = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook').ema_model.module
        hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
        for n in PRUNABLE:
            w = dict(ema.named_parameters())[n]
            assert torch.all(w[~hook.pruner.mask_of(n)] == 0)

    def test_iterative_schedule_never_decreases(self):
        runner = self._runner(schedule='iterative', rounds=2, interval=2)
        seen = []
        original = MMPrune4UHook._prune_round

        def spy(hook, run):
            original(hook, run)
            seen.append(dict(hook.pruner.sparsities()))
        with mock.patch.object(MMPrune4UHook, '_prune_round', spy):
            runner.train()
        assert len(seen) == 2
        total = sum(dict(runner.model.named_parameters())[n].numel() for n in PRUNABLE)
        first = sum(seen[0][n] * dict(runner.model.named_parameters())[n].numel() for n in PRUNABLE) / total
        assert first == pytest.approx(1 - (1 - 0.7) ** 0.5, abs=1e-3)
        assert all(seen[1][n] >= seen[0][n] for n in PRUNABLE)
        assert abs(sum(_zeros(runner.model).values()) / total - 0.7) <= 1e-4

    def test_iterative_schedule_by_epoch(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.train_dataloader = copy.deepcopy(self.epoch_based_cfg.train_dataloader)
        cfg.train_cfg = dict(by_epoch=True, max_epochs=2)
        cfg.default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1))
        cfg.custom_hooks = [dict(self.hook_cfg, schedule='cubic', rounds=2, interval=1, by_epoch=True)]
        runner = self.build_runner(cfg)
        runner.train()
        hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
        assert hook.rounds_done == 2
        total = sum(dict(runner.model.named_parameters())[n].numel() for n in PRUNABLE)
        assert abs(sum(_zeros(runner.model).values()) / total - 0.7) <= 1e-4
        first = torch.load(f'{runner.work_dir}/epoch_1.pth', map_location='cpu', weights_only=False)
        assert first['mmprune4u']['rounds_done'] == 2  # round 1 at start, round 2 after epoch 1

    def test_baseline_allocators(self):
        for allocator in ("uniform", "uniform_plus", "global", "lamp", "erk", "rd"):
            runner = self._runner(allocator=allocator)
            runner.train()
            total = sum(dict(runner.model.named_parameters())[n].numel() for n in PRUNABLE)
            assert abs(sum(_zeros(runner.model).values()) / total - 0.7) <= 1e-4, allocator
            self.clear_work_dir()

    def test_frozen_weights_are_pruned_and_stay_frozen(self):
        for estimator in ('exact', 'fisher'):
            runner = self._runner(estimator=estimator)
            runner.model.linear1.requires_grad_(False)  # as a backbone's frozen_stages leaves it
            runner.train()
            hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
            assert 'linear1.weight' in [lay.name for lay in hook.pruner.layers]
            assert not runner.model.linear1.weight.requires_grad and runner.model.linear1.weight.grad is None
            assert torch.all(runner.model.linear1.weight[~hook.pruner.mask_of('linear1.weight')] == 0)
            total = sum(dict(runner.model.named_parameters())[n].numel() for n in PRUNABLE)
            assert abs(sum(_zeros(runner.model).values()) / total - 0.7) <= 1e-4, estimator
            self.clear_work_dir()

    def test_prune_frozen_false_leaves_frozen_weights_dense(self):
        runner = self._runner(prune_frozen=False)
        runner.model.linear1.requires_grad_(False)
        dense = runner.model.linear1.weight.detach().clone()
        runner.train()
        hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
        assert [lay.name for lay in hook.pruner.layers] == ['linear2.weight', 'bbox_head.weight']
        assert torch.equal(runner.model.linear1.weight, dense)
        self.clear_work_dir()
        runner = self._runner(prune_frozen=False)
        runner.model.requires_grad_(False)
        with self.assertRaisesRegex(ValueError, 'every selected layer is frozen'):
            runner.train()

    def test_bn_buffers_are_unchanged_by_pruning(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.model = dict(type='PruneToyBNModel')
        cfg.custom_hooks = [dict(self.hook_cfg, lsi_loss=dict(type='LogSobolevLoss'), taps=dict(mid='norm'))]
        runner = self.build_runner(cfg)
        seen = {}
        original = MMPrune4UHook._prune_round

        def spy(hook, run):
            seen['before'] = copy.deepcopy(dict(run.model.norm.named_buffers()))
            seen['training'] = run.model.training
            original(hook, run)
            seen['after'] = copy.deepcopy(dict(run.model.norm.named_buffers()))
            seen['training_after'] = run.model.training
        with mock.patch.object(MMPrune4UHook, '_prune_round', spy):
            runner.train()
        assert seen['training'] and seen['training_after']  # before_train: train mode, restored afterwards
        for name, value in seen['before'].items():
            assert torch.equal(seen['after'][name], value), name
        assert int(seen['before']['num_batches_tracked']) == 0

    def test_load_from_a_pruned_checkpoint_is_a_floor(self):
        first = self._runner()
        first.train()
        ckpt = f'{first.work_dir}/iter_4.pth'
        zeros70 = {n: dict(first.model.named_parameters())[n] == 0 for n in PRUNABLE}
        cfg = copy.deepcopy(self.cfg)
        cfg.custom_hooks = [dict(self.hook_cfg, sparsity=0.9)]
        cfg.load_from = ckpt
        cfg.work_dir = f'{self.temp_dir.name}/stage2'
        second = self.build_runner(cfg)
        second.train()
        saved = torch.load(f'{cfg.work_dir}/iter_4.pth', map_location='cpu', weights_only=False)['state_dict']
        total = sum(saved[n].numel() for n in PRUNABLE)
        assert abs(sum(int((saved[n] == 0).sum()) for n in PRUNABLE) / total - 0.9) <= 1e-4
        for n in PRUNABLE:  # every weight pruned at 70% is still zero
            assert torch.all(saved[n][zeros70[n]] == 0), n
        cfg.custom_hooks = [dict(self.hook_cfg, sparsity=0.5)]
        cfg.work_dir = f'{self.temp_dir.name}/stage3'
        lower = self.build_runner(cfg)
        with self.assertRaisesRegex(ValueError, r'`sparsity` 0.5 is below the sparsity 0.7000 of the loaded'):
            lower.train()

    def test_curve_cache_key_covers_biases_buffers_batches_grouping(self):
        cfg = copy.deepcopy(self.cfg)
        cfg.model = dict(type='PruneToyBNModel')
        cfg.custom_hooks = [self.hook_cfg]
        runner = self.build_runner(cfg)
        hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
        hook.before_run(runner)
        batches = [dict(inputs=torch.ones(3, 2), data_samples=None)]
        key = hook._curve_source(runner.model, batches)
        assert hook._curve_source(runner.model, copy.deepcopy(batches)) == key
        other = [dict(inputs=torch.ones(3, 2) * 2, data_samples=None)]
        assert hook._curve_source(runner.model, other) != key  # other calibration samples
        with torch.no_grad():
            runner.model.linear1.bias[0] += 1  # a bias (not a pruned weight)
        assert hook._curve_source(runner.model, batches) != key
        runner.model.linear1.bias.data[0] -= 1
        assert hook._curve_source(runner.model, batches) == key
        runner.model.norm.running_var[0] += 1  # a BN buffer
        assert hook._curve_source(runner.model, batches) != key
        runner.model.norm.running_var[0] -= 1
        hook.pruner.layers[0] = dataclasses.replace(hook.pruner.layers[0], modality='camera')  # another grouping
        assert hook._curve_source(runner.model, batches) != key
