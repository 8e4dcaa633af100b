"""tools/_bench/report.py, markdown.py, plots.py: figures and docs/benchmarks.md from cell records alone."""
import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import benchmark  # noqa: E402
from _bench import markdown, report  # noqa: E402
from _bench.plan import Cell, Plan, plan_summary  # noqa: E402


def plan() -> Plan:
    return Plan(config='c.py', seeds=[0, 1], splits={'val': {}, 'test': {'x': 1}}, sparsities=[0.8],
                methods=['global', 'rd', 'mmprune4u_local'],
                beta=dict(values=[0, 1], sparsity=0.8, choose_on_val=True, default=1.0),
                dense=dict(iters=4, eval_every=2), lsi_loss=dict(type='LogSobolevLoss'),
                finetune=dict(sparsities=[0.8], rows=[('dense', 'task'), ('mmprune4u_local', 'lsi')]))


def result(nds, mAP=0.1, camera=0.9, lidar=0.5, fusion=0.2, sparsity=0.8, **extra):
    return dict(metrics=dict(NDS=nds, mAP=mAP), sparsity=sparsity,
                by_modality=dict(camera=camera, lidar=lidar, fusion=fusion), **extra)


COSTS = dict(
    curves=dict(layers=114, levels=20, batches=1, layers_timed=12,
                seconds=dict(exact_memo_subset=10.0, exact_plain_subset=80.0, exact_plain=760.0, fisher=5.0,
                             seed_curves=300.0),
                leaf_forwards=dict(exact_memo_subset=1000, exact_plain_subset=9000, exact_memo=20000,
                                   exact_plain=200000),
                fisher_backward_passes=16, speedup=dict(memo_vs_plain=8.0, fisher_vs_plain=152.0,
                                                        memo_vs_plain_leaf_forwards=10.0),
                fisher_vs_exact=dict(spearman_all=0.9, allocations=[dict(sparsity=0.8, mean_abs_diff=0.05,
                                                                         exact_cost_ratio=1.2)])),
    dp=dict(layers=114, levels=21, bins=10000, rows=[dict(sparsity=0.8, seconds=0.4)]),
    step=dict(seconds_per_step=dict(plain=1.0, masks=1.02, **{'masks+lsi': 1.3}), steps=10, mask_apply_seconds=0.01,
              mask_overhead=0.02, lsi_overhead=0.28, lsi_reference='dense_stats'))


def records(p: Plan) -> dict:
    out = {}

    def put(cell, res):
        out[cell.id] = dict(status='done', key='k', cell=cell.spec(), seconds=1.0, result=res)
    put(Cell('dense_eval', iteration=2, split='val'), result(0.30))
    put(Cell('dense_eval', split='val'), result(0.305))
    put(Cell('dense_eval', split='test'), result(0.31))
    size = dict(dense_bytes=1000, sparse_bytes=280, ratio=0.28)
    put(Cell('oneshot', method='global', sparsity=0.8, split='test'), result(0.20, size=size))
    for seed, (rd, mm) in enumerate([(0.22, 0.21), (0.24, 0.21)]):  # RD mean 0.23 ± 0.0141; MMPrune4U 0.21 ± 0
        put(Cell('oneshot', method='rd', sparsity=0.8, seed=seed, split='test'), result(rd, size=size))
        put(Cell('oneshot', method='mmprune4u_local', sparsity=0.8, seed=seed, split='test'), result(mm, size=size))
        put(Cell('beta', method='rd', beta=0.0, sparsity=0.8, seed=seed, split='val'), result(0.10))
        put(Cell('beta', method='mmprune4u_local', beta=1.0, sparsity=0.8, seed=seed, split='val'), result(0.12))
        put(Cell('finetune', method='dense', variant='task', seed=seed, split='test'), result(0.33, sparsity=0.0))
        put(Cell('finetune', method='mmprune4u_local', variant='lsi', sparsity=0.8, seed=seed, split='test'),
            result(0.30 + 0.02 * seed))
    out['additivity/seed0'] = dict(status='done', cell=Cell('additivity', seed=0).spec(), result=dict(
        points=[dict(kind='random', predicted=0.1, measured=0.12), dict(kind='method', predicted=0.2, measured=0.3)],
        correlation=dict(all=dict(n=2, pearson=1.0, spearman=1.0))))
    out['costs'] = dict(status='done', cell=Cell('costs', seed=0).spec(), result=COSTS)
    out['finetune/mmprune4u_local-lsi/s80/seed1/test']['status'] = 'failed'  # one seed lost
    out['finetune/mmprune4u_local-lsi/s80/seed1/test']['error'] = 'RuntimeError: boom'
    return out


def test_tables_report_mean_std_over_seeds_and_modalities():
    p = plan()
    fig = report.figures(records(p), p)
    rows = {r['method']: r for r in fig['oneshot']['0.8']}
    assert rows['global']['seed_free'] and rows['global']['n'] == 1 and rows['global']['NDS']['std'] == 0
    assert rows['rd']['NDS']['mean'] == pytest.approx(0.23)
    assert rows['rd']['NDS']['std'] == pytest.approx(0.0141421, 1e-4)
    assert rows['mmprune4u_local']['modalities'] == dict(camera=0.9, lidar=0.5, fusion=0.2)
    ft = fig['finetune']['0.8']
    assert ft[0]['method'] == 'dense' and ft[0]['n'] == 2
    assert ft[1]['n'] == 1 and ft[1]['missing'] == 1  # the failed seed is shown as missing, not averaged away
    assert fig['beta']['chosen'] == 1.0 and fig['beta']['complete']
    assert fig['dense']['last_gain'] == pytest.approx(0.005) and fig['dense']['plateaued']
    assert fig['failed'] == ['finetune/mmprune4u_local-lsi/s80/seed1/test: RuntimeError: boom']


def test_a_loss_is_said_plainly():
    p = plan()
    fig = report.figures(records(p), p)
    v = fig['verdicts']['oneshot']['0.8'][0]
    assert v['best_baseline'] == 'RD (β = 0)' and not v['wins'] and v['gap'] == pytest.approx(-0.02)
    lines = markdown.verdict_lines(fig['verdicts']['oneshot'], 'one-shot')
    assert lines == ['- one-shot 80%: MMPrune4U (local R) **does not beat** the best baseline (RD (β = 0)) on NDS: '
                     '-0.0200, by more than one std; paired by seed: -0.0100 / -0.0300 (higher in 0 of 2 seeds).']


def test_pairs_by_seed_against_the_best_baseline_rd_and_on_the_second_metric():
    """RD 0.22 / 0.24 and MMPrune4U 0.21 / 0.21 on seeds 0 / 1: pairs -0.01 / -0.03; a seed-free row and a row
    with one seed left give no pairs; RD is also the ablation's baseline, and mAP (0.1 everywhere) ties."""
    p = plan()
    fig = report.figures(records(p), p)
    (v,) = fig['verdicts']['oneshot']['0.8']
    assert v['paired']['seeds'] == [0, 1] and v['paired']['wins'] == 0
    assert v['paired']['diffs'] == pytest.approx([-0.01, -0.03])
    rows = {r['method']: r for r in fig['oneshot']['0.8']}
    assert rows['rd']['seeds'] == [0, 1] and rows['rd']['NDS']['values'] == pytest.approx([0.22, 0.24])
    assert report.paired(rows['mmprune4u_local'], rows['global'], 'NDS') is None  # global is seed-free
    dense, mm_lsi = fig['finetune']['0.8']
    assert mm_lsi['seeds'] == [0] and report.paired(mm_lsi, dense, 'NDS') is None  # seed 1 failed: one pair only
    (rd,) = fig['verdicts_rd']['oneshot']['0.8']
    assert rd['best_baseline'] == 'RD (β = 0)' and rd['paired']['diffs'] == pytest.approx([-0.01, -0.03])
    (second,) = fig['verdicts_secondary']['oneshot']['0.8']
    # mAP ties at 0.1: the best baseline by mean is the first, seed-free global magnitude, so there are no pairs
    assert second['best_baseline'] == 'global magnitude' and second['gap'] == pytest.approx(0)
    assert second['paired'] is None
    text = markdown.render(dict(plan=plan_summary(p), command='c', date='d',
                                machine='m', config='c.py', checkpoint='x'), fig, {})
    assert 'Against RD (β = 0), the same allocator without the regulariser' in text
    assert '- one-shot 80%: MMPrune4U (local R) **does not beat** RD (β = 0) on NDS: -0.0200' in text
    assert 'On mAP, against the best baseline by mean mAP:' in text


def test_a_single_seed_claims_no_spread():
    rows = [dict(label='LAMP', method='lamp', n=1, seed_free=True, NDS=dict(mean=0.2, std=0.0)),
            dict(label='MMPrune4U', method='mmprune4u_local', n=1, NDS=dict(mean=0.3, std=0.0))]
    (v,) = report.verdicts(rows)
    assert v['wins'] and v['beyond_std'] is None
    assert 'one seed only (no spread measured)' in markdown.verdict_lines({'0.8': [v]}, 'one-shot')[0]
    rows[1]['n'] = 3
    assert report.verdicts(rows)[0]['beyond_std'] is True  # the seed-free baseline's zero spread is real


def test_beta_is_chosen_on_val_with_ties_to_the_default():
    p = plan()
    cells = records(p)
    assert report.choose_beta(cells, p) == (1.0, [])
    for seed in (0, 1):  # a tie: the plan's default wins
        cells[report.beta_cell(p, 0.0, seed).id]['result']['metrics']['NDS'] = 0.12
    assert report.choose_beta(cells, p) == (1.0, [])
    del cells[report.beta_cell(p, 1.0, 1).id]
    beta, missing = report.choose_beta(cells, p)
    assert missing == ['beta/mmprune4u_local/beta1/s80/seed1/val']


def test_markdown_has_command_machine_date_tables_and_cut():
    p = plan()
    meta = dict(command='python tools/benchmark.py', date='2026-11-30 10:00 UTC', machine='2 cores', config='c.py',
                checkpoint='dense.pth', plan=plan_summary(p), hours=1.5)
    text = markdown.render(meta, report.figures(records(p), p), {'additivity': 'benchmarks/additivity.png'})
    for needle in ('`python tools/benchmark.py`', '2026-11-30 10:00 UTC', 'Machine: 2 cores', '### 80%',
                   '| RD (β = 0) | 0.230 ± 0.014 | 0.100 ± 0.000 | 0.800 | 0.900 | 0.500 | 0.200 | 2 |',
                   '| global magnitude | 0.200 | 0.100 | 0.800 | 0.900 | 0.500 | 0.200 | seed-free |',
                   '(1 missing)', 'finetuned cells limited to', '**does not beat**', 'β used for the MMPrune4U rows: 1',
                   '![additivity](benchmarks/additivity.png)', 'sparse checkpoint size at 80%', '0.280–0.280',
                   '**Failed cells**', '8.0× cheaper (10.0 s vs 80.0 s) | ≥ 5× | met',
                   '152.0× cheaper (5.0 s) | ≥ 50× | met', '10.0× fewer (20,000 vs 200,000)',
                   '| +2.0% (1.000 s/step plain) | < 3% | met |', '| +28.0% | < 20% | **not met** |',
                   '80%: mean |Δs| 0.050, exact-curve cost 1.20×'):
        assert needle in text, needle


def test_report_only_rebuilds_the_same_docs_from_the_json(tmp_path):
    p = plan()
    meta = dict(command='python tools/benchmark.py', date='d', machine='m', config='c.py', checkpoint='x',
                plan=plan_summary(p), hours=0.1)
    docs = tmp_path / 'benchmarks.md'
    json_path = benchmark.write_outputs(meta, records(p), p, docs)
    first = docs.read_text()
    assert json.loads(json_path.read_text())['figures']['beta']['chosen'] == 1.0
    assert (tmp_path / 'benchmarks' / 'nds_vs_sparsity.png').is_file()
    assert (tmp_path / 'benchmarks' / 'additivity.png').is_file()
    docs.unlink()
    benchmark.main(['--report-only', '--docs', str(docs), '--plan', 'configs/benchmark/quick.py'])
    assert docs.read_text() == first


def test_published_json_keeps_allocations_beside_it_and_reads_back_the_same_cells(tmp_path):
    cells = {'oneshot/rd/s80/seed0/test': dict(status='done', cell=dict(kind='oneshot'),
                                                result=dict(sparsity=0.8, allocation={'a.weight': 0.75, 'b': 0.9})),
             'dense_eval/test': dict(status='done', cell=dict(kind='dense_eval'), result=dict(metrics={'NDS': 0.4})),
             'costs': dict(status='failed', cell=dict(kind='costs'), error='boom')}
    slim, allocations = benchmark.split_allocations(cells)
    assert allocations == {'oneshot/rd/s80/seed0/test': {'a.weight': 0.75, 'b': 0.9}}
    assert slim['oneshot/rd/s80/seed0/test']['result'] == {'sparsity': 0.8} and slim['costs'] == cells['costs']
    assert 'allocation' in cells['oneshot/rd/s80/seed0/test']['result']  # the caller's records are left alone
    path = tmp_path / 'benchmarks.json'
    path.write_text(benchmark.published_json(dict(meta={'x': 1}, figures={'f': [1, 2]}, cells=slim)))
    benchmark.allocations_path(path).write_text(benchmark.published_json(dict(allocations=allocations)))
    assert benchmark.allocations_path(path).name == 'benchmarks_allocations.json'
    text = path.read_text()
    assert 'allocation' not in text  # meta, figures (1 entry + 2 braces), cells (3 + 2): one line per entry
    assert len(text.splitlines()) == 1 + 3 + 3 + 2
    assert benchmark.read_published(path) == dict(meta={'x': 1}, figures={'f': [1, 2]}, cells=cells)
    with pytest.raises(ValueError, match='cells the json does not have'):
        benchmark.merge_allocations(slim, {'nope': {}})


def robust_plan(**robustness) -> Plan:
    r = dict(corruptions=['lidar_absent', 'camera_all_black'], seed=0,
             oneshot=dict(methods=['global', 'rd', 'mmprune4u_local'], sparsities=[0.8]),
             finetune=dict(sparsities=[0.8]), references=dict(lidar=dict(config='l.py', checkpoint='l.pth'),
                                                              camera=dict(config='c.py', checkpoint='c.pth')))
    r.update(robustness)
    return Plan(config='c.py', seeds=[0, 1], splits={'val': {}, 'test': {'x': 1}}, sparsities=[0.8],
                methods=['global', 'rd', 'mmprune4u_local'], beta=dict(values=[], default=1.0),
                finetune=dict(sparsities=[0.8], rows=[('dense', 'task'), ('rd', 'task'), ('mmprune4u_local', 'task')]),
                robustness=r)


def robust_records() -> dict:
    """NDS under (lidar_absent, camera_all_black); mAP = NDS / 2. The dense model: 0.20 and 0.32."""
    out = {}

    def put(cell, lidar, camera, clean=0.4):
        res = result(clean, size=dict(dense_bytes=1000, sparse_bytes=280, ratio=0.28),
                     corrupted={'lidar_absent': dict(NDS=lidar, mAP=lidar / 2),
                                'camera_all_black': dict(NDS=camera, mAP=camera / 2)})
        out[cell.id] = dict(status='done', key='k', cell=cell.spec(), seconds=1.0, result=res)
    put(Cell('dense_eval', split='test'), 0.20, 0.32)
    for sensor, nds in (('camera', 0.15), ('lidar', 0.30)):
        cell = Cell('reference', sensor=sensor, split='test')
        out[cell.id] = dict(status='done', cell=cell.spec(), result=result(nds, mAP=nds / 2))
    put(Cell('oneshot', method='global', sparsity=0.8, split='test'), 0.10, 0.24)
    for seed, values in enumerate([dict(rd=(0.12, 0.16), mm=(0.16, 0.24), rdf=(0.16, 0.20), mmf=(0.12, 0.30),
                                        dense=(0.22, 0.33)),
                                   dict(rd=(0.14, 0.16), mm=(0.18, 0.28), rdf=(0.18, 0.22), mmf=(0.13, 0.31),
                                        dense=(0.24, 0.35))]):
        put(Cell('oneshot', method='rd', sparsity=0.8, seed=seed, split='test'), *values['rd'])
        put(Cell('oneshot', method='mmprune4u_local', sparsity=0.8, seed=seed, split='test'), *values['mm'])
        put(Cell('finetune', method='dense', variant='task', seed=seed, split='test'), *values['dense'])
        put(Cell('finetune', method='rd', variant='task', sparsity=0.8, seed=seed, split='test'), *values['rdf'])
        put(Cell('finetune', method='mmprune4u_local', variant='task', sparsity=0.8, seed=seed, split='test'),
            *values['mmf'])
    return out


def test_retention_and_robustness_tables_by_hand():
    p = robust_plan()
    rob = report.figures(robust_records(), p)['robustness']
    lidar = rob['tables']['lidar_absent']
    assert (lidar['sensor'], lidar['reference_sensor'], lidar['dense_corrupted']) == ('lidar', 'camera', 0.20)
    rows = {(r['regime'], r['method'], r['variant']): r for r in lidar['rows']}
    assert [r['label'] for r in lidar['rows']] == [
        'dense', 'global magnitude', 'RD (β = 0)', 'MMPrune4U (local R)', 'dense, finetuned (equal budget)',
        'RD (β = 0), task loss', 'MMPrune4U (local R), task loss']
    assert rows[('dense', None, None)]['retention'] == dict(mean=1.0, std=0.0)
    assert rows[('oneshot', 'global', None)]['retention']['mean'] == pytest.approx(0.5)  # 0.10 / 0.20
    rd = rows[('oneshot', 'rd', None)]  # 0.12, 0.14 -> retention 0.6, 0.7
    assert rd['NDS']['mean'] == pytest.approx(0.13) and rd['mAP']['mean'] == pytest.approx(0.065)
    assert rd['retention']['mean'] == pytest.approx(0.65) and rd['retention']['std'] == pytest.approx(0.05 * 2 ** 0.5)
    assert rows[('finetune', 'mmprune4u_local', 'task')]['retention']['mean'] == pytest.approx(0.625)  # 0.6, 0.65
    (oneshot, finetune) = lidar['verdicts']
    assert (oneshot['regime'], oneshot['sparsity']) == ('oneshot', 0.8)
    (v,) = oneshot['rd']  # MMPrune4U 0.85 ± 0.071 vs RD 0.65 ± 0.071
    assert v['best_baseline'] == 'RD (β = 0)' and v['gap'] == pytest.approx(0.2) and v['beyond_std']
    (v,) = oneshot['others']  # vs global magnitude, seed-free 0.5
    assert v['best_baseline'] == 'global magnitude' and v['gap'] == pytest.approx(0.35) and v['beyond_std']
    (v,) = finetune['rd']  # finetuned: MMPrune4U 0.625 vs RD 0.85: a loss
    assert not v['wins'] and v['gap'] == pytest.approx(-0.225) and v['beyond_std']
    assert finetune['others'] == []  # no other baseline was finetuned
    assert lidar['reference'] == dict(label='camera-only model (clean)', NDS=0.15, mAP=0.075)
    assert lidar['below_reference'] == ['global magnitude (one-shot 80%)', 'RD (β = 0) (one-shot 80%)',
                                        'MMPrune4U (local R), task loss (finetuned 80%)']
    camera = rob['tables']['camera_all_black']
    (v,) = camera['verdicts'][0]['others']  # 0.24/0.32, 0.28/0.32 = 0.75, 0.875 vs global 0.75: inside the spread
    assert v['wins'] and v['gap'] == pytest.approx(0.0625) and v['beyond_std'] is False
    assert camera['reference']['NDS'] == 0.30 and 'MMPrune4U (local R), task loss (finetuned 80%)' \
        not in camera['below_reference']
    assert not lidar['unstable'] and not camera['unstable']
    cells = robust_records()  # a dense model that keeps 0.03 / 0.4 < 10% of its NDS: a near-zero divisor
    cells['dense_eval/test']['result']['corrupted']['lidar_absent']['NDS'] = 0.03
    fig = report.figures(cells, p)
    assert fig['robustness']['tables']['lidar_absent']['unstable']
    text = markdown.render(dict(command='c', date='d', machine='m', config='c.py', checkpoint='x',
                                plan=plan_summary(p)), fig, {})
    assert 'keeps less than 10% of its clean NDS: the retention ratios divide by a near-zero number' in text


def test_robustness_markdown_plot_and_cut(tmp_path):
    p = robust_plan()
    meta = dict(command='python tools/benchmark.py', date='d', machine='m', config='c.py', checkpoint='x',
                plan=plan_summary(p), hours=0.1)
    docs = tmp_path / 'benchmarks.md'
    benchmark.write_outputs(meta, robust_records(), p, docs)
    text = docs.read_text()
    for needle in ('## Degraded sensors (test split)', '### lidar_absent (LiDAR degraded)',
                   'Dense model: test NDS 0.400 clean, 0.200 under lidar_absent.',
                   '| RD (β = 0) | one-shot 80% | 0.130 ± 0.014 | 0.065 ± 0.007 | 0.650 ± 0.071 | 2 |',
                   '| global magnitude | one-shot 80% | 0.100 | 0.050 | 0.500 | seed-free |',
                   '| dense, finetuned (equal budget) | finetuned (no pruning) |',
                   '| camera-only model (clean) | reference | 0.150 | 0.075 | – | 1 |',
                   '- one-shot 80%: MMPrune4U (local R) retains more than RD (β = 0): retention +0.2000, by more '
                   'than one std.',
                   '- one-shot 80%: MMPrune4U (local R) retains more than the best other baseline (global magnitude): '
                   'retention +0.3500, by more than one std.',
                   '- finetuned 80%: MMPrune4U (local R), task loss **does not retain more than** RD (β = 0), task '
                   'loss: retention -0.2250, by more than one std.',
                   '**Below the camera-only reference** (NDS 0.150): global magnitude (one-shot 80%)',
                   '### camera_all_black (camera degraded)', 'within one std (not a clear difference)',
                   '![retention](benchmarks/retention.png)'):
        assert needle in text, needle
    assert (tmp_path / 'benchmarks' / 'retention.png').is_file()
    cut = report.cut_statement(robust_plan(oneshot=dict(methods=['rd'], sparsities=[0.8]), references={}))
    assert 'under corruption, one-shot at 80% only, for RD (β = 0) (not global magnitude, MMPrune4U (local R))' in cut
    assert 'no LiDAR-only / camera-only reference model (`robustness.references`)' in cut
    assert 'no degraded-sensor evaluation (`robustness` is None)' in report.cut_statement(plan())


def test_markdown_shows_the_dense_recipe_table():
    """dense.recipe='modalities': the fused vs single-sensor val table of the recipe goes under "Dense model"."""
    p = plan()
    cells = records(p)
    table = {'lidar-camera (stage 2)': {'metrics': {'NuScenes metric/NDS': 0.3512, 'NuScenes metric/mAP': 0.3}},
             'camera (stage 2)': {'metrics': {'NuScenes metric/NDS': 0.1897}}}
    cells['dense_train'] = dict(status='done', cell=Cell('dense_train').spec(), result=dict(modalities=table))
    meta = dict(command='c', date='d', machine='m', config='c.py', checkpoint='x', plan=plan_summary(p))
    text = markdown.render(meta, report.figures(cells, p), {})
    assert '| lidar-camera (stage 2) | 0.3512 | 0.3000 | – | – | – |' in text
    assert '| camera (stage 2) | 0.1897 | – | – | – | – |' in text
    assert 'Trained by `tools/compare_modalities.py`' not in markdown.render(meta, report.figures(records(p), p), {})
    assert 'every weight trained equally long), val split:' in text  # the plain fused stage 2: nothing said
    for dense, said in [(dict(lidar_dropout=True), 'long; the fused stage 2 with LiDAR dropout), val split:'),
                        (dict(fused_variant='x=configs/demo/f.py'), 'val split; the dense model is the fused variant '
                         '`lidar-camera_x` (stage 2 trained with `configs/demo/f.py`):')]:
        meta['plan'] = plan_summary(dataclasses.replace(p, dense=dict(p.dense, recipe='modalities', **dense)))
        assert said in markdown.render(meta, report.figures(cells, p), {})


SEG_METRICS = dict(primary='mIoU', secondary='acc', keys=dict(mIoU='miou'))


def seg_plan() -> Plan:
    return Plan(config='c.py', seeds=[0, 1], splits={'val': {'a': 'v'}, 'test': {'a': 't'}}, sparsities=[0.8],
                methods=['global', 'rd', 'mmprune4u_local'], metrics=SEG_METRICS,
                synthetic=dict(kind='semantickitti', root='d'),
                beta=dict(values=[0, 1, 3], sparsity=0.8, choose_on_val=True, default=1.0),
                dense=dict(iters=4, eval_every=2, plateau_tol=0.01), lsi_loss=dict(type='LogSobolevLoss'),
                finetune=dict(sparsities=[0.8], rows=[('dense', 'task'), ('mmprune4u_local', 'task')]))


def seg_result(miou, acc=0.9, sparsity=0.8, **extra):
    """SegMetric's keys as the cells store them (tools/test.py's short names), with a per-class IoU."""
    return dict(metrics=dict(miou=miou, acc=acc, acc_cls=0.5, car=0.7), sparsity=sparsity,
                by_modality=dict(camera=0.9, lidar=0.5, fusion=0.2), **extra)


def seg_records() -> dict:
    """β = 3 has the best mean val mIoU (0.42) but the worst acc; β = 0 the best acc. One-shot: MMPrune4U 0.40 ± 0
    vs RD 0.35, 0.37 (the best baseline, mean 0.36)."""
    out = {}

    def put(cell, res):
        out[cell.id] = dict(status='done', key='k', cell=cell.spec(), seconds=1.0, result=res)
    put(Cell('dense_eval', iteration=2, split='val'), seg_result(0.30, acc=0.80))
    put(Cell('dense_eval', split='val'), seg_result(0.36, acc=0.85))  # still improving: +0.06 > plateau_tol
    put(Cell('dense_eval', split='test'), seg_result(0.45, acc=0.88))
    size = dict(dense_bytes=1000, sparse_bytes=280, ratio=0.28)
    put(Cell('oneshot', method='global', sparsity=0.8, split='test'), seg_result(0.20, size=size))
    for seed in (0, 1):
        put(Cell('oneshot', method='rd', sparsity=0.8, seed=seed, split='test'),
            seg_result(0.35 + 0.02 * seed, size=size))
        put(Cell('oneshot', method='mmprune4u_local', sparsity=0.8, seed=seed, split='test'),
            seg_result(0.40, size=size))
        for beta, (miou, acc) in {0: (0.30, 0.95), 1: (0.40, 0.90), 3: (0.42, 0.80)}.items():
            put(report.beta_cell(seg_plan(), float(beta), seed), seg_result(miou + 0.01 * seed, acc=acc))
        put(Cell('finetune', method='dense', variant='task', seed=seed, split='test'), seg_result(0.46, sparsity=0.0))
        put(Cell('finetune', method='mmprune4u_local', variant='task', sparsity=0.8, seed=seed, split='test'),
            seg_result(0.43))
    return out


def test_a_segmentor_plan_reports_miou_and_acc():
    p = seg_plan()
    cells = seg_records()
    assert report.choose_beta(cells, p) == (3.0, [])  # the best mean val mIoU, not acc (β = 0) nor the default (1)
    fig = report.figures(cells, p)
    assert fig['metrics'] == dict(primary='mIoU', secondary='acc', keys=dict(mIoU='miou', acc='acc'))
    rows = {r['method']: r for r in fig['oneshot']['0.8']}
    assert rows['rd']['mIoU']['mean'] == pytest.approx(0.36) and rows['rd']['acc']['std'] == 0.0 and rows['rd']['acc']['mean'] == pytest.approx(0.9)
    assert not any('NDS' in r or 'mAP' in r for r in rows.values())
    (v,) = fig['verdicts']['oneshot']['0.8']
    assert v['best_baseline'] == 'RD (β = 0)' and v['wins'] and v['gap'] == pytest.approx(0.04) and v['beyond_std']
    assert fig['dense']['curve'] == [dict(iteration=2, mIoU=0.30, acc=0.80), dict(iteration=4, mIoU=0.36, acc=0.85)]
    assert fig['dense']['last_gain'] == pytest.approx(0.06) and not fig['dense']['plateaued']
    assert fig['beta']['chosen'] == 3.0 and [r['mIoU']['mean'] for r in fig['beta']['rows']] == \
        pytest.approx([0.305, 0.405, 0.425])


def test_segmentor_markdown_and_plots_say_miou_never_nds(tmp_path):
    p = seg_plan()
    meta = dict(command='python tools/benchmark.py --plan configs/benchmark/minkunet-pixelfusion_cpu.py', date='d',
                machine='m', config='c.py', checkpoint='x', plan=plan_summary(p), hours=0.1)
    docs = tmp_path / 'benchmarks.md'
    benchmark.write_outputs(meta, seg_records(), p, docs)
    text = docs.read_text()
    for needle in ('| method | mIoU | acc | sparsity | camera sparsity | lidar sparsity | fusion sparsity | seeds |',
                   '| RD (β = 0) | 0.360 ± 0.014 | 0.900 ± 0.000 | 0.800 |',
                   '| iteration | val mIoU | val acc |', '| 2 | 0.3000 | 0.8000 |',
                   'Last gain in val mIoU: +0.0600: **not plateaued**', 'Dense on test: mIoU 0.4500, acc 0.8800.',
                   'beats the best baseline (RD (β = 0)) on mIoU: +0.0400, by more than one std',
                   'β used for the MMPrune4U rows: 3 (best mean val mIoU).',
                   'on **test** (held-out sequences of the generated set)', '![miou_vs_sparsity]('):
        assert needle in text, needle
    assert 'NDS' not in text and 'mAP' not in text
    plots = tmp_path / 'benchmarks'
    assert {f.name for f in plots.iterdir()} >= {'miou_vs_sparsity.png', 'beta_sweep.png', 'dense_curve.png'}
    assert not (plots / 'nds_vs_sparsity.png').exists()
    docs.unlink()  # --report-only rebuilds the same docs from the json (the plan, metrics included, is in its meta)
    benchmark.main(['--report-only', '--docs', str(docs), '--plan', 'configs/benchmark/quick_seg.py'])
    assert docs.read_text() == text


def test_a_page_summarises_its_related_reports_and_says_which_are_not_published(tmp_path):
    """The nuScenes page ends with each segmentor report's test tables in short, from that report's own json; a
    related report not yet published is named, not skipped. The camera-view scoring of a plan is said on both."""
    sp = seg_plan()
    sp.splits['test'] = {'test_dataloader.dataset.pipeline': [dict(type='LoadPointsFromFile'),
                                                              dict(type='PointsInCameraFOV', camera='CAM2')]}
    seg_meta = dict(command='python tools/benchmark.py --plan seg.py', date='2026-12-01 05:00 UTC', machine='m',
                    config='seg.py', checkpoint='x', plan=plan_summary(sp), hours=0.1, title='benchmark_seg')
    benchmark.write_outputs(seg_meta, seg_records(), sp, tmp_path / 'seg' / 'seg.md')
    fov = "scored only on the points in the camera's field of view (`PointsInCameraFOV`)"
    assert fov in (tmp_path / 'seg' / 'seg.md').read_text()
    p = plan()
    meta = dict(command='python tools/benchmark.py', date='d', machine='m', config='c.py', checkpoint='x',
                plan=plan_summary(p), hours=0.1)
    docs = tmp_path / 'benchmarks.md'
    benchmark.write_outputs(meta, records(p), p, docs, [str(tmp_path / 'seg' / 'seg.md'), 'docs/not_run.md'])
    text = docs.read_text()
    summary = text[text.index('## Other benchmarks'):]
    for needle in ('### benchmark_seg: [seg/seg.md](seg/seg.md)',
                   f'Test split ({fov}), mIoU, mean ± std over seeds; the dense model: 0.4500.',
                   '| method | one-shot 80% |\n|---|---|\n| global magnitude | 0.200 |\n| RD (β = 0) | 0.360 ± 0.014 |\n'
                   '| MMPrune4U (local R) | 0.400 ± 0.000 |',
                   '| method | finetuned 80% |\n|---|---|\n| dense, finetuned (equal budget) | 0.460 ± 0.000 |\n'
                   '| MMPrune4U (local R), task loss | 0.430 ± 0.000 |',
                   'Not published yet: `docs/not_run.json` does not exist (run its plan).'):
        assert needle in summary, needle
    assert 'NDS' not in summary and fov not in text[:text.index('## Other benchmarks')]


@pytest.mark.parametrize('related', [['docs/x.json'], ['docs/benchmarks.md']])
def test_related_must_name_another_plans_report(related):
    p = plan()
    p.related = related
    with pytest.raises(ValueError, match='`related` must name other plans'):
        p.validate()
