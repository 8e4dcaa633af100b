"""mmprune4u_plugin.fingerprint.weights_digest: a checkpoint keyed on its weights, not on its file's bytes."""
import pytest
import torch

from mmprune4u_plugin.fingerprint import content_digest, file_digest, weights_digest


def save(path, state, **extra):
    torch.save(dict(state_dict=state, **extra), path)
    return path


def test_same_weights_saved_twice_with_other_metadata_have_one_weights_digest(tmp_path):
    state = {'conv.weight': torch.arange(6.).reshape(2, 3), 'bn.num_batches_tracked': torch.tensor(4)}
    a = save(tmp_path / 'a.pth', state, meta=dict(time='20261202_150000', iter=900))
    b = save(tmp_path / 'b.pth', dict(reversed(list(state.items()))), meta=dict(time='20261203_090000', iter=900),
             optimizer=dict(state={}, param_groups=[dict(lr=1e-3)]))
    assert file_digest(a) != file_digest(b)
    assert weights_digest(a) == weights_digest(b) == content_digest(state)


@pytest.mark.parametrize('change', ['value', 'dtype', 'shape', 'name', 'extra tensor'])
def test_any_change_of_the_weights_changes_the_digest(tmp_path, change):
    state = {'w': torch.zeros(4), 'b': torch.ones(2)}
    other = dict(state)
    if change == 'value':
        other['w'] = torch.tensor([0., 0., 0., 1e-30])
    elif change == 'dtype':
        other['w'] = torch.zeros(4, dtype=torch.float64)
    elif change == 'shape':
        other['w'] = torch.zeros(2, 2)
    elif change == 'name':
        other = {'w2': state['w'], 'b': state['b']}
    else:
        other['mask'] = torch.ones(4, dtype=torch.bool)
    assert weights_digest(save(tmp_path / 'a.pth', state)) != weights_digest(save(tmp_path / 'b.pth', other))


def test_a_bare_state_dict_is_read_as_the_weights_and_a_file_without_tensors_is_refused(tmp_path):
    state = {'w': torch.ones(3)}
    torch.save(state, tmp_path / 'bare.pth')
    assert weights_digest(tmp_path / 'bare.pth') == weights_digest(save(tmp_path / 'wrapped.pth', state))
    torch.save(dict(meta=dict(iter=1)), tmp_path / 'empty.pth')
    with pytest.raises(ValueError, match='holds no weights'):
        weights_digest(tmp_path / 'empty.pth')
