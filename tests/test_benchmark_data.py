"""tools/_bench/data.py: the plan's synthetic SemanticKITTI, generated once per key, kept when made with the same
settings (e.g. by tools/create_synthetic_semantickitti.py), generated again when the settings change."""
import pickle
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _bench.data import ensure_data, semantickitti_settings  # noqa: E402
from _bench.plan import Plan  # noqa: E402

pytest.importorskip('mmdet3d')
SPLITS = dict(train=[0], val=[8], test=[11])


def plan(root: Path, **synthetic) -> Plan:
    syn = dict(kind='semantickitti', root=str(root), frames=1, image_scale=0.25, azimuth_steps=256, splits=SPLITS,
               workers=1)
    return Plan(config='c.py', seeds=[0], sparsities=[0.8], methods=['global'], synthetic=dict(syn, **synthetic),
                splits={'val': {'a': 'v'}, 'test': {'a': 't'}})


def test_settings_default_to_the_generators():
    from mmprune4u_plugin.datasets.synthetic_semantickitti import DEFAULT_SPLITS, SyntheticSemanticKittiConfig
    splits, cfg = semantickitti_settings(dict(kind='semantickitti', root='d'))
    assert splits == DEFAULT_SPLITS and cfg == SyntheticSemanticKittiConfig()
    splits, cfg = semantickitti_settings(dict(kind='semantickitti', root='d', frames=2, azimuth_steps=256))
    assert (cfg.frames, cfg.lidar.azimuth_steps, cfg.image_scale) == (2, 256, 0.5)


def test_generated_once_kept_when_made_with_the_same_settings_regenerated_otherwise(tmp_path, capsys):
    from mmprune4u_plugin.datasets.synthetic_semantickitti import generate_synthetic_semantickitti
    root = tmp_path / 'data'
    ensure_data(plan(root), tmp_path)
    assert 'generating' in capsys.readouterr().out
    infos = {s: pickle.loads((root / f'semantickitti_infos_{s}.pkl').read_bytes()) for s in SPLITS}
    assert {s: len(i['data_list']) for s, i in infos.items()} == dict(train=1, val=1, test=1)
    key = (root / '.mmprune4u_stage_key').read_text()
    ensure_data(plan(root), tmp_path)
    assert 'reused (key' in capsys.readouterr().out
    # made by hand with the same settings (no key file): kept, and given the same key
    (root / '.mmprune4u_stage_key').unlink()
    splits, cfg = semantickitti_settings(plan(root).synthetic)
    generate_synthetic_semantickitti(root, splits, cfg)
    ensure_data(plan(root), tmp_path)
    out = capsys.readouterr().out
    assert 'kept' in out and 'generating' not in out and (root / '.mmprune4u_stage_key').read_text() == key
    ensure_data(plan(root, frames=2), tmp_path)  # other settings: generated again
    assert 'generating' in capsys.readouterr().out
    assert len(pickle.loads((root / 'semantickitti_infos_train.pkl').read_bytes())['data_list']) == 2
    assert (root / '.mmprune4u_stage_key').read_text() != key
