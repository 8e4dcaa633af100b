"""tools/benchmark.py --quick end to end on a tiny generated set: every kind of cell runs with the real stack, the
json and the markdown are written, a rerun reuses every cell, and so does a fresh work dir from the published json
(but the dense model and the curves, computed again to the same keys). In the default suite, as the benchmark issue asks
(about 12 min on one worker of `make test` on 2 CPU cores, 5 min alone on a free core: the longest test; its 80%
cells are also evaluated under two degraded-sensor cases)."""
import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmdet3d')
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import benchmark  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore::UserWarning')]


@pytest.mark.heavy(seconds=500)  # scheduled first under pytest-xdist (conftest)
def test_quick_benchmark_end_to_end_then_cached(tmp_path, capsys):
    benchmark.main(['--quick', '--work-dir', str(tmp_path)])
    first = capsys.readouterr().out
    data = json.loads((tmp_path / 'benchmarks.json').read_text())
    assert all(r['status'] == 'done' for r in data['cells'].values()), data['figures']['failed']
    kinds = {r['cell']['kind'] for r in data['cells'].values()}
    assert kinds == {'dense_train', 'dense_eval', 'curves', 'beta', 'oneshot', 'additivity', 'costs', 'finetune',
                     'reference'}
    fig = data['figures']
    mm = next(r for r in fig['oneshot']['0.8'] if r['method'] == 'mmprune4u_local')
    assert mm['sparsity'] == pytest.approx(0.8, abs=1e-3) and set(mm['modalities']) == {'camera', 'lidar', 'fusion'}
    ft = {(r['method'], r['variant']): r for r in fig['finetune']['0.8']}
    assert ft[('dense', 'task')]['sparsity'] == 0
    assert ft[('mmprune4u_local', 'lsi')]['sparsity'] == pytest.approx(0.8, abs=1e-3)
    assert len(fig['additivity']['points']) == 4 + 4  # 4 random + (2 methods x 2 sparsities)
    assert fig['costs']['curves']['speedup']['memo_vs_plain'] > 0 and 'mask_overhead' in fig['costs']['step']
    rob = fig['robustness']
    assert list(rob['tables']) == ['lidar_beams_1/4', 'camera_all_black'] and rob['references']['lidar']
    for name, t in rob['tables'].items():
        # dense, 2 one-shot at 80%, and the 4 finetune rows (the equal-budget dense one too) at 80%
        assert len(t['rows']) == 7 and all('NDS' in r for r in t['rows']), name
        assert all('retention' in r for r in t['rows']) or not t['dense_corrupted']  # a 4-iteration model may score 0
    corrupted = [r for r in data['cells'].values() if 'corrupted' in r['result']]
    assert len(corrupted) == 7 and all(set(r['result']['corrupted']) == set(rob['tables']) for r in corrupted)
    assert 'seed' in first and '[bench 18/18]' in first and 'under 2 corruption(s)' in first
    text = (tmp_path / 'benchmarks.md').read_text()
    assert '## One-shot (no finetuning), test split' in text and '## Costs' in text
    assert '## Degraded sensors (test split)' in text and '### camera_all_black (camera degraded)' in text
    assert (tmp_path / 'benchmarks' / 'nds_vs_sparsity.png').is_file()
    assert (tmp_path / 'benchmarks' / 'retention.png').is_file()

    benchmark.main(['--quick', '--work-dir', str(tmp_path)])  # resumed: nothing runs again
    second = capsys.readouterr().out
    assert second.count('cached in the work dir (key') == len(data['cells']) and 'done in' not in second

    # another machine with this json only (a fresh clone resuming a committed report): the cells and the curves are
    # gone; the dense model is trained again, to the same weights (the same keys), and each seed's curves are measured
    # again (later cells read their file); every other cell comes from the published json
    shutil.rmtree(tmp_path / 'cells')
    shutil.rmtree(tmp_path / 'curves')
    benchmark.main(['--quick', '--work-dir', str(tmp_path)])
    third = capsys.readouterr().out
    n_rerun = sum(r['cell']['kind'] in ('dense_train', 'curves') for r in data['cells'].values())
    assert third.count('cached in the published json (key') == len(data['cells']) - n_rerun, third
    assert third.count('done in') == n_rerun and 're-ran' not in third
    assert json.loads((tmp_path / 'benchmarks.json').read_text())['figures'] == data['figures']
