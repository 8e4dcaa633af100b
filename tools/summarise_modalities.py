"""Mean ± std over seeds of tools/compare_modalities.py runs, and the benchmark issue's two targets.

Each run (one seed) leaves ``<work-dir>/modalities.json``. This reads several, checks that they differ only in the
seed (same schedule, pretraining, dropout and data; two data roots count as the same data when their files are
byte for byte the same), and writes one table: every model's NDS and mAP per seed and mean ± sample std, then
the targets of the dense model (issue 9): camera-only NDS >= 0.15 and fused >= LiDAR-only + 0.03, both as means over
the seeds, with the fused - LiDAR-only difference per seed beside them.

    .venv/bin/python tools/summarise_modalities.py work_dirs/modalities_seed0 work_dirs/modalities_seed1 ...
        [--out docs/modalities]   (writes modalities_seeds.md and modalities_seeds.json there)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench.stats import Summary, format_mean_std, summarize  # noqa: E402
from _stages import KEY_NAME, REPO, metric  # noqa: E402

# what must agree between the runs for their mean to mean anything
SAME = ('iters', 'iters2', 'img_pretrain_iters', 'lidar_dropout', 'data_root', 'configs', 'stage2_configs')
TARGETS = dict(camera_nds=0.15, fused_minus_lidar_nds=0.03)
MIN_SEEDS = 3  # the targets are means over at least 3 seeds
KEYS = ('NDS', 'mAP')


def load_runs(work_dirs: list[Path]) -> list[dict]:
    """The runs' modalities.json, sorted by seed; one clear error for a missing file, a repeated seed or runs
    whose settings differ in more than the seed."""
    runs = []
    for work_dir in work_dirs:
        path = Path(work_dir) / 'modalities.json'
        if not path.is_file():
            raise SystemExit(f'{path} does not exist: run tools/compare_modalities.py --work-dir {work_dir} first')
        runs.append(json.loads(path.read_text()))
    seeds = [run['seed'] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f'each run must have its own seed, but got seeds: {seeds}')
    for key in SAME:
        values = {json.dumps(run.get(key), sort_keys=True) for run in runs}
        if len(values) > 1 and not (key == 'data_root' and same_data(sorted({run[key] for run in runs}))):
            raise SystemExit(f'the runs differ in {key!r} ({sorted(values)}), not only in the seed')
    rows = [list(run['results']) for run in runs]
    if any(r != rows[0] for r in rows):
        raise SystemExit(f'the runs have different models: {rows}')
    return sorted(runs, key=lambda run: run['seed'])


def tree_digest(root: Path) -> str:
    """Digest (the plugin's fingerprint) of the relative paths and bytes of every file below ``root``, but for the
    stage key that records the command which wrote them (it names the output folder)."""
    from mmprune4u_plugin.fingerprint import content_digest, file_digest
    return content_digest({str(p.relative_to(root)): file_digest(p) for p in root.rglob('*')
                           if p.is_file() and p.name != KEY_NAME})


def same_data(roots: list[str]) -> bool:
    """True when the runs' data roots (relative ones below the repository, as compare_modalities records them) hold
    the same files byte for byte: one data set generated twice in two places. A root that is not here cannot be
    compared: one clear error."""
    paths = [Path(r) if Path(r).is_absolute() else REPO / r for r in roots]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise SystemExit(f'the runs differ in \'data_root\' ({roots}) and {missing} is not here to compare by '
                         'content')
    return len({tree_digest(p) for p in paths}) == 1


def _target(per_seed: list[float], target: float) -> dict:
    """A target on the mean of per-seed values: ``reached`` by the mean, ``met`` only over >= MIN_SEEDS seeds."""
    s = summarize(per_seed)
    return dict(per_seed=per_seed, mean=s.mean, std=s.std, n=s.n, target=target, reached=s.mean >= target,
                met=s.n >= MIN_SEEDS and s.mean >= target)


def summarise(runs: list[dict]) -> dict:
    """Per model and metric: the values by seed and their mean / std; the two targets, checked on the means."""
    stage = 'stage 2' if any(name.endswith('(stage 2)') for name in runs[0]['results']) else 'stage 1'
    models = {}
    for name in runs[0]['results']:
        models[name] = {}
        for key in KEYS:
            values = [metric(run['results'][name], key) for run in runs]
            s = summarize(values)
            models[name][key] = dict(values=values, mean=s.mean, std=s.std)
    # the fused model and each of its stage-2 variants (compare_modalities --fused-variant: rows lidar-camera_NAME)
    fused = ['lidar-camera', *(name[:-len(f' ({stage})')] for name in runs[0]['results']
                               if name.startswith('lidar-camera_') and name.endswith(f' ({stage})'))]
    nds = {m: [metric(run['results'][f'{m} ({stage})'], 'NDS') for run in runs] for m in (*fused, 'lidar', 'camera')}
    gaps = {m: [f - l for f, l in zip(nds[m], nds['lidar'])] for m in fused}
    gap_target = TARGETS['fused_minus_lidar_nds']
    targets = dict(camera_nds=_target(nds['camera'], TARGETS['camera_nds']),
                   fused_minus_lidar_nds=_target(gaps['lidar-camera'], gap_target),
                   fused_variants_minus_lidar_nds={m: _target(gaps[m], gap_target) for m in fused[1:]})
    settings = {key: runs[0].get(key) for key in SAME}
    roots = sorted({run.get('data_root') for run in runs})
    if len(roots) > 1:  # checked equal by content in load_runs
        settings['data_root'] = roots
    return dict(seeds=[run['seed'] for run in runs], stage=stage, settings=settings, models=models,
                targets=targets)


def _verdict(target: dict) -> str:
    """met / not met; a mean that reaches the target over fewer than MIN_SEEDS seeds is not called met."""
    if target['met']:
        return '**met**'
    if target['reached']:
        return f'**reached on {target["n"]} seed(s), not yet met** (a mean over at least {MIN_SEEDS} seeds)'
    return '**not met**'


def markdown(summary: dict) -> str:
    seeds = summary['seeds']
    head = '| model | ' + ' | '.join(f'{k} seed {s}' for k in KEYS for s in seeds) + ' | ' + \
        ' | '.join(f'{k} mean ± std' for k in KEYS) + ' |'
    lines = [f'Val split, seeds {", ".join(map(str, seeds))} (tools/compare_modalities.py, one run per seed; '
             'mean ± sample std).', '', head, '|---' * (1 + len(KEYS) * (len(seeds) + 1)) + '|']
    for name, by_key in summary['models'].items():
        cells = [f'{v:.3f}' for k in KEYS for v in by_key[k]['values']]
        cells += [format_mean_std(summarize(by_key[k]['values'])) for k in KEYS]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    t = summary['targets']
    cam = t['camera_nds']
    lines += ['', f'Targets ({summary["stage"]}, means over the seeds):',
              f'- camera-only NDS {format_mean_std(Summary(cam["mean"], cam["std"], cam["n"]))}, target >= '
              f'{cam["target"]}: {_verdict(cam)}']
    gaps = {'fused': t['fused_minus_lidar_nds'], **t.get('fused_variants_minus_lidar_nds', {})}
    for name, gap in gaps.items():
        per_seed = ' / '.join(f'{g:+.3f}' for g in gap['per_seed'])
        spread = f' ± {gap["std"]:.3f}' if gap['n'] > 1 else ''
        lines.append(f'- {name} - LiDAR-only NDS {gap["mean"]:+.3f}{spread} (per seed {per_seed}), '
                     f'target >= +{gap["target"]}: {_verdict(gap)}')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dirs', nargs='+', type=Path, help='one tools/compare_modalities.py work dir per seed')
    parser.add_argument('--out', type=Path, help='folder for modalities_seeds.md / .json (default: print only)')
    args = parser.parse_args(argv)
    summary = summarise(load_runs(args.work_dirs))
    text = markdown(summary)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / 'modalities_seeds.md').write_text(text)
        (args.out / 'modalities_seeds.json').write_text(json.dumps(summary, indent=1) + '\n')
    print(text, end='')
    return summary


if __name__ == '__main__':
    main()
