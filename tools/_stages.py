"""Shared stage runner for the long CPU jobs (tools/demo.py, tools/compare_modalities.py).

Each stage runs one of the project's CLIs in a subprocess with its output in a log file, prints one line when it
starts and one when it ends, and is skipped on a second run when its output exists (cached stages).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / 'data' / 'synthetic_nuscenes'


def run(stage: str, args: list[str], log: Path) -> None:
    """Run one CLI, log to ``log``, show one line per stage; fail loudly with the log's tail."""
    start = time.time()
    print(f'[{Path(sys.argv[0]).stem}] {stage} ...', flush=True)
    with open(log, 'w') as f:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    if proc.returncode != 0:
        raise SystemExit(f'{stage} failed; last lines of {log}:\n' + ''.join(open(log).readlines()[-30:]))
    print(f'[{Path(sys.argv[0]).stem}] {stage} done in {time.time() - start:.0f} s (log: {log})', flush=True)


def ensure_synthetic_data(log: Path, root: Path = DATA, num_train: int = 200, num_val: int = 40) -> None:
    """Generate the demo's synthetic nuScenes-format set (seed 0; 200 train / 40 val scenes) unless present."""
    if not (root / 'nuscenes_infos_val.pkl').is_file():
        run('synthetic data', ['tools/create_synthetic_nuscenes.py', '--out-dir', str(root), '--num-train',
                               str(num_train), '--num-val', str(num_val), '--seed', '0', '--workers', '2'], log)


def data_root_options(root: Path) -> list[str]:
    """``--cfg-options`` that point a demo config's train/test datasets and its metric at another data root."""
    root_dir = f'{Path(root).resolve()}/'
    return [f'train_dataloader.dataset.dataset.data_root={root_dir}', f'test_dataloader.dataset.data_root={root_dir}',
            f'test_evaluator.data_root={root_dir}']


def last_checkpoint(work_dir: Path) -> Path | None:
    marker = work_dir / 'last_checkpoint'
    return Path(marker.read_text().strip()) if marker.is_file() else None


def train(stage: str, config: str, work_dir: Path, log: Path, *extra: str) -> Path:
    """Train ``config`` into ``work_dir`` unless it already holds a last checkpoint; return that checkpoint."""
    ckpt = last_checkpoint(work_dir)
    if ckpt is None:
        run(stage, ['tools/train.py', config, '--work-dir', str(work_dir), *extra], log)
        ckpt = last_checkpoint(work_dir)
    return ckpt


def evaluate(name: str, config: str, checkpoint: Path | None, out: Path, *extra: str) -> dict:
    """tools/test.py on the val split -> ``out/metrics_<name>.json`` (cached); returns its content."""
    metrics = out / f'metrics_{name}.json'
    if not metrics.is_file():
        ckpt = str(checkpoint) if checkpoint is not None else 'none'
        run(f'evaluate {name}', ['tools/test.py', config, ckpt, '--work-dir', str(out / f'test_{name}'),
                                 '--metrics-json', str(metrics), *extra], out / f'test_{name}.log')
    return json.loads(metrics.read_text())


def metric(result: dict, key: str) -> float:
    """A metric by its short name (``NDS``) from a metrics json whose keys carry a prefix (``NuScenes metric/NDS``)."""
    metrics = result['metrics']
    return metrics.get(next((k for k in metrics if k.split('/')[-1] == key), key), float('nan'))
