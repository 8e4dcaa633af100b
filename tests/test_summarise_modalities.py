"""tools/summarise_modalities.py: mean ± std over seeds of compare_modalities runs and the two targets, on
hand-made runs whose figures are checked by hand."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import summarise_modalities  # noqa: E402

SETTINGS = dict(iters=1200, iters2=900, img_pretrain_iters=1800, lidar_dropout=True, data_root='/data',
                configs={'lidar': 'l.py'}, stage2_configs={'lidar': 'l.py'})


def _run(tmp_path: Path, seed: int, fused: float, lidar: float, camera: float, **changes) -> Path:
    def result(nds):
        return {'metrics': {'NuScenes metric/pred_instances_3d_NuScenes/NDS': nds,
                            'NuScenes metric/pred_instances_3d_NuScenes/mAP': nds - 0.1}}
    work = tmp_path / f'seed{seed}'
    work.mkdir()
    run = dict(SETTINGS, seed=seed, results={'lidar (stage 1)': result(lidar - 0.02),
                                             'lidar-camera (stage 2)': result(fused), 'lidar (stage 2)': result(lidar),
                                             'camera (stage 2)': result(camera)})
    run.update(changes)
    (work / 'modalities.json').write_text(json.dumps(run))
    return work


def test_means_per_seed_gaps_and_targets(tmp_path, capsys):
    dirs = [_run(tmp_path, 2, 0.44, 0.40, 0.20), _run(tmp_path, 0, 0.416, 0.405, 0.229),
            _run(tmp_path, 1, 0.40, 0.41, 0.10)]
    summary = summarise_modalities.main([str(d) for d in dirs] + ['--out', str(tmp_path / 'out')])
    assert summary['seeds'] == [0, 1, 2]  # sorted by seed
    assert summary['models']['lidar (stage 2)']['NDS']['values'] == [0.405, 0.41, 0.40]
    assert summary['models']['lidar (stage 2)']['NDS']['mean'] == pytest.approx(0.405)
    assert summary['models']['lidar (stage 2)']['NDS']['std'] == pytest.approx(0.005)  # sqrt((0 + 25 + 25)e-6 / 2)
    gap = summary['targets']['fused_minus_lidar_nds']
    assert gap['per_seed'] == pytest.approx([0.011, -0.01, 0.04])
    assert gap['mean'] == pytest.approx(0.041 / 3) and not gap['met']
    cam = summary['targets']['camera_nds']
    assert cam['mean'] == pytest.approx(0.529 / 3) and cam['met']  # 0.176 >= 0.15
    # std: sqrt((0.0527² + 0.0763² + 0.0237²) / 2) = 0.068
    text = (tmp_path / 'out' / 'modalities_seeds.md').read_text()
    assert '| lidar (stage 2) | 0.405 | 0.410 | 0.400 | 0.305 | 0.310 | 0.300 | 0.405 ± 0.005 | 0.305 ± 0.005 |' in text
    assert 'per seed +0.011 / -0.010 / +0.040), target >= +0.03: **not met**' in text
    assert 'camera-only NDS 0.176 ± 0.068, target >= 0.15: **met**' in text
    assert text == capsys.readouterr().out
    assert json.loads((tmp_path / 'out' / 'modalities_seeds.json').read_text())['seeds'] == [0, 1, 2]


def test_fused_target_met_when_the_mean_gap_reaches_it(tmp_path):
    dirs = [_run(tmp_path, 0, 0.45, 0.41, 0.2), _run(tmp_path, 1, 0.43, 0.41, 0.2)]
    summary = summarise_modalities.main([str(d) for d in dirs])
    gap = summary['targets']['fused_minus_lidar_nds']
    assert gap['mean'] == pytest.approx(0.03) and gap['reached'] is (gap['mean'] >= 0.03)
    assert gap['met'] is False and gap['n'] == 2  # two seeds: the target is a mean over three
    text = summarise_modalities.markdown(summary)
    reached = '**reached on 2 seed(s), not yet met** (a mean over at least 3 seeds)'
    assert gap['reached'] and 'target >= +0.03: ' + reached in text  # mean (0.04 + 0.02) / 2 = 0.03
    assert 'camera-only NDS 0.200 ± 0.000, target >= 0.15: ' + reached in text


def test_one_seed_has_no_spread_and_is_not_met(tmp_path):
    summary = summarise_modalities.main([str(_run(tmp_path, 0, 0.46, 0.42, 0.2))])
    text = summarise_modalities.markdown(summary)
    assert 'camera-only NDS 0.200 (n=1), target >= 0.15: **reached on 1 seed(s), not yet met**' in text
    assert '- fused - LiDAR-only NDS +0.040 (per seed +0.040), target >= +0.03: **reached on 1 seed(s)' in text


@pytest.mark.parametrize('second, message', [
    (dict(seed=0), 'each run must have its own seed'),
    (dict(iters2=300), "differ in 'iters2'"),
    (dict(lidar_dropout=False), "differ in 'lidar_dropout'"),
])
def test_runs_that_differ_in_more_than_the_seed_are_refused(tmp_path, second, message):
    first = _run(tmp_path, 0, 0.4, 0.4, 0.2)
    other = tmp_path / 'other'
    run = json.loads((first / 'modalities.json').read_text())
    run.update({'seed': 1, **second})
    other.mkdir()
    (other / 'modalities.json').write_text(json.dumps(run))
    with pytest.raises(SystemExit, match=message):
        summarise_modalities.main([str(first), str(other)])


def test_a_missing_run_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(SystemExit, match='run tools/compare_modalities.py --work-dir'):
        summarise_modalities.main([str(tmp_path / 'nothing')])


def test_fused_variants_get_their_own_gap(tmp_path):
    """Runs with ``--fused-variant``: each variant's NDS minus LiDAR-only's, per seed, beside the fused model's."""
    def variant(nds):
        return {'metrics': {'NuScenes metric/pred_instances_3d_NuScenes/NDS': nds,
                            'NuScenes metric/pred_instances_3d_NuScenes/mAP': nds - 0.1}}
    dirs = []
    for seed, fused, lidar, cam_lr in ((0, 0.40, 0.42, 0.46), (1, 0.41, 0.40, 0.43), (2, 0.40, 0.40, 0.435)):
        work = _run(tmp_path, seed, fused, lidar, 0.2)
        run = json.loads((work / 'modalities.json').read_text())
        run['results']['lidar-camera_cam-lr0.1 (stage 2)'] = variant(cam_lr)
        (work / 'modalities.json').write_text(json.dumps(run))
        dirs.append(work)
    summary = summarise_modalities.main([str(d) for d in dirs])
    assert summary['targets']['fused_minus_lidar_nds']['per_seed'] == pytest.approx([-0.02, 0.01, 0.0])
    gap = summary['targets']['fused_variants_minus_lidar_nds']['lidar-camera_cam-lr0.1']
    assert gap['per_seed'] == pytest.approx([0.04, 0.03, 0.035]) and gap['mean'] == pytest.approx(0.035)
    assert gap['met']  # three seeds, mean 0.035 >= 0.03
    text = summarise_modalities.markdown(summary)
    assert '- fused - LiDAR-only NDS -0.003 ± 0.015 (per seed -0.020 / +0.010 / +0.000), target >= +0.03: ' \
           '**not met**' in text
    assert '- lidar-camera_cam-lr0.1 - LiDAR-only NDS +0.035 ± 0.005 (per seed +0.040 / +0.030 / +0.035), ' \
           'target >= +0.03: **met**' in text


def _data(root: Path, files: dict) -> str:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return str(root)


def _two_runs_on(tmp_path, root_a: str, root_b: str) -> list[str]:
    first = _run(tmp_path, 0, 0.4, 0.4, 0.2)
    run = json.loads((first / 'modalities.json').read_text())
    (first / 'modalities.json').write_text(json.dumps(dict(run, data_root=root_a)))
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'modalities.json').write_text(json.dumps(dict(run, seed=1, data_root=root_b)))
    return [str(first), str(other)]


def test_two_data_roots_with_the_same_bytes_are_one_data_set(tmp_path):
    """The same set generated in two places (their stage keys name the places): accepted, both roots named."""
    files = {'nuscenes_infos_val.pkl': b'val', 'samples/LIDAR_TOP/a.bin': b'\x00\x01'}
    a = _data(tmp_path / 'a', {**files, summarise_modalities.KEY_NAME: b'key of the command that wrote a'})
    b = _data(tmp_path / 'b', {**files, summarise_modalities.KEY_NAME: b'key of the command that wrote b'})
    summary = summarise_modalities.main(_two_runs_on(tmp_path, a, b))
    assert summary['settings']['data_root'] == sorted([a, b])


@pytest.mark.parametrize('other_files', [
    {'nuscenes_infos_val.pkl': b'val', 'samples/LIDAR_TOP/a.bin': b'\x00\x02'},  # one byte differs
    {'nuscenes_infos_val.pkl': b'val', 'samples/LIDAR_TOP/b.bin': b'\x00\x01'},  # same bytes, another name
    {'nuscenes_infos_val.pkl': b'val'},  # a file less
])
def test_data_roots_that_differ_in_any_file_are_refused(tmp_path, other_files):
    a = _data(tmp_path / 'a', {'nuscenes_infos_val.pkl': b'val', 'samples/LIDAR_TOP/a.bin': b'\x00\x01'})
    b = _data(tmp_path / 'b', other_files)
    with pytest.raises(SystemExit, match="differ in 'data_root'"):
        summarise_modalities.main(_two_runs_on(tmp_path, a, b))


def test_a_data_root_that_is_not_here_cannot_be_compared(tmp_path):
    a = _data(tmp_path / 'a', {'x': b'1'})
    with pytest.raises(SystemExit, match='is not here to compare by content'):
        summarise_modalities.main(_two_runs_on(tmp_path, a, str(tmp_path / 'gone')))
