"""Fixtures shared across test folders."""
import pytest
import torch


@pytest.fixture
def spconv_nn():
    spconv_nn = pytest.importorskip('spconv.pytorch', reason='spconv is not installed')
    from mmprune4u_plugin.compat import apply_cpu_shims
    apply_cpu_shims()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # belt and braces: spconv's own scatter-add is only right with one thread
    yield spconv_nn
    torch.set_num_threads(threads)
