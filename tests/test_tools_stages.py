"""tools/_stages.py and the benchmark's log parsing: the small helpers the long CPU jobs rely on."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
from _stages import data_root_options, last_checkpoint, metric  # noqa: E402
from benchmark_lsi_reference import seconds_per_iter  # noqa: E402


def test_metric_by_short_name():
    result = {'metrics': {'NuScenes metric/NDS': 0.25, 'NuScenes metric/mAP': 0.5, 'miou': 0.125}}
    assert metric(result, 'NDS') == 0.25 and metric(result, 'mAP') == 0.5 and metric(result, 'miou') == 0.125
    assert metric(result, 'mATE') != metric(result, 'mATE')  # absent: NaN


def test_last_checkpoint(tmp_path):
    assert last_checkpoint(tmp_path) is None
    (tmp_path / 'last_checkpoint').write_text('/x/iter_300.pth\n')
    assert last_checkpoint(tmp_path) == Path('/x/iter_300.pth')


def test_data_root_options_point_every_dataset_and_the_metric(tmp_path):
    options = data_root_options(tmp_path / 'synth')
    root = f'{(tmp_path / "synth").resolve()}/'
    assert options == [f'train_dataloader.dataset.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
                       f'test_evaluator.data_root={root}']


def test_seconds_per_iter_averages_the_logged_train_iterations(tmp_path):
    log = tmp_path / '20261125_000000' / 'vis_data'
    log.mkdir(parents=True)
    records = [{'lr': 1e-3, 'time': 1.0, 'iter': 20}, {'lr': 1e-3, 'time': 2.0, 'iter': 40},
               {'NuScenes metric/NDS': 0.3, 'step': 40}]  # an eval record has no time
    (log / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in records) + '\n')
    assert seconds_per_iter(tmp_path) == 1.5
    with pytest.raises(FileNotFoundError, match='no scalars.json'):
        seconds_per_iter(tmp_path / 'missing')
