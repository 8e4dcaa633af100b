"""mmengine 0.10.7 checkpoints (message hub with HistoryBuffer) load again under torch >= 2.6."""
import pytest
import torch

pytest.importorskip('mmengine')
from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.runner import checkpoint as mm_checkpoint  # noqa: E402

from mmprune4u_plugin.compat import mmengine_torch_load  # noqa: E402


def _write(tmp_path):
    path = tmp_path / 'ckpt.pth'
    state = {'state_dict': {'w': torch.arange(4.0)}, 'message_hub': {'log': HistoryBuffer([1.0, 2.0], [1, 1])}}
    torch.save(state, path)
    return path


def test_plain_torch_load_fails_without_shim(tmp_path):
    if not mmengine_torch_load._needs_patch():
        pytest.skip('torch < 2.6 still defaults to weights_only=False')
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(_write(tmp_path), map_location='cpu')


def test_mmengine_loader_reads_checkpoint_with_shim(tmp_path):
    mmengine_torch_load.apply()
    mmengine_torch_load.apply()  # idempotent
    loaded = mm_checkpoint._load_checkpoint(str(_write(tmp_path)), map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.arange(4.0))
    assert isinstance(loaded['message_hub']['log'], HistoryBuffer)
    # only mmengine's checkpoint module is affected; torch.load itself keeps its safe default
    assert mm_checkpoint.torch.load is not torch.load and mm_checkpoint.torch.Tensor is torch.Tensor
