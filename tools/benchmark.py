"""Benchmark MMPrune4U against uniform / uniform+ / global magnitude / LAMP / ERK / RD (DESIGN.md §5): one-shot and
finetuned, several seeds, tuned on val and reported on a separate test split; the additivity check, the β sweep,
the costs, and (the plan's ``robustness``) the metrics and retention under degraded sensors. Writes a json of every
figure and cell (the per-layer allocations in a ``*_allocations.json`` beside it) and docs/benchmarks.md (tables,
plots, command, machine, date). The plan names the model, its data and its
metrics: NDS / mAP for the nuScenes detector (the default plan), mIoU / acc for the SemanticKITTI segmentors.

    .venv/bin/python tools/benchmark.py                       # the default CPU plan (`make bench`), resumable
    .venv/bin/python tools/benchmark.py --quick               # a few minutes on a tiny generated set (smoke run)
    .venv/bin/python tools/benchmark.py --report-only         # rebuild the docs from the json, no run
    .venv/bin/python tools/benchmark.py --plan configs/benchmark/minkunet-pixelfusion_cpu.py   # a segmentor (mIoU)
    .venv/bin/python tools/benchmark.py --plan PLAN.py --config CONFIG --checkpoint DENSE.pth --device cuda

Every cell (a method at one sparsity and seed, one-shot or finetuned, an evaluation, a seed's curves ...) is cached
under ``<work-dir>/cells/`` with a key of what it depends on; a rerun reuses finished cells (and says so) and reruns
stale ones; cells of the json already at the ``--docs`` path (an earlier run's, say from another session) are reused
by the same keys where the work dir has none: commit a partial report (``--report-partial``) and a fresh clone
resumes from it (only the dense model and the curves, whose files later cells read, are computed again; a checkpoint
is keyed on its weights, so a seeded retraining keeps the keys). The plan (``configs/benchmark/*.py``) says what is measured; the model config and the dense checkpoint
can be any mmdet3d config and weights (without ``--checkpoint`` the plan's dense model is trained first).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tools'))

from _bench.plan import Plan, expand, plan_summary  # noqa: E402

DEFAULT_PLAN = 'configs/benchmark/bevfusion-lite_cpu.py'
QUICK_PLAN = 'configs/benchmark/quick.py'  # the segmentors' smoke plan: --plan configs/benchmark/quick_seg.py


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--plan', help=f'benchmark plan (default: {DEFAULT_PLAN}; {QUICK_PLAN} with --quick)')
    parser.add_argument('--quick', action='store_true', help='small-scale smoke run on a tiny generated set')
    parser.add_argument('--config', help='model config (default: the plan\'s)')
    parser.add_argument('--checkpoint', help='dense checkpoint (default: train the plan\'s dense model first)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda where available, else cpu')
    parser.add_argument('--work-dir', help='cells, curves and the json (default: work_dirs/<plan name>)')
    parser.add_argument('--docs', help='markdown report to write (default: the plan\'s `docs`)')
    parser.add_argument('--report-only', action='store_true', help='rebuild the report from the json, run nothing')
    parser.add_argument('--report-partial', action='store_true',
                        help='report the cells that have run (fresh keys only), run nothing: while a run is under way')
    parser.add_argument('--jobs', type=int, default=1,
                        help='processes running cells at once on this work dir (each claims a cell before running '
                             'it; with OMP_NUM_THREADS=1, --jobs 2 uses both cores of a 2-core machine)')
    parser.add_argument('--worker', action='store_true',
                        help='run as one of --jobs\' helper processes: run cells, write no report')
    parser.add_argument('--keep-checkpoints', action='store_true', help='keep pruned / finetuned checkpoints')
    parser.add_argument('--ignore-published', action='store_true',
                        help='do not reuse the cells of the json already at the --docs path (by default a cell with '
                             'the same key is taken from there when the work dir has none: a run resumed on another '
                             'machine or in a fresh clone)')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f'--jobs must be at least 1, got {args.jobs}')
    if (args.jobs > 1 or args.worker) and (args.report_only or args.report_partial):
        parser.error('--jobs / --worker run cells; --report-only and --report-partial run none')
    return args


def worker_argv(argv: list[str]) -> list[str]:
    """A helper process's arguments: the main process's, without --jobs, with --worker."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == '--jobs':
            skip = True
            continue
        if not arg.startswith('--jobs='):
            out.append(arg)
    return [*out, '--worker']


def thread_env(jobs: int, env: dict, cpus: int | None) -> dict:
    """``OMP_NUM_THREADS`` for ``jobs`` processes sharing the machine, when the caller did not set it: the cores
    split between them (oversubscribed OpenMP threads spin: two default-threaded trainings on 2 cores ran 25x
    slower here)."""
    if jobs <= 1 or 'OMP_NUM_THREADS' in env:
        return {}
    return {'OMP_NUM_THREADS': str(max(1, (cpus or 1) // jobs))}


def start_workers(jobs: int, argv: list[str], logs: Path) -> list:
    """``jobs - 1`` helper processes of this command, each logging to ``<logs>/worker<i>.log``."""
    import subprocess
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(1, jobs):
        with open(logs / f'worker{i}.log', 'w') as log:
            procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *worker_argv(argv)],
                                          cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
        print(f'[benchmark] helper process {procs[-1].pid} started: log {logs / f"worker{i}.log"}', flush=True)
    return procs


def resolve(obj, mapping: dict):
    """Replace ``{work_dir}`` / ``{repo}`` in every string of a plan."""
    if isinstance(obj, str):
        for k, v in mapping.items():
            obj = obj.replace('{' + k + '}', str(v))
        return obj
    if isinstance(obj, dict):
        return {resolve(k, mapping): resolve(v, mapping) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(resolve(v, mapping) for v in obj)
    return obj


def load_plan(args: argparse.Namespace) -> tuple[Plan, Path]:
    path = args.plan or (QUICK_PLAN if args.quick else DEFAULT_PLAN)
    plan = Plan.from_file(REPO / path if not Path(path).is_absolute() else path)
    work = Path(args.work_dir or REPO / 'work_dirs' / plan.name).resolve()
    plan = Plan(**resolve(plan_summary(plan), {'work_dir': work, 'repo': REPO}))
    plan.validate()
    return plan, work


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else '?'
    return (f'{cpu}, {os.cpu_count()} cores ({device}); Python {platform.python_version()}, torch {torch.__version__}; '
            f'load average at start {load}')


def default_seconds(plan: Plan) -> dict[str, float]:
    """Rough per-cell times on 2 CPU cores before any cell of a kind has run (the ETA then uses measured ones)."""
    ft_iters = float(plan.finetune.get('options', {}).get('train_cfg.max_iters', 100))
    evaluation = 45.0
    dense = float(plan.dense.get('iters', 0))
    if plan.dense.get('recipe') == 'modalities':  # three models, two stages, a pretraining, seven evaluations
        dense = 2.5 * (dense + float(plan.dense.get('iters2', 0))) + 600
    out = dict(dense_train=dense, dense_eval=evaluation, curves=1500, beta=60,
               oneshot=60, additivity=150, costs=900, finetune=1.2 * ft_iters + 70, reference=evaluation)
    for kind in ('dense_eval', 'oneshot', 'finetune'):  # one more evaluation per corruption (Plan.timing_class)
        out[f'{kind}+corrupted'] = out[kind] + evaluation * len(plan.corruptions())
    return out


def allocations_path(json_path: Path) -> Path:
    """Where the per-layer allocations go: beside the json, so the json stays small enough to read and diff."""
    return json_path.with_name(json_path.stem + '_allocations.json')


def split_allocations(cells: dict) -> tuple[dict, dict]:
    """The cells without their per-layer ``allocation`` dicts, and those dicts by cell key (the bulk of the json)."""
    slim, allocations = {}, {}
    for key, record in cells.items():
        result = record.get('result')
        if isinstance(result, dict) and 'allocation' in result:
            allocations[key] = result['allocation']
            record = dict(record, result={k: v for k, v in result.items() if k != 'allocation'})
        slim[key] = record
    return slim, allocations


def merge_allocations(cells: dict, allocations: dict) -> dict:
    """Inverse of :func:`split_allocations`: each cell gets back its allocation (in its result's original place)."""
    unknown = sorted(set(allocations) - set(cells))
    if unknown:
        raise ValueError(f'allocations for cells the json does not have: {unknown[:3]}')
    merged = {}
    for key, record in cells.items():
        if key in allocations:
            result = dict(record['result'], allocation=allocations[key])
            record = dict(record, result=result)
        merged[key] = record
    return merged


def published_json(data: dict) -> str:
    """Compact json, one line per top-level entry and per cell: small, and a rerun's diff shows which cells moved."""
    def dump(value) -> str:
        return json.dumps(value, separators=(',', ':'), allow_nan=False)
    lines = []
    for name, value in data.items():
        if isinstance(value, dict) and name in ('figures', 'cells', 'allocations'):
            inner = [f' {dump(k)}:{dump(v)}' for k, v in value.items()]
            lines.append(f'{dump(name)}:{{\n' + ',\n'.join(inner) + '\n}')
        else:
            lines.append(f'{dump(name)}:{dump(value)}')
    return '{' + ',\n'.join(lines) + '}\n'


def read_published(json_path: Path) -> dict:
    """The json written by :func:`write_outputs`, with the allocations put back where the run had them."""
    data = json.loads(json_path.read_text())
    side = allocations_path(json_path)
    if side.is_file():
        data['cells'] = merge_allocations(data['cells'], json.loads(side.read_text())['allocations'])
    return data


def related_reports(related: list[str], docs: Path) -> list[dict]:
    """Each related report (a path relative to the repository) with its published json's meta and figures (None
    when it has not been published: the page says so), linked relative to ``docs``."""
    entries = []
    for name in related:
        md = Path(name) if Path(name).is_absolute() else REPO / name
        json_path = md.with_suffix('.json')  # meta and figures only: the allocations beside it are not needed
        data = json.loads(json_path.read_text()) if json_path.is_file() else None
        entries.append(dict(link=os.path.relpath(md, docs.parent), json=name[:-len('.md')] + '.json',
                            meta=data and data['meta'], figures=data and data['figures']))
    return entries


def write_outputs(meta: dict, cells: dict, plan: Plan, docs: Path, related: list[str] = ()) -> Path:
    """The json (meta, every cell's record, the figures) beside the docs, the plots and the markdown (with a
    summary of each ``related`` report at its end)."""
    from _bench import markdown, plots, report
    from _stages import repo_relative
    fig = report.figures(cells, plan)
    json_path = docs.with_suffix('.json')
    meta = dict(meta, json=repo_relative(json_path))
    docs.parent.mkdir(parents=True, exist_ok=True)
    cells_json, allocations = split_allocations(cells)
    json_path.write_text(published_json(dict(meta=meta, figures=fig, cells=cells_json)))
    allocations_path(json_path).write_text(published_json(dict(allocations=allocations)))
    written = plots.write_all(fig, docs.parent / docs.stem)
    rel = {name: os.path.relpath(path, docs.parent) for name, path in written.items()}
    docs.write_text(markdown.render(meta, fig, rel, related_reports(list(related), docs)) + '\n')
    return json_path


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # before torch is imported
    os.environ.update(thread_env(args.jobs, os.environ, os.cpu_count()))  # before torch; the helpers inherit it
    plan, work = load_plan(args)
    docs = Path(args.docs or plan.docs)
    docs = docs if docs.is_absolute() else REPO / docs
    if args.report_only:
        data = read_published(docs.with_suffix('.json'))
        # the run's own plan renders its tables; the plan file as it is now names the related reports
        write_outputs(data['meta'], data['cells'], Plan(**data['meta']['plan']), docs, plan.related)
        print(f'[benchmark] report rebuilt from {docs.with_suffix(".json")}: {docs}')
        return
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    os.chdir(REPO)  # configs name data roots relative to the repository
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    argv_shown = sys.argv[1:] if argv is None else argv
    meta = dict(title=plan.name, command='python tools/benchmark.py ' + ' '.join(argv_shown),
                date=time.strftime('%Y-%m-%d %H:%M %Z'), machine=machine(), config=args.config or plan.config,
                checkpoint=args.checkpoint or 'trained by the benchmark (cell dense_train)', plan=plan_summary(plan),
                work_dir=str(work))
    from _bench.data import ensure_data
    ensure_data(plan, work)
    from _bench.cells import CellStore, Progress, run_cells
    from _bench.execute import RealExecutor
    from _bench.workers import Claims, prerequisites
    executor = RealExecutor(plan, args.config or plan.config, work, checkpoint=args.checkpoint,
                            keep_checkpoints=args.keep_checkpoints)
    cells = expand(plan, train_dense=args.checkpoint is None)
    published = docs.with_suffix('.json')
    published = read_published(published)['cells'] if published.is_file() and not args.ignore_published else {}
    store = CellStore(work, published)
    print(f'[benchmark] {len(cells)} cells; work dir {work}' + (' (helper process)' if args.worker else ''),
          flush=True)
    shared = args.jobs > 1 or args.worker
    helpers = start_workers(args.jobs, list(argv_shown), work / 'logs') if args.jobs > 1 else []
    progress = Progress(cells, store, default_seconds(plan), timing=plan.timing_class, metrics=plan.metrics,
                        workers=args.jobs)
    results = run_cells(cells, store, executor, progress, run=not args.report_partial,
                        claims=Claims(work) if shared else None, needs=prerequisites if shared else None)
    for proc in helpers:
        if proc.wait() != 0:
            print(f'[benchmark] helper process {proc.pid} exited with {proc.returncode}', flush=True)
    if args.worker:
        return
    meta.update(hours=(time.time() - start) / 3600,
                cell_hours=sum(r.get('seconds', 0) for r in results.values()) / 3600)
    json_path = write_outputs(meta, results, plan, docs, plan.related)
    if args.report_partial:
        done = sum(r.get('status') == 'done' for r in results.values())
        print(f'[benchmark] partial report of {done} / {len(cells)} cells: {json_path} and {docs}', flush=True)
        return
    failed = [k for k, r in results.items() if r.get('status') != 'done']
    print(f'[benchmark] wrote {json_path} and {docs}' + (f'; {len(failed)} cell(s) failed: {failed}' if failed
                                                         else ''), flush=True)
    if failed:
        raise SystemExit(1)


if __name__ == '__main__':
    main()
