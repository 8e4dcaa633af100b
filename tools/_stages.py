"""Shared stage runner for the long CPU jobs (tools/demo.py, tools/compare_modalities.py).

Each stage runs one of the project's CLIs in a subprocess with its output in a log file, prints one line when it
starts and one when it ends. A stage's result is reused only when its key matches: a digest of what it depends on
(the resolved config, every file its arguments name, e.g. a checkpoint, the other arguments and the plugin's code,
see :func:`stage_key`), stored beside the result. A reused stage says so; a stale one runs again. A training
interrupted after a checkpoint (a session that stops mid-run) resumes from it when asked again with the same key.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / 'data' / 'synthetic_nuscenes'
KEY_NAME = '.mmprune4u_stage_key'
# written when a training starts, replaced by KEY_NAME when it ends: an interrupted run of the same key resumes from
# its last checkpoint (a session that stops mid-run loses at most one checkpoint interval)
STARTED_KEY_NAME = '.mmprune4u_stage_key.started'


def _config_text(path: Path) -> str:
    """The config with its ``_base_`` chain resolved (so a change in a base config changes the key)."""
    from mmengine.config import Config
    return Config.fromfile(str(path), import_custom_modules=False).pretty_text


def _arg_content(arg: str) -> str:
    """What an argument contributes to a key: a config's resolved text, a file's digest, or the argument itself."""
    from mmprune4u_plugin.fingerprint import file_digest
    value = arg.split('=', 1)[1] if '=' in arg and not arg.startswith('-') else arg
    path = Path(value) if Path(value).is_absolute() else REPO / value
    if value and path.is_file():
        content = _config_text(path) if path.suffix == '.py' and 'configs' in path.parts else file_digest(path)
        return arg.replace(value, f'<{content}>') if value != arg else f'<{content}>'
    return arg


PRUNING_NAMES = ('MMPrune4UHook', 'LogSobolevLoss')  # a stage whose config names one of these runs the pruner


def stage_key(args: list[str], outputs: tuple[Path, ...] = (),
              plugin_part: str | tuple[str, ...] | None = None) -> str:
    """Digest of a stage's command line by content (``outputs`` are taken literally: they are what the stage
    writes), plus the plugin's version and source digest: of ``plugin_part`` only where given (a sub-package or a
    tuple of them), else of the whole plugin for a stage whose config or options name the pruning hook or the LSI
    loss, and of the dense model's code (``MODEL_CODE``) for any other."""
    from mmprune4u_plugin.fingerprint import MODEL_CODE, plugin_version
    literal = {str(p) for p in outputs}
    contents = [arg if arg in literal else _arg_content(arg) for arg in map(str, args)]
    if plugin_part is None:
        plugin_part = '' if any(name in c for c in contents for name in PRUNING_NAMES) else MODEL_CODE
    sha = hashlib.sha1(plugin_version(plugin_part).encode())
    for content in contents:
        sha.update(b'\0' + content.encode())
    return sha.hexdigest()


def reusable(stage: str, key_file: Path, key: str, *outputs: Path) -> bool:
    """True (and says so) when every output exists and ``key_file`` holds ``key``."""
    if all(p.exists() for p in outputs) and key_file.is_file() and key_file.read_text().strip() == key:
        print(f'[{Path(sys.argv[0]).stem}] {stage}: reused (key {key[:12]} matches)', flush=True)
        return True
    if any(p.exists() for p in outputs):
        print(f'[{Path(sys.argv[0]).stem}] {stage}: the existing result is stale (its inputs or code changed): '
              'running again', flush=True)
    return False


def run_cached(stage: str, args: list[str], log: Path, *outputs: Path) -> None:
    """:func:`run` unless ``outputs`` exist with a matching key (stored as ``<first output>.key``)."""
    key = stage_key(args, outputs)
    key_file = outputs[0].with_name(outputs[0].name + '.key')
    if reusable(stage, key_file, key, *outputs):
        return
    run(stage, args, log)
    key_file.write_text(key + '\n')


def run(stage: str, args: list[str], log: Path, threads: int | None = None) -> None:
    """Run one CLI, log to ``log``, show one line per stage; fail loudly with the log's tail. ``threads``: the
    subprocess's OpenMP / MKL threads (for stages that run side by side)."""
    start = time.time()
    print(f'[{Path(sys.argv[0]).stem}] {stage} ...', flush=True)
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log, 'w') as f:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'{stage} failed; last lines of {log}:\n' + ''.join(open(log).readlines()[-30:]))
    print(f'[{Path(sys.argv[0]).stem}] {stage} done in {time.time() - start:.0f} s (log: {log})', flush=True)


def ensure_synthetic_data(log: Path, root: Path = DATA, num_train: int = 200, num_val: int = 40) -> None:
    """Generate the demo's synthetic nuScenes-format set (seed 0; 200 train / 40 val scenes) unless present with
    the same generator code and arguments."""
    root = Path(root).resolve()  # one spelling of the path in the key, whoever asks (tools, the benchmark)
    args = ['tools/create_synthetic_nuscenes.py', '--out-dir', str(root), '--num-train', str(num_train),
            '--num-val', str(num_val), '--seed', '0', '--workers', '2']
    key = stage_key(args, plugin_part='datasets')  # the data depends on the generator's code, not the hook's
    if reusable('synthetic data', root / KEY_NAME, key, root / 'nuscenes_infos_val.pkl'):
        return
    shutil.rmtree(root, ignore_errors=True)
    run('synthetic data', args, log)
    (root / KEY_NAME).write_text(key + '\n')


def data_root_options(root: Path) -> list[str]:
    """``--cfg-options`` that point a demo config's train/test datasets and its metric at another data root."""
    root_dir = f'{Path(root).resolve()}/'
    return [f'train_dataloader.dataset.dataset.data_root={root_dir}', f'test_dataloader.dataset.data_root={root_dir}',
            f'test_evaluator.data_root={root_dir}']


def repo_relative(path: Path | str) -> str:
    """``path`` relative to the repository when it lies inside it, else absolute: what a run records, so that the
    records of the same run on two clones (other absolute paths) compare equal."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def last_checkpoint(work_dir: Path) -> Path | None:
    marker = work_dir / 'last_checkpoint'
    return Path(marker.read_text().strip()) if marker.is_file() else None


def train(stage: str, config: str, work_dir: Path, log: Path, *extra: str) -> Path:
    """Train ``config`` into ``work_dir`` unless it holds a last checkpoint of the same key; return the checkpoint."""
    return train_many({stage: (stage, config, work_dir, log, *extra)})[stage]


def train_many(trainings: dict[str, tuple], jobs: int = 1) -> dict[str, Path]:
    """:func:`train` of every ``name: (stage, config, work_dir, log, *extra)``, ``jobs`` subprocesses at a time,
    each with its share of the CPU cores. Keys and reuse are settled here first, one after another (building
    configs for the keys from several threads at once deadlocked); only the subprocesses run side by side."""
    done, todo = {}, {}
    for name, (stage, config, work_dir, log, *extra) in trainings.items():
        work_dir = Path(work_dir)
        args = ['tools/train.py', config, '--work-dir', str(work_dir), *extra]
        key = stage_key(args)
        ckpt = last_checkpoint(work_dir)
        if ckpt is not None and reusable(stage, work_dir / KEY_NAME, key, ckpt):
            done[name] = ckpt
            continue
        log = Path(log)
        if interrupted(work_dir, key):
            print(f'[{Path(sys.argv[0]).stem}] {stage}: resuming the interrupted run from {ckpt.name} (same key '
                  f'{key[:12]})', flush=True)
            # the key stays the original command's; the interrupted part's log is kept beside the new one
            stage, args = f'{stage} (resumed from {ckpt.name})', [*args, '--resume']
            log = log.with_name(f'{log.stem}.resumed_{ckpt.stem}{log.suffix}')
        else:
            shutil.rmtree(work_dir, ignore_errors=True)  # a stale run's checkpoints must not be picked up
            work_dir.mkdir(parents=True)
            (work_dir / STARTED_KEY_NAME).write_text(key + '\n')
        todo[name] = (stage, args, log, key, work_dir)
    if todo:
        side = max(1, min(jobs, len(todo)))
        threads = None if side == 1 else max(1, (os.cpu_count() or 1) // side)
        with ThreadPoolExecutor(max_workers=side) as pool:
            futures = [pool.submit(run, stage, args, log, threads) for stage, args, log, _, _ in todo.values()]
        for future in futures:
            future.result()  # a failed stage raises here (SystemExit with its log's tail)
        for name, (_, _, _, key, work_dir) in todo.items():
            (work_dir / KEY_NAME).write_text(key + '\n')
            (work_dir / STARTED_KEY_NAME).unlink(missing_ok=True)
            done[name] = last_checkpoint(work_dir)
    return {name: done[name] for name in trainings}


def interrupted(work_dir: Path, key: str) -> bool:
    """Whether ``work_dir`` holds a run of ``key`` that started, kept a checkpoint and did not finish (mmengine's
    ``--resume`` continues it: optimizer, schedule and iteration; the dataloader skips the batches already seen)."""
    started, ckpt = work_dir / STARTED_KEY_NAME, last_checkpoint(work_dir)
    return (not (work_dir / KEY_NAME).exists() and started.is_file() and started.read_text().strip() == key
            and ckpt is not None and ckpt.is_file())


def evaluate(name: str, config: str, checkpoint: Path | None, out: Path, *extra: str) -> dict:
    """tools/test.py on the val split -> ``out/metrics_<name>.json`` (cached by key); returns its content."""
    metrics = out / f'metrics_{name}.json'
    ckpt = str(checkpoint) if checkpoint is not None else 'none'
    run_cached(f'evaluate {name}', ['tools/test.py', config, ckpt, '--work-dir', str(out / f'test_{name}'),
                                    '--metrics-json', str(metrics), *extra], out / f'test_{name}.log', metrics)
    return json.loads(metrics.read_text())


def metric(result: dict, key: str) -> float:
    """A metric by its short name (``NDS``) from a metrics json whose keys carry a prefix (``NuScenes metric/NDS``)."""
    metrics = result['metrics']
    return metrics.get(next((k for k in metrics if k.split('/')[-1] == key), key), float('nan'))
