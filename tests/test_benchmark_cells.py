"""tools/_bench/plan.py and cells.py: the cell list, content keys, reuse of finished cells, rerun of stale ones."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _bench.cells import CellStore, MissingInput, Progress, fmt_duration, run_cells  # noqa: E402
from _bench.plan import Cell, Plan, expand  # noqa: E402

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
    for name in ('bevfusion-lite_cpu.py', 'quick.py'):
        plan = Plan.from_file(REPO / 'configs' / 'benchmark' / name)
        assert len(plan.hook['grid']) - 1 >= (20 if name == 'bevfusion-lite_cpu.py' else 3)
    full = Plan.from_file(REPO / 'configs' / 'benchmark' / 'bevfusion-lite_cpu.py')
    assert len(full.seeds) >= 3 and full.sparsities == [0.5, 0.7, 0.8, 0.9] and len(full.methods) == 8


def test_finished_cells_are_skipped_and_say_so(tmp_path):
    cells = [Cell('dense_train'), Cell('oneshot', method='global', sparsity=0.5, split='test')]
    first = FakeExecutor()
    results, _ = run(tmp_path, first, cells)
    assert first.ran == ['dense_train', 'oneshot/global/s50/seed-free/test']
    assert all(r['status'] == 'done' for r in results.values())
    second = FakeExecutor()
    results2, lines = run(tmp_path, second, cells)
    assert second.ran == []
    assert all('cached (key' in line and 'skipped' in line for line in lines)
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


def test_eta_counts_stored_results_as_stale_once_they_turn_out_stale(tmp_path):
    cells = [Cell('oneshot', method='global', sparsity=s, split='test') for s in (0.5, 0.7, 0.9)]
    run(tmp_path, FakeExecutor(), cells)
    clock = iter(range(0, 1000, 10)).__next__
    store = CellStore(tmp_path)
    lines = []
    stale = FakeExecutor(inputs={c.id: 'v2' for c in cells})  # e.g. the plugin changed: everything reruns
    run_cells(cells, store, stale, Progress(cells, store, {}, write=lines.append, clock=clock), clock=clock)
    assert lines[0].endswith('ETA 20s')  # not 0s: the stored results are stale like the first one


def test_fmt_duration():
    assert [fmt_duration(s) for s in (5, 65, 3600, 7325)] == ['5s', '1m', '1h00m', '2h02m']
