"""Running the cells: content keys, the on-disk cache, progress lines with an ETA.

Each cell's result is stored in ``<work-dir>/cells/<cell id>/result.json`` with the key of what it depends on
(computed by the executor: the resolved configs, the digests of the checkpoint and data files, the method settings,
the plugin's version and the code that ran it). A cell whose stored key matches is reused, and the progress line says
so; a cell whose key differs is stale: its folder is wiped and it runs again. The records of a published json (an
earlier run's, e.g. committed by another session) are reused by the same rule where the work dir has none. A failed
cell is recorded as failed (never reused) and the run goes on; cells that need its result fail in turn with a message
naming it.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Protocol, Sequence

from .metrics import DEFAULT_METRICS, metric_value
from .plan import Cell

RESULT = 'result.json'


class MissingInput(RuntimeError):
    """A cell needs the result of another cell that is missing or failed."""


class Executor(Protocol):
    def key(self, cell: Cell, results: dict[str, dict]) -> str:
        """Digest of everything ``cell`` depends on (may raise :class:`MissingInput`)."""

    def run(self, cell: Cell, out: Path, results: dict[str, dict]) -> dict:
        """Run ``cell`` with its files in ``out``; return its result (plain JSON data)."""

    def valid(self, cell: Cell, record: dict) -> bool:
        """Optional: False when a stored result's files that later cells read are gone (then it runs again)."""


class CellStore:
    """``<root>/cells/<id>/result.json`` per cell, and the finished records of a published json.

    ``published`` (``{cell id: record}``, the ``cells`` of an earlier run's json, e.g. one committed by another
    session on another machine) answers for the cells whose work-dir record is missing or stale: a published record
    is reused only when it finished and its key matches, as a stored one is (a cell whose files later cells read,
    the dense model or a curve cache, runs again when they are not on this machine: ``Executor.valid``).
    """

    def __init__(self, root: Path, published: dict[str, dict] | None = None) -> None:
        self.root = Path(root) / 'cells'
        self.published = {k: r for k, r in (published or {}).items() if r.get('status') == 'done'}

    def folder(self, cell: Cell) -> Path:
        return self.root / cell.id

    def load(self, cell: Cell) -> dict | None:
        """The work dir's record of ``cell``, else the published one (None: neither)."""
        local = self.load_local(cell)
        return local if local is not None else self.published.get(cell.id)

    def load_local(self, cell: Cell) -> dict | None:
        path = self.folder(cell) / RESULT
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:  # a run killed while writing: not a result
            return None

    def save(self, cell: Cell, record: dict) -> None:
        path = self.folder(cell) / RESULT
        tmp = path.with_suffix('.tmp')
        tmp.write_text(json.dumps(record, indent=1, allow_nan=False))
        tmp.replace(path)  # atomic: a result file is complete or absent

    def fresh(self, cell: Cell, key: str) -> tuple[dict, str] | tuple[None, None]:
        """The record that finished with this key and where it was found (``'work dir'``, else ``'published
        json'``), or ``(None, None)``."""
        for source, record in (('work dir', self.load_local(cell)), ('published json', self.published.get(cell.id))):
            if record is not None and record.get('status') == 'done' and record.get('key') == key:
                return record, source
        return None, None


class Progress:
    """One line per cell: ``[bench 12/80] <label>: <what happened> | elapsed 25m, ETA 1h12m``.

    The ETA sums, over the cells still to come, the mean duration of finished cells of the same timing class in this
    run, else the duration recorded in the cell's previous result, else ``defaults[class]`` (else ``defaults[kind]``).
    The class is ``timing(cell)``, by default the kind (the benchmark's plan separates the cells that also evaluate
    under corruption, which take several evaluations longer). A finished cell's line shows its primary and secondary
    metric (``metrics``: the plan's; NDS and mAP by default). With ``workers`` processes sharing the cells, the
    ETA is the sum over ``workers``. A cell with a stored result counts with the share of stored results of its kind
    that turned out stale so far in this run (none of its kind seen yet: in full), since whether it is reused is
    known only once the cells before it have run. By kind, because the keys of different kinds hold different code
    (an edit of the pruner leaves the dense model's cells fresh and makes every pruning cell stale).
    """

    def __init__(self, cells: Sequence[Cell], store: CellStore, defaults: dict[str, float],
                 write: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time,
                 timing: Callable[[Cell], str] | None = None, metrics: dict | None = None,
                 workers: int = 1) -> None:
        self.cells, self.store, self.defaults = list(cells), store, dict(defaults)
        self.workers = max(1, int(workers))  # processes sharing the cells (--jobs): the ETA divides by them
        self.metrics = dict(metrics or DEFAULT_METRICS)
        self.timing = timing or (lambda cell: cell.kind)
        self.write = write or (lambda line: print(line, flush=True))
        self.clock = clock
        self.start = clock()
        self.durations: dict[str, list[float]] = {}
        self.previous = {c.id: (self.store.load(c) or {}) for c in self.cells}
        self.stored_seen: dict[str, int] = {}  # by kind: stored results met so far
        self.stored_stale: dict[str, int] = {}  # and how many of them ran again

    def estimate(self, cell: Cell) -> float:
        record = self.previous.get(cell.id, {})
        klass = self.timing(cell)
        seen = self.durations.get(klass)
        default = self.defaults.get(klass, self.defaults.get(cell.kind, 60.0))
        full = sum(seen) / len(seen) if seen else float(record.get('seconds') or default)
        if record.get('status') == 'done':
            seen = self.stored_seen.get(cell.kind, 0)
            return full * (self.stored_stale.get(cell.kind, 0) / seen if seen else 1.0)
        return full

    def report(self, index: int, cell: Cell, message: str, seconds: float | None = None) -> None:
        if self.previous.get(cell.id, {}).get('status') == 'done':
            self.stored_seen[cell.kind] = self.stored_seen.get(cell.kind, 0) + 1
            self.stored_stale[cell.kind] = self.stored_stale.get(cell.kind, 0) + (seconds is not None)  # ran again
        if seconds is not None:
            self.durations.setdefault(self.timing(cell), []).append(seconds)
        remaining = sum(self.estimate(c) for c in self.cells[index + 1:]) / self.workers
        self.write(f'[bench {index + 1}/{len(self.cells)}] {cell.label}: {message} | elapsed '
                   f'{fmt_duration(self.clock() - self.start)}, ETA {fmt_duration(remaining)}')


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds}s'
    minutes = seconds // 60
    return f'{minutes}m' if minutes < 60 else f'{minutes // 60}h{minutes % 60:02d}m'


def run_cells(cells: Sequence[Cell], store: CellStore, executor: Executor, progress: Progress,
              clock: Callable[[], float] = time.time, *, run: bool = True, claims=None,
              needs: Callable[[Cell, list[Cell]], set[str] | None] | None = None) -> dict[str, dict]:
    """Run (or reuse) every cell in order; returns ``{cell id: record}`` of all cells in their order, failed ones
    included. ``run=False``: reuse only (a partial report while a run is under way): a cell without a fresh stored
    result is recorded as ``missing``.

    ``claims`` (a :class:`~.workers.Claims`): other processes run cells of the same work dir at the same time. A cell
    another live process has claimed is left to it and its stored result taken later: before a cell whose
    ``needs(cell, cells)`` names it (None: every such cell), before retrying a cell whose key raised
    :class:`MissingInput`, and at the end. A claimer that died without a result leaves the cell to this process."""
    cells = list(cells)
    results: dict[str, dict] = {}
    pending: dict[str, tuple[int, Cell, str]] = {}  # claimed by another process: (index, cell, key)

    def settle(ids: set[str] | None) -> None:
        for cell_id in [i for i in pending if ids is None or i in ids]:
            index, cell, key = pending.pop(cell_id)
            claims.wait(cell)
            record = store.load_local(cell)
            if record is not None and record.get('key') == key and record.get('status') in ('done', 'failed'):
                results[cell_id] = record
                outcome = ('done' + _headline(record.get('result'), progress.metrics) if record['status'] == 'done'
                           else f'FAILED: {record.get("error")}')
                progress.report(index, cell, f'run by another process: {outcome}', record.get('seconds'))
            else:  # its claimer died before storing it
                one(index, cell)

    def one(index: int, cell: Cell) -> None:
        try:
            key = executor.key(cell, results)
        except MissingInput as err:
            if pending:  # what it needs may be one of them
                settle(None)
                return one(index, cell)
            results[cell.id] = dict(status='failed' if run else 'missing', cell=cell.spec(), error=f'not run: {err}')
            if run:
                progress.report(index, cell, f'not run ({err})')
            return
        record, source = store.fresh(cell, key)
        if record is not None and not getattr(executor, 'valid', lambda c, r: True)(cell, record):
            record = None  # its outputs were deleted (or were on another machine): run it again
        if record is None and run and claims is not None:
            holder = claims.acquire(cell)
            if holder is not None:
                pending[cell.id] = (index, cell, key)
                progress.write(f'[bench {index + 1}/{len(cells)}] {cell.label}: claimed by process {holder}, '
                               'its result is taken when needed')
                return
            record, source = store.fresh(cell, key)  # stored by another process since the first look
            if record is not None:
                claims.release(cell)
        if record is not None:
            results[cell.id] = record
            progress.report(index, cell, f'cached in the {source} (key {key[:12]} matches), skipped')
            return
        if not run:
            results[cell.id] = dict(status='missing', cell=cell.spec(), error='not run yet')
            return
        try:
            results[cell.id] = _run_one(index, cell, key, store, executor, progress, clock, results)
        finally:
            if claims is not None:
                claims.release(cell)

    for index, cell in enumerate(cells):
        if pending and needs is not None:
            settle(needs(cell, cells))
        one(index, cell)
    if pending:
        settle(None)
    return {cell.id: results[cell.id] for cell in cells}


def _run_one(index: int, cell: Cell, key: str, store: CellStore, executor: Executor, progress: Progress,
             clock: Callable[[], float], results: dict[str, dict]) -> dict:
    """Run one cell in a clean folder and store its record (failed: with the traceback beside it; the run goes
    on)."""
    folder = store.folder(cell)
    stale = folder.exists()
    shutil.rmtree(folder, ignore_errors=True)  # a stale or failed cell's files must not be picked up
    folder.mkdir(parents=True)
    start = clock()
    try:
        result = executor.run(cell, folder, results)
        seconds = clock() - start
        record = dict(status='done', key=key, cell=cell.spec(), seconds=round(seconds, 1), result=result,
                      finished=time.strftime('%Y-%m-%d %H:%M:%S'))
        store.save(cell, record)
        progress.report(index, cell, ('re-ran (stale) ' if stale else '') + f'done in {fmt_duration(seconds)}'
                        + _headline(result, progress.metrics), seconds)
    except Exception as err:  # noqa: BLE001 (one failed cell must not lose the others)
        seconds = clock() - start
        (folder / 'error.txt').write_text(traceback.format_exc())
        record = dict(status='failed', key=key, cell=cell.spec(), seconds=round(seconds, 1),
                      error=f'{type(err).__name__}: {err}')
        store.save(cell, record)
        progress.report(index, cell, f'FAILED after {fmt_duration(seconds)}: {record["error"]} '
                        f'(traceback: {folder / "error.txt"})', seconds)
        print(traceback.format_exc(), file=sys.stderr, flush=True)
    return record


def _headline(result: dict, spec: dict) -> str:
    """``: NDS 0.2100, mAP 0.1500`` (the primary and secondary metric of ``spec``, the plan's ``metrics``) when the
    result has metrics (``; and under 8 corruption(s)`` when it has those)."""
    metrics = result.get('metrics') if isinstance(result, dict) else None
    if not metrics:
        return ''
    values = {name: metric_value(metrics, spec, name) for name in (spec['primary'], spec['secondary'])}
    shown = [f'{name} {value:.4f}' for name, value in values.items() if value is not None]
    corrupted = len(result.get('corrupted') or {})
    under = f'; and under {corrupted} corruption(s)' if corrupted else ''
    return ((': ' + ', '.join(shown)) if shown else '') + under
