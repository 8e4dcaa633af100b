"""The generators' one worker loop: tasks run here or in spawned processes, results in task order."""
from __future__ import annotations

import multiprocessing as mp
import pickle
from typing import Any, Callable, Sequence


def map_tasks(tasks: Sequence[tuple], local: Callable[..., Any], *, workers: int, init: Callable[..., None],
              init_args: tuple, work: Callable[[tuple], Any],
              on_result: Callable[[int], None] | None = None) -> list:
    """``local(*task)`` for each task in this process (``workers == 1``), else ``work(task)`` in ``workers``
    processes started by ``spawn`` (a fork after torch / cv2 threads started can hang) and set up by
    ``init(*init_args)``. Local results make a pickle round trip, so they share objects as the workers' do (the
    same pkl bytes either way). ``on_result(k)`` is called after the k-th result (1-based)."""
    if workers == 1:
        results = (pickle.loads(pickle.dumps(local(*task), protocol=4)) for task in tasks)
        pool = None
    else:
        pool = mp.get_context('spawn').Pool(workers, init, init_args)
        results = pool.imap(work, tasks, chunksize=1)  # one pickle per result, like the local path
    out = []
    try:
        for k, result in enumerate(results, 1):
            out.append(result)
            if on_result is not None:
                on_result(k)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return out
