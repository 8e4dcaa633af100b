"""Several benchmark processes on one work dir (``tools/benchmark.py --jobs N``).

Each process walks the same cells in the same order. A cell is run by the process that claims it first (a
``<cell id>.claim`` file created with ``O_EXCL``, holding the claimer's pid); the others go on to later cells and take
its stored result when they need it: before a cell that reads it (:func:`prerequisites`), before retrying a cell whose
key could not be computed (:class:`~.cells.MissingInput`), and at the end. A claim whose process has died is stale:
the next process that meets it takes the cell over. One CPU thread per process (``OMP_NUM_THREADS=1``) makes
``--jobs 2`` use both cores of a 2-core machine on independent cells.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from .plan import Cell

SUFFIX = '.claim'
UNWRITTEN_GRACE_S = 60.0  # a claim file created but still empty is taken as held for this long


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Claims:
    """Claim files under ``<work-dir>/cells/`` (beside each cell's folder, which a stale run wipes)."""

    def __init__(self, work: Path, *, pid: int | None = None, alive: Callable[[int], bool] = pid_alive,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 poll_s: float = 5.0) -> None:
        self.root = Path(work) / 'cells'
        self.pid = os.getpid() if pid is None else pid
        self.alive, self.clock, self.sleep, self.poll_s = alive, clock, sleep, poll_s

    def path(self, cell: Cell) -> Path:
        return self.root / (cell.id + SUFFIX)

    def holder(self, cell: Cell) -> int | None:
        """The pid of the live process that holds the cell's claim; None when nobody does (no claim, or a stale
        one: its process is gone, or it stayed unwritten past the grace time)."""
        path = self.path(cell)
        try:
            text = path.read_text().strip()
            age = self.clock() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        if not text.isdigit():
            return -1 if age < UNWRITTEN_GRACE_S else None  # being written by its claimer (-1: pid not known yet)
        pid = int(text)
        return pid if pid == self.pid or self.alive(pid) else None

    def acquire(self, cell: Cell) -> int | None:
        """Claim ``cell``: None when this process now holds it, else the pid of the live process that does."""
        path = self.path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self.holder(cell)
                if holder == self.pid:
                    return None
                if holder is not None:
                    return holder
                path.unlink(missing_ok=True)  # stale: its process died; take the cell over
                continue
            with os.fdopen(fd, 'w') as f:
                f.write(str(self.pid))
            return None
        raise RuntimeError(f'could not claim {cell.id} ({path}): the claim file keeps reappearing')

    def release(self, cell: Cell) -> None:
        if self.holder(cell) == self.pid:
            self.path(cell).unlink(missing_ok=True)

    def wait(self, cell: Cell) -> None:
        """Return once no live process holds the cell's claim (its claimer stored its result and let go, or
        died), looking every ``poll_s`` seconds."""
        while self.holder(cell) not in (None, self.pid):
            self.sleep(self.poll_s)


def prerequisites(cell: Cell, cells: list[Cell]) -> set[str] | None:
    """Ids of the cells whose results ``cell`` reads without its key asking for them (None: every earlier cell).

    A seed's cells read its curve cache (a file the ``curves`` cell writes); additivity reads every one-shot
    allocation of its seed, and costs reads the β sweep: both run at the end, after everything else. The dense model
    and the β sweep are asked for by the key (:class:`~.cells.MissingInput` while they are missing)."""
    if cell.kind in ('additivity', 'costs'):
        return None
    if cell.seed is not None and cell.kind != 'curves':
        return {Cell('curves', seed=cell.seed).id}
    return set()


__all__ = ['Claims', 'pid_alive', 'prerequisites']
