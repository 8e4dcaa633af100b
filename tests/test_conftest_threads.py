"""The conftest gives each pytest-xdist worker one OpenMP thread, and leaves a plain ``pytest`` run alone."""
import os

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
