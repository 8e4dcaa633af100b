"""tests/conftest.py: one OpenMP thread per pytest-xdist worker (a plain ``pytest`` run keeps its threads), and the
heavy test files handed out first."""
import os
from pathlib import Path

import pytest

import torch

import conftest


def test_xdist_worker_runs_one_thread_and_passes_it_to_child_processes(monkeypatch):
    monkeypatch.setenv('PYTEST_XDIST_WORKER', 'gw1')
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    monkeypatch.delenv('MKL_NUM_THREADS', raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        conftest.pytest_configure(None)
        assert torch.get_num_threads() == 1
        assert os.environ['OMP_NUM_THREADS'] == '1' and os.environ['MKL_NUM_THREADS'] == '1'
    finally:
        torch.set_num_threads(threads)


def test_plain_run_keeps_its_threads(monkeypatch):
    monkeypatch.delenv('PYTEST_XDIST_WORKER', raising=False)
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        conftest.pytest_configure(None)
        assert torch.get_num_threads() == 2 and os.environ['OMP_NUM_THREADS'] == '2'
    finally:
        torch.set_num_threads(threads)


class FakeItem:
    def __init__(self, path: str, name: str, seconds: int | None = None) -> None:
        self.path, self.name = Path(path), name
        self.mark = None if seconds is None else pytest.mark.heavy(seconds=seconds).mark

    def get_closest_marker(self, name: str):
        return self.mark if name == 'heavy' else None


def test_heavy_files_go_first_longest_first_and_stay_whole():
    items = [FakeItem('a.py', 'a1'), FakeItem('b.py', 'b1'), FakeItem('b.py', 'b2', seconds=100),
             FakeItem('c.py', 'c1', seconds=300), FakeItem('d.py', 'd1'), FakeItem('e.py', 'e1', seconds=100),
             FakeItem('e.py', 'e2')]
    conftest.pytest_collection_modifyitems(None, items)
    # c (300 s) first; b and e (100 s each) in their own order, each file whole; a and d after, as they were
    assert [i.name for i in items] == ['c1', 'b1', 'b2', 'e1', 'e2', 'a1', 'd1']
