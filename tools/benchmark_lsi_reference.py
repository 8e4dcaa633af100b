"""LogSobolevLoss reference: frozen dense ``teacher`` vs dense ``dense_stats`` vs no LSI loss (CPU benchmark).

DESIGN.md §3 leaves the default to a benchmark: a teacher forward on every step costs time, dense statistics cost
nothing at train time. This prunes the demo's dense BEVFusion-Lite to 70% once (curves cached and shared by all
runs), finetunes it ``--iters`` iterations with each reference, and prints seconds per iteration (mean of the
logged iterations) and the val NDS / mAP of each. Needs the demo's dense checkpoint (``make demo`` first).

    .venv/bin/python tools/benchmark_lsi_reference.py [--iters 100]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from _stages import REPO, evaluate, metric, train

PRUNE_CFG = 'configs/demo/mmprune4u-70_bevfusion-lite_tiny_demo_synthetic-nus.py'
DENSE_CFG = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py'
REFERENCES = ('teacher', 'dense_stats', 'none')
HOOK = 'default_hooks.mmprune4u'  # the pruning config's hook entry, for --cfg-options


def seconds_per_iter(work_dir: Path) -> float:
    """Mean ``time`` of the logged training iterations (mmengine's vis_data/scalars.json)."""
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not logs:
        raise FileNotFoundError(f'no scalars.json under {work_dir}')
    times = [rec['time'] for rec in map(json.loads, logs[-1].read_text().splitlines()) if 'time' in rec]
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dense', default=str(REPO / 'work_dirs' / 'demo' / 'dense' / 'iter_300.pth'))
    parser.add_argument('--iters', type=int, default=100)
    parser.add_argument('--work-dir', default=str(REPO / 'work_dirs' / 'lsi_reference'))
    args = parser.parse_args()
    if not Path(args.dense).is_file():
        raise SystemExit(f'dense checkpoint {args.dense} does not exist: run `make demo` first')
    out = Path(args.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for ref in REFERENCES:
        hook = [f'{HOOK}.lsi_loss=None'] if ref == 'none' else [f'{HOOK}.lsi_reference={ref}']
        ckpt = train(f'prune 70% + finetune, LSI reference: {ref}', PRUNE_CFG, out / ref, out / f'{ref}.log',
                     '--cfg-options', f'load_from={args.dense}', f'train_cfg.max_iters={args.iters}',
                     f'{HOOK}.curve_cache={out / "curves.npz"}', *hook)
        result = evaluate(ref, DENSE_CFG, ckpt, out)
        rows[ref] = dict(seconds_per_iter=seconds_per_iter(out / ref), NDS=metric(result, 'NDS'),
                         mAP=metric(result, 'mAP'), sparsity=result['sparsity'])
    lines = ['| LSI reference | s / iteration | NDS | mAP | sparsity |', '|---|---|---|---|---|']
    lines += [f'| {ref} | {r["seconds_per_iter"]:.3f} | {r["NDS"]:.4f} | {r["mAP"]:.4f} | {r["sparsity"]:.4f} |'
              for ref, r in rows.items()]
    (out / 'lsi_reference.md').write_text('\n'.join(lines) + '\n')
    (out / 'lsi_reference.json').write_text(json.dumps(dict(iters=args.iters, rows=rows), indent=1))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
