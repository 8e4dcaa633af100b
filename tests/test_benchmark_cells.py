"""tools/_bench/plan.py and cells.py: the cell list, content keys, reuse of finished cells, rerun of stale ones."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _bench.cells import CellStore, MissingInput, Progress, fmt_duration, run_cells  # noqa: E402
from _bench.plan import Cell, Plan, expand  # noqa: E402
import benchmark  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def small_plan(**kw) -> Plan:
    base = dict(config='c.py', seeds=[0, 1], splits={'val': {}, 'test': {'test_dataloader.dataset.data_root': 't/'}},
                sparsities=[0.5, 0.9], methods=['global', 'rd'],
                beta=dict(values=[0, 1], sparsity=0.8, choose_on_val=True, default=1.0),
                dense=dict(iters=4, eval_every=2), lsi_loss=dict(type='LogSobolevLoss'),
                finetune=dict(sparsities=[0.9], rows=[('dense', 'task'), ('rd', 'lsi')]))
    base.update(kw)
    return Plan(**base)


class FakeExecutor:
    """Keys from a dict of 'inputs' per cell id; results echo the cell; ``fail`` ids raise."""

    def __init__(self, inputs=None, fail=()):
        self.inputs, self.fail, self.ran = dict(inputs or {}), set(fail), []

    def key(self, cell, results):
        if cell.kind == 'oneshot' and results.get('dense_train', {}).get('status') == 'failed':
            raise MissingInput('the dense model failed')
        return f'{cell.id}:{self.inputs.get(cell.id, "v1")}'

    def run(self, cell, out, results):
        self.ran.append(cell.id)
        (out / 'artifact.txt').write_text('x')
        if cell.id in self.fail:
            raise RuntimeError('boom')
        return dict(metrics=dict(NDS=0.5, mAP=0.25))


def run(tmp_path, executor, cells, lines=None):
    store = CellStore(tmp_path)
    lines = [] if lines is None else lines
    return run_cells(cells, store, executor, Progress(cells, store, {}, write=lines.append)), lines


def test_expand_orders_cells_and_shares_seed_free_ones():
    cells = expand(small_plan(), train_dense=True)
    ids = [c.id for c in cells]
    assert ids[:4] == ['dense_train', 'dense_eval/iter2/val', 'dense_eval/val', 'dense_eval/test']
    # magnitude pruning uses no calibration data: one seed-free cell per sparsity; RD: one per seed
    assert 'oneshot/global/s50/seed-free/test' in ids and 'oneshot/global/s50/seed0/test' not in ids
    assert {'oneshot/rd/s90/seed0/test', 'oneshot/rd/s90/seed1/test'} <= set(ids)
    assert ids.index('curves/seed1') < ids.index('beta/rd/beta0/s80/seed0/val') < ids.index('oneshot/rd/s50/seed0/test')
    assert ids.index('oneshot/rd/s90/seed1/test') < ids.index('additivity/seed0') \
        < ids.index('finetune/dense-task/seed0/test')
    assert 'finetune/rd-lsi/s90/seed1/test' in ids
    assert len(set(ids)) == len(ids)
    with_ckpt = [c.id for c in expand(small_plan(), train_dense=False)]
    assert 'dense_train' not in with_ckpt and with_ckpt[:2] == ['dense_eval/val', 'dense_eval/test']


@pytest.mark.parametrize('change, message', [
    (dict(methods=['magic']), 'unknown entries'),
    (dict(seeds=[]), 'at least one seed'),
    (dict(sparsities=[1.0]), 'in \\(0, 1\\)'),
    (dict(lsi_loss=None), 'lsi_loss'),
    (dict(splits={'val': {}}), 'val and test'),
    (dict(splits={'val': {}, 'test': {}}), 'same data'),
])
def test_plan_validation(change, message):
    with pytest.raises(ValueError, match=message):
        small_plan(**change).validate()


def test_shipped_plans_parse():
    for name in ('bevfusion-lite_cpu.py', 'quick.py', 'minkunet-pixelfusion_cpu.py', 'minkunet_cpu.py', 'quick_seg.py'):
        plan = Plan.from_file(REPO / 'configs' / 'benchmark' / name)
        assert len(plan.hook['grid']) - 1 >= (3 if name.startswith('quick') else 20)
    for name in ('bevfusion-lite_cpu.py', 'minkunet-pixelfusion_cpu.py', 'minkunet_cpu.py'):
        full = Plan.from_file(REPO / 'configs' / 'benchmark' / name)
        assert len(full.seeds) >= 3 and full.sparsities == [0.5, 0.7, 0.8, 0.9] and len(full.methods) == 8
        assert full.beta['choose_on_val'] and full.finetune_rows()[0] == ('dense', 'task')
    nus = Plan.from_file(REPO / 'configs' / 'benchmark' / 'bevfusion-lite_cpu.py')
    nus.validate()  # its fused variant's config exists
    # every train / val dataset and the metric read the plan's generated set (the config's own root is the demo's)
    assert set(nus.model_options.values()) == {nus.synthetic['root'] + '/'}
    assert {k.split('.')[0] for k in nus.model_options} == {'train_dataloader', 'test_dataloader', 'test_evaluator'}


def test_segmentor_plans_report_miou_and_plan_their_cells():
    nus = Plan.from_file(REPO / 'configs/benchmark/bevfusion-lite_cpu.py')
    assert nus.metrics == dict(primary='NDS', secondary='mAP')  # the default: the nuScenes plan is unchanged
    fused = Plan.from_file(REPO / 'configs/benchmark/minkunet-pixelfusion_cpu.py')
    lidar = Plan.from_file(REPO / 'configs/benchmark/minkunet_cpu.py')
    for p in (fused, lidar):
        assert (p.primary, p.secondary) == ('mIoU', 'acc') and p.metric({'miou': 0.4, 'acc': 0.9}, 'mIoU') == 0.4
        assert p.synthetic['kind'] == 'semantickitti' and p.robustness is None
        assert p.splits['val'] != p.splits['test']
        cells = expand(p, train_dense=True)
        ids = [c.id for c in cells]
        # the plateau curve: checkpoints every 500 of the 2000 iterations on val, then the final model on val and test
        assert ids[:6] == ['dense_train', 'dense_eval/iter500/val', 'dense_eval/iter1000/val',
                           'dense_eval/iter1500/val', 'dense_eval/val', 'dense_eval/test']
        kinds = {k: sum(c.kind == k for c in cells) for k in dict.fromkeys(c.kind for c in cells)}
        # 5 seed-free methods x 4 sparsities + 3 calibrated ones x 4 x 3 seeds; per seed, the dense finetune row once
        # and 6 pruned rows at 70% and 90%
        assert kinds == dict(dense_train=1, dense_eval=5, curves=3, beta=18, oneshot=5 * 4 + 3 * 4 * 3, additivity=3,
                             costs=1, finetune=3 * (1 + 6 * 2))
    assert set(fused.hook['modalities']) == {'camera', 'lidar', 'fusion'} and set(lidar.hook['modalities']) == {'lidar'}
    assert lidar.hook['taps'] == dict(lidar='backbone') and lidar.config != fused.config


def test_segmentor_splits_swap_the_test_info_pkl_and_runs_skip_validation(tmp_path, monkeypatch):
    pytest.importorskip('mmdet3d')
    from _bench.configs import ConfigFactory
    from mmengine.fileio import dump
    # the calibration subset is drawn from the train info pkl: a stand-in with 5 scans under the plan's relative root
    monkeypatch.chdir(tmp_path)
    Path('data/synthetic_semantickitti').mkdir(parents=True)
    dump(dict(metainfo={}, data_list=[dict(sample_idx=i) for i in range(5)]),
         'data/synthetic_semantickitti/semantickitti_infos_train.pkl')
    p = Plan.from_file(REPO / 'configs/benchmark/minkunet-pixelfusion_cpu.py')
    f = ConfigFactory(p, str(REPO / p.config), tmp_path)
    from mmengine.config import Config
    fov = Config.fromfile(str(REPO / p.config)).camera_fov_test_pipeline  # the config's own camera-view pipeline
    for split in ('val', 'test'):
        dataset = f.evaluation(split).test_dataloader.dataset
        assert dataset.ann_file == f'semantickitti_infos_{split}.pkl' and dataset.data_root == p.synthetic['root'] + '/'
        assert dataset.pipeline == fov  # the fused plan scores the points in the camera's view
    lidar = Plan.from_file(REPO / 'configs/benchmark/minkunet_cpu.py')
    whole = ConfigFactory(lidar, str(REPO / lidar.config), tmp_path).evaluation('test').test_dataloader.dataset
    assert whole.pipeline == Config.fromfile(str(REPO / lidar.config)).test_pipeline  # the whole scan
    train = f.dense_train()
    assert train.val_cfg is None and train.val_dataloader is None and train.train_cfg.max_iters == p.dense['iters']
    assert train.default_hooks.checkpoint.interval == p.dense['eval_every']
    hook = f.pruning('mmprune4u_local', 0.8, 0, beta=1.0).default_hooks.mmprune4u
    assert hook.taps == dict(camera='img_neck', lidar='backbone') and hook.calib_batches == 1
    assert hook.calib_dataloader.dataset.ann_file == 'semantickitti_infos_train.pkl'
    indices = hook.calib_dataloader.dataset.indices
    assert len(indices) == p.calib['samples'] == 2 and set(indices) <= set(range(5))


@pytest.mark.parametrize('metrics, message', [
    (dict(primary='mIoU'), '`secondary` must be a metric name'),
    (dict(primary='mIoU', secondary='mIoU'), 'must differ'),
    (dict(primary='mIoU', secondary='acc', keys=dict(miou='mIoU')), "`keys` names \\['miou'\\], which are neither"),
    (dict(primary='mIoU', secondary='acc', key=dict(mIoU='miou')), "unknown key 'key'"),
    ('mIoU', 'must be a dict'),
])
def test_metrics_validation(metrics, message):
    with pytest.raises(ValueError, match='`metrics` is invalid: .*' + message):
        small_plan(metrics=metrics).validate()


@pytest.mark.parametrize('synthetic, message', [
    (dict(kind='kitti', root='d'), "`kind` must be one of \\['nuscenes', 'semantickitti'\\], but got kind: 'kitti'"),
    (dict(kind='semantickitti', root='d', num_train=3), "unknown key 'num_train' for kind 'semantickitti'"),
    (dict(kind='semantickitti', root='d', splits=dict(train=[0, 8], val=[8], test=[11])), 'disjoint sequences'),
    (dict(kind='semantickitti', root='d', splits=dict(train=[0], test=[11])), 'train, val and test'),
    (dict(kind='semantickitti'), '`root` must name the data folder'),
])
def test_synthetic_validation(synthetic, message):
    with pytest.raises(ValueError, match='`synthetic` is invalid: .*' + message):
        small_plan(synthetic=synthetic).validate()


ROBUST = dict(corruptions=['lidar_beams_1/4', 'camera_all_black'], seed=3,
              oneshot=dict(methods=['global', 'rd'], sparsities=[0.9]), finetune=dict(sparsities=[0.9]),
              references=dict(camera=dict(config='cam.py', checkpoint='cam.pth'), lidar=None))


def test_robustness_cells_expand_as_planned():
    p = small_plan(robustness=ROBUST)
    p.validate()
    cells = expand(p, train_dense=True)
    ids = [c.id for c in cells]
    # the only new cell is the reference model; the corruptions are evaluated inside the selected cells
    assert [i for i in ids if i not in {c.id for c in expand(small_plan(), train_dense=True)}] == \
        ['reference/camera/test']
    assert ids.index('dense_eval/test') < ids.index('reference/camera/test') < ids.index('curves/seed0')
    assert [c.id for c in cells if p.corrupted(c)] == [
        'dense_eval/test', 'oneshot/global/s90/seed-free/test', 'oneshot/rd/s90/seed0/test',
        'oneshot/rd/s90/seed1/test', 'finetune/dense-task/seed0/test', 'finetune/rd-lsi/s90/seed0/test',
        'finetune/dense-task/seed1/test', 'finetune/rd-lsi/s90/seed1/test']
    assert Cell('reference', sensor='camera', split='test').label == 'reference camera-only model on test'
    assert p.timing_class(Cell('oneshot', method='rd', sparsity=0.9, seed=0, split='test')) == 'oneshot+corrupted'
    assert p.timing_class(Cell('oneshot', method='rd', sparsity=0.5, seed=0, split='test')) == 'oneshot'
    assert not any(small_plan().corrupted(c) for c in expand(small_plan(), train_dense=True))
    eta = benchmark.default_seconds(p)
    assert eta['oneshot+corrupted'] == eta['oneshot'] + 2 * eta['dense_eval']  # one evaluation per corruption


@pytest.mark.parametrize('change, message', [
    (dict(corruptions=['lidar_rain']), "unknown corruptions \\['lidar_rain'\\]"),
    (dict(corruptions=[]), 'at least one corruption'),
    (dict(oneshot=dict(methods=['lamp'], sparsities=[0.9])), "`oneshot.methods` \\['lamp'\\] are not in"),
    (dict(oneshot=dict(methods=['rd'], sparsities=[0.8])), r"`oneshot.sparsities` \[0.8\] are not in"),
    (dict(finetune=dict(sparsities=[0.5])), r"`finetune.sparsities` \[0.5\] are not in the plan's finetune"),
    (dict(references=dict(radar=None)), "unknown sensor 'radar'"),
    (dict(references=dict(lidar=dict(config='l.py'))), 'references.lidar` must be None or dict'),
    (dict(seed='0'), '`seed` must be an int'),
    (dict(sparsity=0.9), "unknown key 'sparsity'"),
])
def test_robustness_validation(change, message):
    with pytest.raises(ValueError, match='`robustness` is invalid: .*' + message):
        small_plan(robustness=dict(ROBUST, **change)).validate()


def test_robustness_validation_names_every_problem_at_once():
    bad = dict(ROBUST, corruptions=['fog'], oneshot=dict(methods=['erk'], sparsities=[0.1]))
    with pytest.raises(ValueError) as err:
        small_plan(robustness=bad).validate()
    assert all(part in str(err.value) for part in ("['fog']", "['erk']", '[0.1]'))


def test_corrupted_configs_hold_the_corruption_and_enter_the_key(tmp_path):
    pytest.importorskip('mmdet3d')
    from _bench.execute import RealExecutor
    demo = str(REPO / 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py')

    def executor(robustness):
        ex = RealExecutor(small_plan(config=demo, robustness=robustness), demo, tmp_path, checkpoint='dense.pth')
        ex.digest = lambda path: f'digest of {path}'  # no data or weights needed: the configs are what is tested
        return ex
    clean, robust = executor(None), executor(dict(ROBUST, references={}))
    test = Cell('dense_eval', split='test')
    job = robust.job(test, {})
    assert sorted(job['configs']) == ['test', 'test@camera_all_black', 'test@lidar_beams_1/4']
    plain = [s['type'] for s in job['configs']['test'].test_dataloader.dataset.pipeline]
    lidar = job['configs']['test@lidar_beams_1/4'].test_dataloader.dataset.pipeline
    camera = job['configs']['test@camera_all_black'].test_dataloader.dataset.pipeline
    # right after the last step that loads (or range-filters) the degraded sensor, before packing
    assert [s['type'] for s in lidar] == plain[:plain.index('PointsRangeFilter') + 1] + ['LidarBeamReduce'] + \
        plain[plain.index('PointsRangeFilter') + 1:]
    assert [s['type'] for s in camera] == plain[:plain.index('MultiViewImageResizeCrop') + 1] + \
        ['CameraBlackout'] + plain[plain.index('MultiViewImageResizeCrop') + 1:]
    assert camera[plain.index('MultiViewImageResizeCrop') + 1]['seed'] == 3  # the plan's corruption seed
    assert job['configs']['test@lidar_beams_1/4'].test_dataloader.dataset.data_root == 't/'  # the test split
    assert 'test@lidar_beams_1/4' not in clean.job(test, {})['configs']
    assert clean.key(test, {}) != robust.key(test, {})
    # enabling robustness leaves the cells it does not select (so their cached results) alone
    for cell in (Cell('dense_eval', split='val'), Cell('oneshot', method='global', sparsity=0.5, split='test')):
        assert clean.key(cell, {}) == robust.key(cell, {})
    selected = Cell('oneshot', method='global', sparsity=0.9, split='test')
    assert clean.key(selected, {}) != robust.key(selected, {})
    reseeded = executor(dict(ROBUST, references={}, seed=4))
    assert reseeded.key(test, {}) != robust.key(test, {})


def test_reference_cell_evaluates_its_own_config_on_the_test_split(tmp_path):
    pytest.importorskip('mmdet3d')
    from _bench.execute import RealExecutor
    demo = str(REPO / 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py')
    lidar = str(REPO / 'configs/demo/bevfusion-lite_tiny_lidar_demo_synthetic-nus.py')
    p = small_plan(config=demo, robustness=dict(ROBUST, references=dict(lidar=dict(config=lidar, checkpoint='l.pth'))),
                   model_options={'train_dataloader.dataset.dataset.data_root': 'm/', 'model.fusion_layer': None})
    job = RealExecutor(p, demo, tmp_path, checkpoint='dense.pth').job(Cell('reference', sensor='lidar', split='test'),
                                                                      {})
    cfg = job['configs']['test']
    assert list(job['configs']) == ['test'] and job['files'] == {'checkpoint': 'l.pth'}  # evaluated clean
    assert cfg.test_dataloader.dataset.data_root == 't/'  # the test split
    assert cfg.train_dataloader.dataset.dataset.data_root == 'm/'  # the plan's data options, not its model ones
    assert [s['type'] for s in cfg.test_dataloader.dataset.pipeline][-1] == 'Pack3DDetInputs'
    assert cfg.model.img_backbone is None and cfg.model.fusion_layer.in_channels == [64]  # the LiDAR-only model


def test_finished_cells_are_skipped_and_say_so(tmp_path):
    cells = [Cell('dense_train'), Cell('oneshot', method='global', sparsity=0.5, split='test')]
    first = FakeExecutor()
    results, _ = run(tmp_path, first, cells)
    assert first.ran == ['dense_train', 'oneshot/global/s50/seed-free/test']
    assert all(r['status'] == 'done' for r in results.values())
    second = FakeExecutor()
    results2, lines = run(tmp_path, second, cells)
    assert second.ran == []
    assert all('cached in the work dir (key' in line and 'skipped' in line for line in lines)
    assert results2 == results


def test_stale_cells_rerun_and_their_old_files_go(tmp_path):
    cells = [Cell('dense_train'), Cell('oneshot', method='global', sparsity=0.5, split='test')]
    run(tmp_path, FakeExecutor(), cells)
    (tmp_path / 'cells' / 'oneshot/global/s50/seed-free/test' / 'leftover.txt').write_text('old')
    changed = FakeExecutor(inputs={'oneshot/global/s50/seed-free/test': 'v2'})  # e.g. other weights
    results, lines = run(tmp_path, changed, cells)
    assert changed.ran == ['oneshot/global/s50/seed-free/test']
    assert 're-ran (stale)' in lines[1]
    assert not (tmp_path / 'cells' / 'oneshot/global/s50/seed-free/test' / 'leftover.txt').exists()
    stored = json.loads((tmp_path / 'cells' / 'oneshot/global/s50/seed-free/test' / 'result.json').read_text())
    assert stored['key'].endswith(':v2')


def test_a_cached_cell_whose_outputs_are_gone_runs_again(tmp_path):
    cells = [Cell('dense_train')]
    run(tmp_path, FakeExecutor(), cells)
    gone = FakeExecutor()
    gone.valid = lambda cell, record: False  # e.g. its checkpoint was deleted
    run(tmp_path, gone, cells)
    assert gone.ran == ['dense_train']


def test_published_records_stand_in_for_missing_or_stale_work_dir_ones(tmp_path):
    """A fresh work dir resumes from an earlier run's json: what matches its key is reused and says where from; a
    different key, a failed record or one whose files are gone runs; the work dir's own fresh record comes first."""
    cells = [Cell('dense_train'), Cell('oneshot', method='global', sparsity=0.5, split='test'),
             Cell('oneshot', method='lamp', sparsity=0.5, split='test'), Cell('costs')]
    published, _ = run(tmp_path / 'other_machine', FakeExecutor(fail={'costs'}), cells)
    published['oneshot/lamp/s50/seed-free/test']['key'] += 'x'  # measured on other inputs
    here = FakeExecutor()
    here.valid = lambda cell, record: cell.kind != 'dense_train'  # its checkpoint stayed on the other machine
    store = CellStore(tmp_path / 'fresh', published)
    lines = []
    results = run_cells(cells, store, here, Progress(cells, store, {}, write=lines.append))
    assert here.ran == ['dense_train', 'oneshot/lamp/s50/seed-free/test', 'costs']
    assert 'cached in the published json (key oneshot/glob' in lines[1] and 'done in' in lines[2]
    assert results['oneshot/global/s50/seed-free/test'] == published['oneshot/global/s50/seed-free/test']
    assert not (tmp_path / 'fresh' / 'cells' / 'oneshot/global/s50/seed-free/test').exists()  # not copied
    again, lines = FakeExecutor(), []
    run_cells(cells, store, again, Progress(cells, store, {}, write=lines.append))
    assert again.ran == []
    assert [line.split(': ')[1].split(' (')[0] for line in lines] == [
        'cached in the work dir', 'cached in the published json', 'cached in the work dir', 'cached in the work dir']


def test_failed_cells_are_recorded_not_reused_and_dependents_say_why(tmp_path):
    cells = [Cell('dense_train'), Cell('oneshot', method='global', sparsity=0.5, split='test'), Cell('costs')]
    results, lines = run(tmp_path, FakeExecutor(fail={'dense_train'}), cells)
    assert results['dense_train']['status'] == 'failed' and 'boom' in results['dense_train']['error']
    assert (tmp_path / 'cells' / 'dense_train' / 'error.txt').is_file()
    assert results['oneshot/global/s50/seed-free/test']['status'] == 'failed'
    assert 'not run (the dense model failed)' in lines[1]
    assert results['costs']['status'] == 'done'  # the others go on
    again = FakeExecutor()
    run(tmp_path, again, cells)
    assert again.ran == ['dense_train', 'oneshot/global/s50/seed-free/test']  # a failure is never reused


def test_progress_line_shows_position_and_eta(tmp_path):
    cells = [Cell('oneshot', method='global', sparsity=s, split='test') for s in (0.5, 0.7, 0.9)]
    clock = iter(range(0, 1000, 10)).__next__  # every call advances 10 s
    store = CellStore(tmp_path)
    lines = []
    progress = Progress(cells, store, {'oneshot': 100.0}, write=lines.append, clock=clock)
    run_cells(cells, store, FakeExecutor(), progress, clock=clock)
    assert lines[0].startswith('[bench 1/3] oneshot global magnitude 50% seed-free on test: done in 10s: NDS 0.5000')
    assert lines[0].endswith('ETA 20s')  # two cells left at the measured 10 s each (not the 100 s default)
    assert lines[-1].endswith('ETA 0s')


def test_progress_line_shows_the_plans_metrics(tmp_path):
    class SegExecutor(FakeExecutor):
        def run(self, cell, out, results):
            return dict(metrics=dict(miou=0.4, acc=0.9, acc_cls=0.5))
    cells = [Cell('oneshot', method='global', sparsity=0.5, split='test')]
    store, lines = CellStore(tmp_path), []
    progress = Progress(cells, store, {}, write=lines.append, metrics=dict(primary='mIoU', secondary='acc',
                                                                           keys=dict(mIoU='miou')))
    run_cells(cells, store, SegExecutor(), progress)
    assert ': mIoU 0.4000, acc 0.9000 |' in lines[0] and 'NDS' not in lines[0]


def test_eta_counts_stored_results_as_stale_once_they_turn_out_stale(tmp_path):
    cells = [Cell('oneshot', method='global', sparsity=s, split='test') for s in (0.5, 0.7, 0.9)]
    run(tmp_path, FakeExecutor(), cells)
    clock = iter(range(0, 1000, 10)).__next__
    store = CellStore(tmp_path)
    lines = []
    stale = FakeExecutor(inputs={c.id: 'v2' for c in cells})  # e.g. the plugin changed: everything reruns
    run_cells(cells, store, stale, Progress(cells, store, {}, write=lines.append, clock=clock), clock=clock)
    assert lines[0].endswith('ETA 20s')  # not 0s: the stored results are stale like the first one


def test_eta_counts_stored_results_of_an_unseen_kind_in_full(tmp_path):
    dense = Cell('dense_eval', split='test')
    pruned = [Cell('oneshot', method='global', sparsity=s, split='test') for s in (0.5, 0.7)]
    cells = [dense, *pruned]
    run(tmp_path, FakeExecutor(), cells)
    clock = iter(range(0, 1000, 10)).__next__
    store, lines = CellStore(tmp_path), []
    stale = FakeExecutor(inputs={c.id: 'v2' for c in pruned})  # the pruner changed: the dense cell stays fresh
    run_cells(cells, store, stale, Progress(cells, store, {'oneshot': 100.0}, write=lines.append, clock=clock),
              clock=clock)
    assert 'cached' in lines[0] and lines[0].endswith('ETA 3m')  # the two stored one-shot results in full (0 s was)
    assert lines[1].endswith('ETA 10s')  # one of one stored one-shot result turned out stale: the other counts


def test_eta_groups_durations_by_timing_class(tmp_path):
    p = small_plan(robustness=ROBUST)
    cells = [Cell('oneshot', method='rd', sparsity=s, seed=0, split='test') for s in (0.9, 0.5, 0.9)]
    cells[2] = Cell('oneshot', method='rd', sparsity=0.9, seed=1, split='test')
    clock = iter(range(0, 1000, 10)).__next__
    store = CellStore(tmp_path)
    lines = []
    progress = Progress(cells, store, {'oneshot': 50.0, 'oneshot+corrupted': 500.0}, write=lines.append, clock=clock,
                        timing=p.timing_class)
    run_cells(cells, store, FakeExecutor(), progress, clock=clock)
    assert lines[0].endswith('ETA 1m')  # the plain cell at its 50 s default + the corrupted one at the measured 10 s


def test_fmt_duration():
    assert [fmt_duration(s) for s in (5, 65, 3600, 7325)] == ['5s', '1m', '1h00m', '2h02m']


RECIPE = dict(recipe='modalities', iters=6, iters2=4, eval_every=2, img_pretrain_iters=3, seed=5, jobs=2,
              work_dir='work_dirs/recipe_test')
FUSED_CONFIG = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus_lidar-dropout_cam-lr0.1.py'


@pytest.mark.parametrize('dense, message', [
    (dict(RECIPE, recipe='twostage'), "`dense.recipe` must be None or one of \\['modalities'\\]"),
    (dict(RECIPE, iters2=0), 'needs iters \\(stage 1\\) and iters2 \\(stage 2\\) > 0'),
    (dict(iters=6, eval_every=2, fused_variant=f'a={FUSED_CONFIG}'), 'give it with that recipe'),
    (dict(RECIPE, fused_variant=FUSED_CONFIG), '`dense.fused_variant`: expected NAME=CONFIG'),
    (dict(RECIPE, fused_variant='a=configs/demo/no_such.py'), "config of fused variant 'a' not found"),
])
def test_dense_recipe_validation(dense, message):
    with pytest.raises(ValueError, match=message):
        small_plan(dense=dense).validate()


def test_dense_recipe_curve_is_over_the_fused_stage_and_its_references_need_it():
    ids = [c.id for c in expand(small_plan(dense=RECIPE), train_dense=True)]
    assert ids[:4] == ['dense_train', 'dense_eval/iter2/val', 'dense_eval/val', 'dense_eval/test']  # over iters2 = 4
    refs = dict(ROBUST, references=dict(lidar=dict(config='l.py', checkpoint='dense_recipe')))
    small_plan(dense=RECIPE, robustness=refs).validate()
    with pytest.raises(ValueError, match="needs `dense.recipe='modalities'`"):
        small_plan(robustness=refs).validate()
    assert benchmark.default_seconds(small_plan(dense=RECIPE))['dense_train'] == 2.5 * (6 + 4) + 600


def test_dense_recipe_runs_compare_modalities_and_feeds_its_models_to_later_cells(tmp_path):
    """The dense cell runs tools/compare_modalities.py with the plan's arguments (in the key with the tool's code);
    the reference cells read the recipe's single-sensor checkpoints from its result."""
    pytest.importorskip('mmdet3d')
    from _bench.execute import RECIPE_FILES, RealExecutor
    demo = str(REPO / 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py')
    lidar = str(REPO / 'configs/demo/bevfusion-lite_tiny_lidar_demo_synthetic-nus.py')
    refs = dict(ROBUST, references=dict(lidar=dict(config=lidar, checkpoint='dense_recipe')))
    ex = RealExecutor(small_plan(config=demo, dense=RECIPE, robustness=refs), demo, tmp_path)
    ex.digest = lambda path: f'digest of {Path(path).name}'
    job = ex.job(Cell('dense_train'), {})
    assert job['extra']['recipe'] == ['--work-dir', 'work_dirs/recipe_test', '--iters', '6', '--iters2',
                                      '4', '--img-pretrain-iters', '3', '--seed', '5', '--checkpoint-interval', '2',
                                      '--jobs', '2']
    dropout = RealExecutor(small_plan(config=demo, dense=dict(RECIPE, lidar_dropout=True), robustness=refs), demo,
                           tmp_path)
    assert dropout.job(Cell('dense_train'), {})['extra']['recipe'][-1] == '--lidar-dropout'
    # a fused variant as the dense model: passed to the tool, its resolved content (bases too) in the key
    chosen = RealExecutor(small_plan(config=demo, dense=dict(RECIPE, fused_variant=f'slow-cam={FUSED_CONFIG}'),
                                     robustness=refs), demo, tmp_path)
    chosen.digest = ex.digest
    fused_job = chosen.job(Cell('dense_train'), {})
    assert fused_job['extra']['recipe'][-2:] == ['--fused-variant', f'slow-cam={FUSED_CONFIG}']
    content = fused_job['extra']['recipe_fused_variant']
    assert content['optim_wrapper']['paramwise_cfg']['custom_keys']['img_backbone']['lr_mult'] == 0.1
    assert chosen.key(Cell('dense_train'), {}) != ex.key(Cell('dense_train'), {})
    assert sorted(job['extra']['recipe_code']) == sorted(RECIPE_FILES)
    # the plan's synthetic train/val set is the recipe's (generated under one key by both)
    syn = dict(root='data/synth_x', num_train=7, num_val=3, test_root='data/t', test_seed=1, num_test=2)
    with_data = RealExecutor(small_plan(config=demo, dense=RECIPE, robustness=refs, synthetic=syn), demo, tmp_path)
    assert with_data.recipe_args()[-6:] == ['--data-root', 'data/synth_x', '--num-train', '7', '--num-val', '3']
    key = ex.key(Cell('dense_train'), {})
    ex.digest = lambda path: 'edited' if Path(path).name == 'compare_modalities.py' else f'digest of {Path(path).name}'
    assert ex.key(Cell('dense_train'), {}) != key  # the recipe's code is in the key
    reference = Cell('reference', sensor='lidar', split='test')
    with pytest.raises(MissingInput, match='comes from the dense recipe'):
        ex.job(reference, {})
    done = {'dense_train': dict(status='done', result=dict(checkpoint='f.pth', checkpoints={},
                                                            references=dict(lidar='l2.pth', camera='c2.pth')))}
    assert ex.job(reference, done)['files'] == {'checkpoint': 'l2.pth'}


def test_dense_recipe_result_names_the_fused_checkpoints_and_the_references(tmp_path, monkeypatch):
    """What _run_dense_recipe makes of compare_modalities' summary (the tool itself faked: it takes an hour)."""
    pytest.importorskip('mmdet3d')
    import subprocess
    from _bench.execute import RealExecutor
    work = tmp_path / 'recipe'
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        fused = work / 'stage2_lidar-camera'
        fused.mkdir(parents=True)
        for it in (2, 4):
            (fused / f'iter_{it}.pth').write_text('w')
        (fused / 'last_checkpoint').write_text(str(fused / 'iter_4.pth'))
        # as the tool records them: relative to the repository (here through '..') or absolute
        summary = dict(results={'lidar (stage 2)': {'metrics': {'x/NDS': 0.3}}}, checkpoints={
            'stage2_lidar-camera': os.path.relpath(fused / 'iter_4.pth', REPO), 'stage2_lidar': '/abs/l.pth',
            'stage2_camera': 'work_dirs/c.pth'})
        variant = work / 'stage2_lidar-camera_slow-cam'  # --fused-variant slow-cam=...: its own stage-2 run
        variant.mkdir()
        (variant / 'iter_6.pth').write_text('v')
        summary['checkpoints']['stage2_lidar-camera_slow-cam'] = str(variant / 'iter_6.pth')
        (work / 'modalities.json').write_text(json.dumps(summary))
        return subprocess.CompletedProcess(cmd, 0)
    monkeypatch.setattr(subprocess, 'run', fake_run)
    demo = str(REPO / 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py')
    ex = RealExecutor(small_plan(config=demo, dense=dict(RECIPE, work_dir=str(work))), demo, tmp_path)
    out = tmp_path / 'cell'
    out.mkdir()
    result = ex._run_dense_recipe(ex.recipe_args(), out)
    assert calls[0][1].endswith('tools/compare_modalities.py') and calls[0][2:4] == ['--work-dir', str(work)]
    fused = REPO / os.path.relpath(work / 'stage2_lidar-camera', REPO)
    assert Path(result['checkpoint']).resolve() == (work / 'stage2_lidar-camera' / 'iter_4.pth').resolve()
    assert result['checkpoints'] == {str(i): str(fused / f'iter_{i}.pth') for i in (2, 4)}
    assert result['references'] == dict(lidar='/abs/l.pth', camera=str(REPO / 'work_dirs/c.pth'))
    assert result['modalities'] == {'lidar (stage 2)': {'metrics': {'x/NDS': 0.3}}}
    # with dense.fused_variant the variant's stage-2 run is the dense model; the references stay the same
    shutil.rmtree(work)
    variant = dict(RECIPE, work_dir=str(work), fused_variant=f'slow-cam={FUSED_CONFIG}')
    ex = RealExecutor(small_plan(config=demo, dense=variant), demo, tmp_path)
    result = ex._run_dense_recipe(ex.recipe_args(), out)
    assert result['checkpoint'] == str(work / 'stage2_lidar-camera_slow-cam' / 'iter_6.pth')
    assert result['checkpoints'] == {'6': str(work / 'stage2_lidar-camera_slow-cam' / 'iter_6.pth')}
    assert result['references'] == dict(lidar='/abs/l.pth', camera=str(REPO / 'work_dirs/c.pth'))
    monkeypatch.setattr(subprocess, 'run', lambda cmd, **kw: subprocess.CompletedProcess(cmd, 3))
    with pytest.raises(RuntimeError, match='compare_modalities.py failed \\(exit 3\\)'):
        ex._run_dense_recipe(ex.recipe_args(), out)


def test_reference_cells_skip_the_sparsity_report(tmp_path, monkeypatch):
    """The fused model's modality patterns name a group the single-sensor model lacks: its (dense) evaluation asks
    for metrics only."""
    pytest.importorskip('mmdet3d')
    from _bench.execute import RealExecutor
    demo = str(REPO / 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py')
    lidar = str(REPO / 'configs/demo/bevfusion-lite_tiny_lidar_demo_synthetic-nus.py')
    p = small_plan(config=demo, robustness=dict(ROBUST, references=dict(lidar=dict(config=lidar, checkpoint='l.pth'))))
    ex = RealExecutor(p, demo, tmp_path, checkpoint='dense.pth')
    calls = []
    monkeypatch.setattr(ex, 'evaluate', lambda cfg, ckpt, out, **kw: calls.append((ckpt, kw)) or {'metrics': {}})
    cell = Cell('reference', sensor='lidar', split='test')
    ex._run_reference(cell, tmp_path, ex.job(cell, {}), {})
    assert calls == [('l.pth', {'sparsity': False})]


def test_partial_report_reuses_fresh_cells_and_runs_nothing(tmp_path):
    """run=False (tools/benchmark.py --report-partial, while a run is under way): fresh stored cells are reported,
    the others are 'missing' (stale ones too), nothing runs and nothing is written."""
    cells = [Cell('dense_train'), Cell('oneshot', method='global', sparsity=0.5, split='test'), Cell('costs')]
    run(tmp_path, FakeExecutor(), cells[:2])
    store = CellStore(tmp_path)
    lazy = FakeExecutor(inputs={'oneshot/global/s50/seed-free/test': 'v2'})
    results = run_cells(cells, store, lazy, Progress(cells, store, {}, write=lambda line: None), run=False)
    assert lazy.ran == []
    assert [results[c.id]['status'] for c in cells] == ['done', 'missing', 'missing']
    assert not (tmp_path / 'cells' / 'costs').exists()
    assert json.loads((tmp_path / 'cells' / 'oneshot' / 'global' / 's50' / 'seed-free' / 'test' / 'result.json')
                      .read_text())['key'].endswith(':v1')  # the stale cell is left for the run to redo


def test_partial_report_says_so():
    from _bench import markdown, report
    p = small_plan()
    cells = {c.id: dict(status='missing', cell=c.spec(), error='not run yet') for c in expand(p, train_dense=False)}
    cells['dense_eval/val'] = dict(status='done', cell=Cell('dense_eval', split='val').spec(),
                                   result=dict(metrics=dict(NDS=0.4, mAP=0.39)))
    meta = dict(command='c', date='d', machine='m', config='c.py', checkpoint='x', plan=p.__dict__)
    text = markdown.render(meta, report.figures(cells, p), {})
    assert f'**Partial report**: 1 of {len(cells)} cells have run' in text and '**Failed cells**' not in text


def test_curves_digest_is_of_the_curves_not_of_their_timing(tmp_path):
    """A seed's curves measured again (a fresh work dir) hold other timings: the cells that read them keep their
    keys; other values change them."""
    pytest.importorskip('mmdet3d')
    import numpy as np
    from _bench.execute import curves_digest
    from mmprune4u_plugin.core.curves import DistortionCurves

    def save(name, task, seconds):
        grid = np.array([0.0, 0.5])
        curves = DistortionCurves(['a', 'b'], ['camera', 'lidar'], [4, 8], grid, np.array(task),
                                  np.zeros((2, 2)), {}, 'exact', dict(seconds=seconds), 'weights+batches')
        curves.save(tmp_path / name)
        return tmp_path / name

    first = save('first.npz', [[0.0, 1.0], [0.0, 2.0]], 363.9)
    again = save('again.npz', [[0.0, 1.0], [0.0, 2.0]], 410.2)
    other = save('other.npz', [[0.0, 1.0], [0.0, 2.5]], 363.9)
    assert first.read_bytes() != again.read_bytes()
    digest = {p.name: curves_digest(DistortionCurves.load(p)) for p in (first, again, other)}
    assert digest['first.npz'] == digest['again.npz'] != digest['other.npz']
