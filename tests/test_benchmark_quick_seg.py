"""tools/benchmark.py --plan configs/benchmark/quick_seg.py end to end: the LiDAR-camera segmentor on a tiny generated
SemanticKITTI set, every kind of cell with the real stack, the figures in mIoU / acc, and a rerun that reuses every
cell. In the default suite (about 3 min on 2 CPU cores)."""
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmdet3d')
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import benchmark  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore::UserWarning'),
              pytest.mark.filterwarnings('ignore:invalid value encountered:RuntimeWarning')]  # classes absent from a scan
PLAN = ['--plan', 'configs/benchmark/quick_seg.py']


@pytest.mark.heavy(seconds=150)  # scheduled first under pytest-xdist (conftest)
def test_quick_segmentor_benchmark_end_to_end_then_cached(tmp_path, capsys):
    benchmark.main([*PLAN, '--work-dir', str(tmp_path)])
    first = capsys.readouterr().out
    data = json.loads((tmp_path / 'benchmarks.json').read_text())
    assert all(r['status'] == 'done' for r in data['cells'].values()), data['figures']['failed']
    kinds = {r['cell']['kind'] for r in data['cells'].values()}
    assert kinds == {'dense_train', 'dense_eval', 'curves', 'beta', 'oneshot', 'additivity', 'costs', 'finetune'}
    for record in data['cells'].values():  # every pruned model reaches its sparsity to one weight
        cell, result = record['cell'], record['result']
        if cell['kind'] in ('beta', 'oneshot', 'finetune') and cell.get('method') != 'dense':
            weights = sum(result['weights_by_modality'].values())
            assert abs(result['sparsity'] - cell['sparsity']) * weights <= 1, cell
        if 'metrics' in result:  # SegMetric's, by tools/test.py's short names
            assert {'miou', 'acc', 'acc_cls'} <= set(result['metrics']), cell
    fig = data['figures']
    assert fig['metrics']['primary'] == 'mIoU' and fig['metrics']['secondary'] == 'acc'
    for regime, sparsities in (('oneshot', ['0.5', '0.8']), ('finetune', ['0.8'])):
        assert list(fig[regime]) == sparsities
        for rows in fig[regime].values():
            assert all('mIoU' in r and 'acc' in r and 'NDS' not in r for r in rows)
    mm = next(r for r in fig['oneshot']['0.8'] if r['method'] == 'mmprune4u_local')
    assert set(mm['modalities']) == {'camera', 'lidar', 'fusion'}
    ft = {(r['method'], r['variant']): r for r in fig['finetune']['0.8']}
    assert set(ft) == {('dense', 'task'), ('global', 'task'), ('mmprune4u_local', 'task'), ('mmprune4u_local', 'lsi')}
    assert ft[('dense', 'task')]['sparsity'] == 0
    assert [set(p) for p in fig['dense']['curve']] == [{'iteration', 'mIoU', 'acc'}] * 2 and 'plateaued' in fig['dense']
    assert fig['beta']['chosen'] in (0.0, 1.0) and fig['beta']['complete']
    assert len(fig['additivity']['points']) == 4 + 4  # 4 random + (2 methods x 2 sparsities)
    assert fig['costs']['curves']['speedup']['memo_vs_plain'] > 0 and 'mask_overhead' in fig['costs']['step']
    assert fig['robustness'] is None
    assert '[bench 17/17]' in first and ': mIoU ' in first and 'NDS' not in first
    text = (tmp_path / 'benchmarks.md').read_text()
    for needle in ('## One-shot (no finetuning), test split', '| method | mIoU | acc | sparsity |',
                   '| iteration | val mIoU | val acc |', 'best mean val mIoU', '## Costs'):
        assert needle in text, needle
    assert 'NDS' not in text
    plots = {p.name for p in (tmp_path / 'benchmarks').iterdir()}
    assert plots == {'miou_vs_sparsity.png', 'modality_sparsity.png', 'additivity.png', 'beta_sweep.png',
                     'dense_curve.png'}

    benchmark.main([*PLAN, '--work-dir', str(tmp_path)])  # resumed: the data and every cell are reused
    second = capsys.readouterr().out
    assert 'synthetic SemanticKITTI: reused' in second and 'generating' not in second
    assert second.count('cached in the work dir (key') == len(data['cells']) and 'done in' not in second
