"""`make demo`: prune -> finetune -> evaluate BEVFusion-Lite on the embedded synthetic nuScenes-format data, on CPU.

Stages (each cached, so a second run only redoes what is missing; ``--fresh`` redoes everything):
  1. data      tools/create_synthetic_nuscenes.py -> data/synthetic_nuscenes (200 train / 40 val scenes)
  2. dense     train the tiny LiDAR-camera model      -> work_dirs/demo/dense/iter_*.pth
  3. evaluate  untrained and dense models with nuscenes-devkit metrics (NDS, mAP, TP errors)
  4. prune     MMPrune4UHook at 70% (exact curves, DP, masks) + finetuning with LogSobolevLoss
  5. evaluate  the pruned model with the plain config; export a compressed sparse checkpoint
  6. report    work_dirs/demo/report.md + report.json (+ the hook's per-layer table and plots)
Every stage runs the project's own CLIs (tools/train.py, tools/test.py, tools/export_sparse.py) in a subprocess.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _stages import DATA, REPO, ensure_synthetic_data, evaluate, metric, run, train

DENSE_CFG = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py'
PRUNE_CFG = 'configs/demo/mmprune4u-70_bevfusion-lite_tiny_demo_synthetic-nus.py'
FINETUNE_CFG = 'configs/demo/bevfusion-lite_tiny_demo-finetune_synthetic-nus.py'  # PRUNE_CFG without the hook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=str(REPO / 'work_dirs' / 'demo'))
    parser.add_argument('--fresh', action='store_true', help='regenerate the data and retrain from scratch')
    args = parser.parse_args()
    out = Path(args.work_dir)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(DATA, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ensure_synthetic_data(out / 'data.log')
    dense = train('train the dense model (300 iterations)', DENSE_CFG, out / 'dense', out / 'dense.log')
    untrained = evaluate('untrained', DENSE_CFG, None, out)
    dense_m = evaluate('dense', DENSE_CFG, dense, out)
    pruned = train('MMPrune4U 70% + finetune with LogSobolevLoss (100 iterations)', PRUNE_CFG, out / 'pruned',
                   out / 'pruned.log', '--cfg-options', f'load_from={dense}')
    pruned_m = evaluate('pruned', DENSE_CFG, pruned, out)  # the plain config: no hook needed to load it
    reference = train('dense + the same 100 finetuning iterations (equal-budget reference)', FINETUNE_CFG,
                      out / 'dense_finetuned', out / 'dense_finetuned.log', '--cfg-options', f'load_from={dense}')
    reference_m = evaluate('dense_finetuned', DENSE_CFG, reference, out)
    lamp = train('LAMP 70% + the same finetuning (100 iterations)', PRUNE_CFG, out / 'lamp', out / 'lamp.log',
                 '--cfg-options', f'load_from={dense}', 'default_hooks.mmprune4u.allocator=lamp')
    lamp_m = evaluate('lamp', DENSE_CFG, lamp, out)
    run('export sparse checkpoint', ['tools/export_sparse.py', str(pruned), '--check'], out / 'export.log')
    sizes = [line for line in (out / 'export.log').read_text().splitlines() if ' MB ' in line]
    rows = [('untrained', untrained), ('dense (300 iterations)', dense_m),
            ('dense + 100 iterations (equal budget)', reference_m), ('LAMP 70% + LSI finetune (+100)', lamp_m),
            ('MMPrune4U 70% + LSI finetune (+100)', pruned_m)]
    write_report(out, rows, sizes, time.time() - start)


def write_report(out: Path, rows: list[tuple[str, dict]], sizes: list[str], seconds: float) -> None:
    keys = ['NDS', 'mAP', 'mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE']
    lines = ['# MMPrune4U demo: BEVFusion-Lite tiny on synthetic nuScenes-format data (CPU)', '',
             '| model | sparsity | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 2) + '|']
    for name, m in rows:
        vals = [metric(m, k) for k in keys]
        lines.append(f'| {name} | {m["sparsity"]:.4f} | ' + ' | '.join(f'{v:.4f}' for v in vals) + ' |')
    alloc = json.loads((out / 'pruned' / 'mmprune4u' / 'round_1' / 'allocation.json').read_text())
    lines += ['', 'Per-modality sparsity of the pruned model: ' + ', '.join(
        f'{m} {v["sparsity"]:.3f} of {v["weights"]:,} weights' for m, v in alloc['modalities'].items()),
        '', 'Checkpoint sizes:', '',
        *[f'    {s}' for s in sizes], '', f'Per-layer allocation, curves and plots: `{out / "pruned" / "mmprune4u"}`',
        f'Total time of this run: {seconds / 60:.1f} min. One seed: differences of a few 0.01 NDS are within the '
        'noise of this size (tools/benchmark.py measures with several seeds).']
    (out / 'report.md').write_text('\n'.join(lines) + '\n')
    (out / 'report.json').write_text(json.dumps({'rows': dict(rows), 'sizes': sizes}, indent=1))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
