"""Fixtures shared across test folders, and one thread per pytest-xdist worker."""
import os

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n N`` each worker (and every CLI it spawns) gets one OpenMP thread: N workers with the
    default threads each oversubscribe the cores, and spinning OpenMP threads then slow a run many times over."""
    if os.environ.get('PYTEST_XDIST_WORKER'):
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = '1'
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Test files with a ``heavy(seconds=...)`` mark run first, longest first; the rest keep their order. Under
    ``--dist loadfile --no-loadscope-reorder`` pytest-xdist hands files out in this order, so the long ones start
    on separate workers at once instead of queueing at the end behind one another (a 10-minute tail)."""
    weight: dict = {}
    for item in items:
        mark = item.get_closest_marker('heavy')
        seconds = mark.kwargs.get('seconds', 0) if mark is not None else 0
        weight[item.path] = max(weight.get(item.path, 0), seconds)
    items.sort(key=lambda item: -weight[item.path])  # stable: a file's tests stay together and in order


@pytest.fixture
def spconv_nn():
    spconv_nn = pytest.importorskip('spconv.pytorch', reason='spconv is not installed')
    from mmprune4u_plugin.compat import apply_cpu_shims
    apply_cpu_shims()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # belt and braces: spconv's own scatter-add is only right with one thread
    yield spconv_nn
    torch.set_num_threads(threads)
