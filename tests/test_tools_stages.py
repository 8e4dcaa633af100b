"""tools/_stages.py and the benchmark's log parsing: the small helpers the long CPU jobs rely on."""
import functools
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import _stages  # noqa: E402
from _stages import (data_root_options, last_checkpoint, metric, repo_relative, reusable, run_cached,  # noqa: E402
                     stage_key)
from benchmark_lsi_reference import seconds_per_iter  # noqa: E402


def test_repo_relative_inside_and_outside_the_repository(tmp_path):
    assert repo_relative(_stages.REPO / 'data' / 'synthetic_nuscenes') == 'data/synthetic_nuscenes'
    assert repo_relative(_stages.REPO / 'work_dirs' / '..' / 'data') == 'data'  # resolved first
    outside = tmp_path / 'run' / 'iter_2.pth'
    assert repo_relative(outside) == str(outside.resolve())


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


def test_stage_key_follows_file_contents_not_names(tmp_path):
    ckpt = tmp_path / 'dense.pth'
    ckpt.write_bytes(b'weights v1')
    args = ['tools/train.py', '--cfg-options', f'load_from={ckpt}', 'train_cfg.max_iters=10']
    first = stage_key(args)
    assert stage_key(args) == first  # deterministic
    ckpt.write_bytes(b'weights v2')  # same path, other weights: another key
    assert stage_key(args) != first
    assert stage_key(args[:-1] + ['train_cfg.max_iters=20']) != stage_key(args)


def test_stage_key_resolves_config_bases(tmp_path, monkeypatch):
    configs = tmp_path / 'configs'
    configs.mkdir()
    (configs / 'base.py').write_text('lr = 0.1\n')
    (configs / 'child.py').write_text("_base_ = ['./base.py']\nmax_iters = 5\n")
    monkeypatch.setattr(_stages, 'REPO', tmp_path)
    before = stage_key(['tools/train.py', 'configs/child.py'])
    (configs / 'base.py').write_text('lr = 0.2\n')  # only the base changed
    assert stage_key(['tools/train.py', 'configs/child.py']) != before


def test_outputs_are_keyed_literally_and_stale_results_rerun(tmp_path, capsys, monkeypatch):
    out = tmp_path / 'metrics.json'
    calls = []
    monkeypatch.setattr(_stages, 'run', lambda stage, args, log: (calls.append(stage), out.write_text('{}')))
    args = ['tools/test.py', '--metrics-json', str(out)]
    run_cached('evaluate', args, tmp_path / 'log', out)
    run_cached('evaluate', args, tmp_path / 'log', out)  # the output now exists: its content is not part of the key
    assert calls == ['evaluate'] and 'reused' in capsys.readouterr().out
    (tmp_path / 'metrics.json.key').write_text('an older key\n')
    assert not reusable('evaluate', tmp_path / 'metrics.json.key', stage_key(args, (out,)), out)
    assert 'stale' in capsys.readouterr().out
    run_cached('evaluate', args, tmp_path / 'log', out)
    assert calls == ['evaluate', 'evaluate']


def test_metrics_json_is_strict_json():
    import importlib.util
    import math
    spec = importlib.util.spec_from_file_location('tools_test_cli', Path(__file__).resolve().parents[1] / 'tools' / 'test.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.json_number(0.25) == 0.25 and cli.json_number(3) == 3.0
    assert cli.json_number(float('nan')) is None and cli.json_number(math.inf) is None
    text = json.dumps({'iou': cli.json_number(float('nan'))}, allow_nan=False)
    assert json.loads(text) == {'iou': None}


def _edit(monkeypatch, relative: str) -> None:
    """Simulate an edit of one plugin file: its bytes read differently (plugin_version's cache cleared before and
    after)."""
    from mmprune4u_plugin import fingerprint
    real = Path.read_bytes
    fingerprint._plugin_version.cache_clear()
    monkeypatch.setattr(fingerprint, '_plugin_version', functools.lru_cache(maxsize=16)(
        fingerprint._plugin_version.__wrapped__))

    def read_bytes(self):
        return real(self) + (b'# edited' if self.as_posix().endswith('mmprune4u_plugin/' + relative) else b'')
    monkeypatch.setattr(Path, 'read_bytes', read_bytes)


def test_synthetic_data_key_follows_the_generator_code_only(monkeypatch):
    """A change of the hook's code must not make every tool delete and regenerate the shared synthetic set."""
    args = ['tools/create_synthetic_nuscenes.py', '--seed', '0']
    data_key, full_key = stage_key(args, plugin_part='datasets'), stage_key(args, plugin_part='')
    with monkeypatch.context() as m:
        _edit(m, 'hooks/prune_hook.py')
        assert stage_key(args, plugin_part='datasets') == data_key and stage_key(args, plugin_part='') != full_key
    _edit(monkeypatch, 'datasets/render.py')
    assert stage_key(args, plugin_part='datasets') != data_key


def test_dense_stages_follow_the_model_code_and_pruning_stages_all_of_it(monkeypatch):
    """Training a dense config (no pruning hook, no LSI loss) is keyed on fingerprint.MODEL_CODE: an edit of the
    pruner does not retrain it, an edit of the model does; a stage whose config prunes follows every file."""
    dense = ['tools/train.py', 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py']
    pruning = ['tools/train.py', 'configs/demo/mmprune4u-70_bevfusion-lite_tiny_demo_synthetic-nus.py']
    options = dense + ['--cfg-options', "custom_hooks=[dict(type='MMPrune4UHook')]"]
    keys = [stage_key(a) for a in (dense, pruning, options)]
    with monkeypatch.context() as m:
        _edit(m, 'core/sampled_levels.py')
        after = [stage_key(a) for a in (dense, pruning, options)]
        assert after[0] == keys[0] and after[1] != keys[1] and after[2] != keys[2]
    with monkeypatch.context() as m:
        _edit(m, 'models/view_transform.py')
        assert all(stage_key(a) != k for a, k in zip((dense, pruning, options), keys))


def test_plugin_files_of_the_model_code_leave_out_the_pruner():
    from mmprune4u_plugin.fingerprint import MODEL_CODE, plugin_files
    root = Path(_stages.REPO) / 'mmprune4u_plugin'
    names = {p.relative_to(root).as_posix() for p in plugin_files(MODEL_CODE)}
    assert 'models/view_transform.py' in names and 'datasets/render.py' in names and '__init__.py' in names
    assert not any(n.startswith('core/') for n in names) and 'hooks/prune_hook.py' not in names
    assert len(plugin_files('')) > len(names)
    with pytest.raises(FileNotFoundError, match='neither a file nor a directory'):
        plugin_files(('models', 'no_such_part'))


def test_synthetic_data_is_keyed_on_one_spelling_of_its_path(tmp_path, monkeypatch):
    """The benchmark names the set relative to the repository, compare_modalities absolute: one key, no rebuild."""
    monkeypatch.chdir(_stages.REPO)
    runs = []
    monkeypatch.setattr(_stages, 'run', lambda stage, args, log: runs.append(args))
    monkeypatch.setattr(_stages.shutil, 'rmtree', lambda *a, **k: None)
    monkeypatch.setattr(Path, 'write_text', lambda self, text: None)
    _stages.ensure_synthetic_data(tmp_path / 'data.log', Path('data/not_there'), 3, 2)
    _stages.ensure_synthetic_data(tmp_path / 'data.log', _stages.REPO / 'data' / 'not_there', 3, 2)
    assert len(runs) == 2 and runs[0] == runs[1] and runs[0][2] == str(_stages.REPO / 'data' / 'not_there')


def test_train_many_settles_keys_first_runs_side_by_side_and_reuses(tmp_path, monkeypatch):
    """Two trainings with jobs=2: both run, each with half the cores; their keys are written after both ran; a
    second call reuses both; a stale one (other options) runs alone with every core."""
    config = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py'
    runs = []

    def fake_run(stage, args, log, threads=None):
        work = Path(args[args.index('--work-dir') + 1])
        work.mkdir(parents=True, exist_ok=True)
        (work / 'iter_1.pth').write_text('w')
        (work / 'last_checkpoint').write_text(str(work / 'iter_1.pth'))
        runs.append((stage, threads))
    monkeypatch.setattr(_stages, 'run', fake_run)
    monkeypatch.setattr(_stages.os, 'cpu_count', lambda: 4)
    specs = {n: (f'train {n}', config, tmp_path / n, tmp_path / f'{n}.log', '--cfg-options', f'randomness.seed={i}')
             for i, n in enumerate(('a', 'b'))}
    ckpts = _stages.train_many(specs, jobs=2)
    assert sorted(runs) == [('train a', 2), ('train b', 2)]
    assert ckpts == {n: tmp_path / n / 'iter_1.pth' for n in ('a', 'b')}
    assert all((tmp_path / n / _stages.KEY_NAME).is_file() for n in ('a', 'b'))
    runs.clear()
    assert _stages.train_many(specs, jobs=2) == ckpts and runs == []
    specs['b'] = specs['b'][:-1] + ('randomness.seed=7',)
    _stages.train_many(specs, jobs=2)
    assert runs == [('train b', None)]


def test_train_many_resumes_an_interrupted_run_of_the_same_key_only(tmp_path, monkeypatch):
    """A run stopped after its checkpoint at 2 (a session that ends mid-training) continues from it with --resume,
    under the original key and with the first part's log kept; an interrupted run of another key starts over."""
    config = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py'
    runs, stop = [], [True]

    def fake_run(stage, args, log, threads=None):
        work = Path(args[args.index('--work-dir') + 1])
        runs.append((stage, args[-1], Path(log).name, sorted(p.name for p in work.glob('iter_*.pth'))))
        Path(log).write_text('log')
        for it in (2, 4):
            if (work / f'iter_{it}.pth').exists():
                continue
            (work / f'iter_{it}.pth').write_text('w')
            (work / 'last_checkpoint').write_text(str(work / f'iter_{it}.pth'))
            if stop[0]:
                raise SystemExit('interrupted')
    monkeypatch.setattr(_stages, 'run', fake_run)
    spec = {'a': ('train a', config, tmp_path / 'a', tmp_path / 'a.log', '--cfg-options', 'randomness.seed=0')}
    with pytest.raises(SystemExit, match='interrupted'):
        _stages.train_many(spec)
    assert runs == [('train a', 'randomness.seed=0', 'a.log', [])]
    assert not (tmp_path / 'a' / _stages.KEY_NAME).exists()
    stop[0] = False
    assert _stages.train_many(spec) == {'a': tmp_path / 'a' / 'iter_4.pth'}
    assert runs[1] == ('train a (resumed from iter_2.pth)', '--resume', 'a.resumed_iter_2.log', ['iter_2.pth'])
    assert (tmp_path / 'a.log').read_text() == 'log'
    key = (tmp_path / 'a' / _stages.KEY_NAME).read_text().strip()
    assert key == _stages.stage_key(['tools/train.py', config, '--work-dir', str(tmp_path / 'a'), *spec['a'][4:]])
    assert not (tmp_path / 'a' / _stages.STARTED_KEY_NAME).exists()
    assert _stages.train_many(spec) == {'a': tmp_path / 'a' / 'iter_4.pth'} and len(runs) == 2  # finished: reused
    # interrupted again, then asked with another seed: the partial run is not resumed
    (tmp_path / 'a' / _stages.KEY_NAME).unlink()
    (tmp_path / 'a' / _stages.STARTED_KEY_NAME).write_text(key + '\n')
    other = {'a': spec['a'][:-1] + ('randomness.seed=1',)}
    _stages.train_many(other)
    assert runs[2] == ('train a', 'randomness.seed=1', 'a.log', [])
    # started but killed before its first checkpoint: starts over
    (tmp_path / 'a' / _stages.KEY_NAME).unlink()
    (tmp_path / 'a' / 'last_checkpoint').unlink()
    _stages.train_many(other)
    assert runs[3] == ('train a', 'randomness.seed=1', 'a.log', [])
