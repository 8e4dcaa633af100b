"""tools/_bench/workers.py and run_cells with claims: several processes share one benchmark work dir (--jobs)."""
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _bench.cells import CellStore, MissingInput, Progress, run_cells  # noqa: E402
from _bench.plan import Cell, expand  # noqa: E402
from _bench.workers import Claims, prerequisites  # noqa: E402
import benchmark  # noqa: E402

OTHER = 424242  # a pid standing for another process (its liveness is what ``alive`` says)


def cells_abc():
    return [Cell('oneshot', method='global', sparsity=s, split='test') for s in (0.5, 0.7, 0.9)]


class Recorder:
    """Keys are the cell ids; running a cell appends its id to ``ran`` and to a shared file (``log``)."""

    def __init__(self, log=None, seconds=0.0):
        self.ran, self.log, self.seconds = [], log, seconds

    def key(self, cell, results):
        return cell.id

    def run(self, cell, out, results):
        self.ran.append(cell.id)
        self.write('start', cell)
        time.sleep(self.seconds)
        self.write('end', cell)
        return dict(metrics=dict(NDS=0.5, mAP=0.25), pid=os.getpid())

    def write(self, event, cell):
        if self.log is not None:
            with open(self.log, 'a') as f:
                f.write(f'{event} {os.getpid()} {cell.id}\n')


def record(key, status='done'):
    return dict(status=status, key=key, cell={}, seconds=3.0, result=dict(metrics=dict(NDS=0.1, mAP=0.2)))


def run(tmp_path, executor, cells, claims, needs=None):
    store, lines = CellStore(tmp_path), []
    results = run_cells(cells, store, executor, Progress(cells, store, {}, write=lines.append), claims=claims,
                        needs=needs)
    return results, lines


# ------------------------------------------------------------------------------------------------ Claims
def test_claim_is_exclusive_until_released(tmp_path):
    cell = cells_abc()[0]
    mine = Claims(tmp_path, pid=1, alive=lambda pid: True)
    other = Claims(tmp_path, pid=2, alive=lambda pid: True)
    assert mine.acquire(cell) is None and mine.path(cell).read_text() == '1'
    assert other.acquire(cell) == 1 and other.holder(cell) == 1
    assert mine.acquire(cell) is None  # holding it already
    other.release(cell)  # not its claim: nothing happens
    assert mine.path(cell).is_file()
    mine.release(cell)
    assert not mine.path(cell).exists() and other.acquire(cell) is None


def test_claim_of_a_dead_process_is_taken_over(tmp_path):
    cell = cells_abc()[0]
    Claims(tmp_path, pid=7, alive=lambda pid: True).acquire(cell)
    taker = Claims(tmp_path, pid=8, alive=lambda pid: pid != 7)
    assert taker.holder(cell) is None
    assert taker.acquire(cell) is None and taker.path(cell).read_text() == '8'


def test_unwritten_claim_is_held_for_the_grace_time_only(tmp_path):
    cell = cells_abc()[0]
    now = [0.0]
    claims = Claims(tmp_path, pid=1, clock=lambda: now[0])
    path = claims.path(cell)
    path.parent.mkdir(parents=True)
    path.write_text('')  # created, pid not written yet
    now[0] = path.stat().st_mtime + 59
    assert claims.holder(cell) == -1 and claims.acquire(cell) == -1
    now[0] = path.stat().st_mtime + 61
    assert claims.holder(cell) is None and claims.acquire(cell) is None


def test_real_pid_liveness(tmp_path):
    cell = cells_abc()[0]
    proc = multiprocessing.get_context('fork').Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()  # reaped: its pid no longer exists
    claims = Claims(tmp_path)
    claims.path(cell).parent.mkdir(parents=True)
    claims.path(cell).write_text(str(proc.pid))
    assert claims.holder(cell) is None
    claims.path(cell).write_text(str(os.getppid()))  # alive
    assert claims.holder(cell) == os.getppid()


def test_costs_is_the_last_cell_of_a_plan():
    from test_benchmark_cells import small_plan
    cells = expand(small_plan(costs={'probes': 1}), train_dense=True)
    assert cells[-1].kind == 'costs' and cells[-2].kind == 'finetune'


def test_prerequisites():
    curves = Cell('curves', seed=1)
    assert prerequisites(Cell('oneshot', method='rd', sparsity=0.5, seed=1, split='test'), []) == {curves.id}
    assert prerequisites(Cell('finetune', method='rd', variant='lsi', sparsity=0.9, seed=1, split='test'),
                         []) == {curves.id}
    assert prerequisites(curves, []) == set()
    assert prerequisites(Cell('oneshot', method='global', sparsity=0.5, split='test'), []) == set()
    assert prerequisites(Cell('additivity', seed=0), []) is None and prerequisites(Cell('costs', seed=0), []) is None


def held_elsewhere(tmp_path, store, cell, on_wait=lambda: None):
    """Claims of this process (pid 1) while OTHER holds ``cell``: waiting for it (their ``sleep``) makes OTHER store
    its result and let its claim go."""
    def other_finishes(seconds):
        on_wait()
        store.folder(cell).mkdir(parents=True, exist_ok=True)
        store.save(cell, record(cell.id))
        Claims(tmp_path, pid=OTHER).release(cell)
    Claims(tmp_path, pid=OTHER).acquire(cell)
    return Claims(tmp_path, pid=1, alive=lambda pid: pid == OTHER, sleep=other_finishes)


# ------------------------------------------------------------------------------------------------ run_cells
def test_cell_claimed_elsewhere_is_left_to_it_and_its_result_taken(tmp_path):
    a, b, c = cells_abc()
    store = CellStore(tmp_path)

    claims = held_elsewhere(tmp_path, store, b)
    ex = Recorder()
    results, lines = run(tmp_path, ex, [a, b, c], claims)
    assert ex.ran == [a.id, c.id]
    assert list(results) == [a.id, b.id, c.id] and results[b.id]['result']['metrics']['NDS'] == 0.1
    assert f'claimed by process {OTHER}' in lines[1]
    assert 'run by another process: done: NDS 0.1000, mAP 0.2000' in lines[-1]
    assert not any(claims.path(cell).exists() for cell in (a, b, c))  # all released


def test_prerequisite_is_waited_for_before_the_cell_that_reads_it(tmp_path):
    curves, oneshot = Cell('curves', seed=0), Cell('oneshot', method='rd', sparsity=0.5, seed=0, split='test')
    store, order = CellStore(tmp_path), []

    claims = held_elsewhere(tmp_path, store, curves, on_wait=lambda: order.append('waited'))

    class Ordered(Recorder):
        def run(self, cell, out, results):
            order.append(cell.id)
            assert results[curves.id]['status'] == 'done'
            return super().run(cell, out, results)
    run(tmp_path, Ordered(), [curves, oneshot], claims, needs=prerequisites)
    assert order == ['waited', oneshot.id]


def test_missing_input_waits_for_pending_cells_then_retries(tmp_path):
    dense, ev = Cell('dense_train'), Cell('dense_eval', split='test')
    store = CellStore(tmp_path)

    claims = held_elsewhere(tmp_path, store, dense)

    class NeedsDense(Recorder):
        def key(self, cell, results):
            if cell.kind == 'dense_eval' and dense.id not in results:
                raise MissingInput('the dense model is missing')
            return cell.id
    ex = NeedsDense()
    results, _ = run(tmp_path, ex, [dense, ev], claims)
    assert ex.ran == [ev.id] and results[ev.id]['status'] == 'done'


def test_cell_of_a_claimer_that_died_without_result_is_run_here(tmp_path):
    a, b, c = cells_abc()
    alive = {OTHER}
    Claims(tmp_path, pid=OTHER).acquire(b)
    claims = Claims(tmp_path, pid=1, alive=lambda pid: pid in alive, sleep=lambda s: alive.clear())
    ex = Recorder()
    results, _ = run(tmp_path, ex, [a, b, c], claims)
    assert ex.ran == [a.id, c.id, b.id] and all(r['status'] == 'done' for r in results.values())


def shared_cells():
    return cells_abc() + [Cell('oneshot', method='lamp', sparsity=s, split='test') for s in (0.5, 0.7, 0.9)] + \
        [Cell('costs', seed=0)]


def _worker(work, log, barrier):
    cells = shared_cells()
    store = CellStore(work)
    barrier.wait()
    results = run_cells(cells, store, Recorder(log, seconds=0.2), Progress(cells, store, {}, write=lambda line: None),
                        claims=Claims(work, poll_s=0.05), needs=prerequisites)
    Path(work, f'results_{os.getpid()}.json').write_text(json.dumps({k: r['result']['pid'] for k, r in
                                                                     results.items()}))


def test_two_processes_run_every_cell_once(tmp_path):
    """Two real processes on one work dir: each cell runs exactly once, both end with every result."""
    ctx = multiprocessing.get_context('fork')
    log, barrier = tmp_path / 'ran.txt', ctx.Barrier(2)
    procs = [ctx.Process(target=_worker, args=(tmp_path, log, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events = [line.split() for line in log.read_text().splitlines()]
    ran = [(pid, cell) for event, pid, cell in events if event == 'start']
    assert sorted(cell for _, cell in ran) == sorted(c.id for c in shared_cells())  # each exactly once
    assert len({pid for pid, _ in ran}) == 2  # the work was shared
    # costs (needs every earlier cell) starts once every other cell has ended: it runs alone
    assert events[-2:] == [['start', events[-2][1], 'costs'], ['end', events[-2][1], 'costs']]
    outs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob('results_*.json'))]
    assert len(outs) == 2 and outs[0] == outs[1] == {cell: int(pid) for pid, cell in ran}


# ------------------------------------------------------------------------------------------------ the CLI
def test_worker_argv_drops_jobs_and_adds_worker():
    assert benchmark.worker_argv(['--plan', 'p.py', '--jobs', '2', '--keep-checkpoints']) == \
        ['--plan', 'p.py', '--keep-checkpoints', '--worker']
    assert benchmark.worker_argv(['--jobs=3']) == ['--worker']


@pytest.mark.parametrize('argv', [['--jobs', '0'], ['--jobs', '2', '--report-only'], ['--worker', '--report-partial']])
def test_jobs_arguments_checked(argv, capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(argv)
    assert 'error' in capsys.readouterr().err


def test_thread_env_splits_the_cores_unless_set():
    assert benchmark.thread_env(2, {}, 2) == {'OMP_NUM_THREADS': '1'}
    assert benchmark.thread_env(2, {}, 16) == {'OMP_NUM_THREADS': '8'}
    assert benchmark.thread_env(3, {}, 2) == {'OMP_NUM_THREADS': '1'}
    assert benchmark.thread_env(2, {'OMP_NUM_THREADS': '4'}, 2) == {}  # the caller's choice stands
    assert benchmark.thread_env(1, {}, 2) == {}
