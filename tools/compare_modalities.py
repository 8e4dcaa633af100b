"""Fused LiDAR-camera vs LiDAR-only vs camera-only BEVFusion-Lite tiny, same seed and training budget (CPU).

Two stages, as BEVFusion trains its fused model (a LiDAR-only model first, the fused model initialised from it),
after a pretraining of the camera branch (BEVFusion starts it from pretrained image weights):

  stage 0  tools/pretrain_image_backbone.py: the image backbone, neck and LSS depth net pretrained on the train
           split's renderings (per-pixel class and depth targets), ``--img-pretrain-iters`` steps (0 skips it);
  stage 1  all three trained for ``--iters`` iterations each (seed ``--seed``): LiDAR-only from scratch, camera-only
           and fused with the camera branch loaded from stage 0 (the rest from scratch);
  stage 2  ``--iters2`` more iterations each: LiDAR-only and camera-only continue from their stage-1 checkpoints;
           the fused model starts from both stage-1 single-sensor checkpoints (tools/init_fused_from_single.py:
           the fuser's camera slice is zero, so it starts as the LiDAR-only model).
           With ``--fused-camera-init stage2`` the fused models wait for the camera-only stage 2 and take their
           camera branch from it instead: the camera-only model learns to tell the look-alike classes apart in its
           stage 2 (tools/lookalike_confusion.py), and a fused model started before that never learns it.

Every weight has trained for the same number of iterations in each stage-2 model (with ``--fused-camera-init
stage2`` the fused model's camera branch has trained ``--iters2`` more; its LiDAR branch, the LiDAR-only reference's
budget). Each is evaluated on the val split with nuscenes-devkit's metrics; ``<work-dir>/modalities.md`` and
``modalities.json`` hold the table. This is the check that the synthetic data needs both sensors. About 5 min per
run on 2 quiet CPU cores; stages are cached, and a stage-2 training stopped midway resumes from its last kept
checkpoint (``--checkpoint-interval``). With ``--checkpoint-interval`` every kept stage-2 checkpoint is evaluated
too: the val curves (``curves`` in the json).
``--fused-config CONFIG`` trains the fused model's stage 2 with another training config (its row stays
``lidar-camera``); ``--fused-variant NAME=CONFIG`` (repeatable) trains the fused model's stage 2 once more with
another training config, from the same init and schedule, evaluated like the others (row ``lidar-camera_NAME``): a
paired comparison of a recipe change on one seed, e.g.
``cam-lr0.1=configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus_lidar-dropout_cam-lr0.1.py``.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from _stages import (DATA, REPO, data_root_options, ensure_synthetic_data, evaluate, metric, repo_relative,
                     run_cached, train_many)

VARIANTS = {
    'lidar-camera': 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus.py',
    'lidar': 'configs/demo/bevfusion-lite_tiny_lidar_demo_synthetic-nus.py',
    'camera': 'configs/demo/bevfusion-lite_tiny_cam_demo_synthetic-nus.py',
}
# stage 2 of the fused model with ``--lidar-dropout``: the same model and test pipeline, a quarter of the training
# samples without LiDAR (without it the fused model ignores its camera: NDS 0.000 with the LiDAR absent)
LIDAR_DROPOUT = 'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus_lidar-dropout.py'
SINGLE_SENSOR = ('lidar', 'camera')
FUSED_CAMERA_INITS = ('stage1', 'stage2')  # where the fused stage 2 takes its camera branch from
KEYS = ['NDS', 'mAP', 'mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE']


def schedule_options(iters: int | None) -> list[str]:
    """``--cfg-options`` for a cosine schedule of ``iters`` iterations (None: the config's own)."""
    if iters is None:
        return []
    return [f'train_cfg.max_iters={iters}', f'param_scheduler.0.T_max={iters}', f'param_scheduler.0.end={iters}']


def _is_config(config: str) -> bool:
    return (Path(config) if Path(config).is_absolute() else REPO / config).is_file()


def existing_config(config: str) -> str:
    """An argparse type: a config path (absolute or relative to the repository) that exists."""
    if not _is_config(config):
        raise argparse.ArgumentTypeError(f'config not found: {config}')
    return config


def fused_variant(text: str) -> tuple[str, str]:
    """``NAME=CONFIG`` of ``--fused-variant`` -> (``lidar-camera_NAME``, CONFIG); an argparse error for a bad name or
    a config that does not exist, before anything trains."""
    name, sep, config = text.partition('=')
    if not sep or not re.fullmatch(r'[A-Za-z0-9.-]+', name):
        raise argparse.ArgumentTypeError(f'expected NAME=CONFIG with NAME of letters, digits, "." or "-": {text!r}')
    if not _is_config(config):
        raise argparse.ArgumentTypeError(f'config of fused variant {name!r} not found: {config}')
    return f'lidar-camera_{name}', config


def stage2_training_configs(lidar_dropout: bool, fused_config: str | None, fused_variants: dict[str, str]) -> dict:
    """The training config of each stage-2 model: the single-sensor ones as in stage 1, the fused one with
    ``fused_config`` (else the LiDAR-dropout config with ``lidar_dropout``, else its stage-1 config), and each
    fused variant with its own."""
    if lidar_dropout and fused_config:
        raise ValueError('--lidar-dropout and --fused-config both name the fused stage-2 config: give one')
    fused = fused_config or (LIDAR_DROPOUT if lidar_dropout else VARIANTS['lidar-camera'])
    return {**VARIANTS, 'lidar-camera': fused, **fused_variants}


def stage2_rounds(configs: dict[str, str], fused_camera_init: str) -> list[dict[str, str]]:
    """The stage-2 trainings of ``configs`` in rounds that run one after another: one round when the fused models
    start from the stage-1 camera-only checkpoint; the single-sensor models first, then the fused ones, when they
    start from the stage-2 one (``fused_camera_init`` 'stage2')."""
    if fused_camera_init not in FUSED_CAMERA_INITS:
        raise ValueError(f'fused_camera_init must be one of {FUSED_CAMERA_INITS}, got {fused_camera_init!r}')
    if fused_camera_init == 'stage1':
        return [dict(configs)]
    singles = {name: config for name, config in configs.items() if name in SINGLE_SENSOR}
    return [singles, {name: config for name, config in configs.items() if name not in singles}]


def stage2_trainings(out: Path, configs: dict[str, str], starts: dict[str, Path], options: list[str]) -> dict:
    """:func:`train_many`'s entries for stage 2: each model in ``configs`` from its start, with ``options``."""
    return {name: (f'stage 2: train {name}', config, out / f'stage2_{name}', out / f'stage2_{name}.log',
                   '--cfg-options', *options, f'load_from={starts[name]}') for name, config in configs.items()}


def kept_checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """The ``iter_N.pth`` files a run kept, by N."""
    return sorted((int(p.stem.split('_', 1)[1]), p) for p in Path(work_dir).glob('iter_*.pth'))


def curve_table(curves: dict[str, dict[int, dict]]) -> list[str]:
    """Markdown rows: NDS / mAP of each stage-2 model at each kept checkpoint."""
    iters = sorted({it for curve in curves.values() for it in curve})
    lines = ['| stage 2, val NDS / mAP at | ' + ' | '.join(str(it) for it in iters) + ' |',
             '|---' * (len(iters) + 1) + '|']
    for name, curve in curves.items():
        cells = [f'{metric(curve[it], "NDS"):.4f} / {metric(curve[it], "mAP"):.4f}' if it in curve else ''
                 for it in iters]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=str(REPO / 'work_dirs' / 'modalities'))
    parser.add_argument('--iters', type=int, default=None, help='stage-1 iterations (default: the configs\' 300)')
    parser.add_argument('--iters2', type=int, default=None,
                        help='stage-2 iterations (default: as many as stage 1; 0 skips stage 2)')
    parser.add_argument('--img-pretrain-iters', type=int, default=600,
                        help='stage-0 pretraining steps of the camera branch (0: camera branches from scratch)')
    parser.add_argument('--seed', type=int, default=0, help='randomness.seed of every run (and of stage 0)')
    parser.add_argument('--data-root', default=str(DATA), help='synthetic set (generated here if absent)')
    parser.add_argument('--num-train', type=int, default=200, help='train scenes when the set is generated')
    parser.add_argument('--num-val', type=int, default=40, help='val scenes when the set is generated')
    parser.add_argument('--jobs', type=int, default=1,
                        help='trainings run side by side (the CPU cores are split between them)')
    parser.add_argument('--checkpoint-interval', type=int, default=None,
                        help='stage-2 runs keep a checkpoint every N iterations, each evaluated on val (the curves '
                             'that show whether a model has plateaued)')
    fused_recipe = parser.add_mutually_exclusive_group()
    fused_recipe.add_argument('--lidar-dropout', action='store_true',
                              help=f'train the fused model\'s stage 2 with {LIDAR_DROPOUT} (LiDAR dropped from 1/4 of '
                                   'the samples)')
    fused_recipe.add_argument('--fused-config', type=existing_config, default=None, metavar='CONFIG',
                              help='train the fused model\'s stage 2 with CONFIG (same model and test pipeline; '
                                   'evaluated with the fused config), e.g. the LiDAR-dropout one with a slower camera '
                                   'branch')
    parser.add_argument('--fused-variant', type=fused_variant, action='append', default=[], metavar='NAME=CONFIG',
                        help='also train the fused model\'s stage 2 with CONFIG from the same init and schedule '
                             '(row lidar-camera_NAME; repeatable)')
    parser.add_argument('--fused-camera-init', choices=FUSED_CAMERA_INITS, default='stage1',
                        help='the fused stage 2 starts its camera branch from the camera-only model after stage 1 '
                             '(default), or after stage 2 (the fused models then train after the single-sensor ones)')
    parser.add_argument('--fused-stage1', action='store_true',
                        help='also train the fused model in stage 1 when stage 2 runs (its stage-1 row)')
    args = parser.parse_args()
    fused_variants = dict(args.fused_variant)
    if len(fused_variants) != len(args.fused_variant):
        parser.error(f'--fused-variant names repeat: {[name for name, _ in args.fused_variant]}')
    # a fused variant differs in training only: it is evaluated with the fused model's config
    test_configs = {**VARIANTS, **{name: VARIANTS['lidar-camera'] for name in fused_variants}}
    out = Path(args.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root)
    ensure_synthetic_data(out / 'data.log', data_root, args.num_train, args.num_val)
    data_options = [] if data_root.resolve() == DATA.resolve() else data_root_options(data_root)
    test_options = ['--cfg-options', *data_options] if data_options else []
    common = [f'randomness.seed={args.seed}', *data_options]
    results, ckpts, starts, curves = {}, {}, {}, {}
    if args.img_pretrain_iters > 0:
        pretrained = out / 'img_pretrain.pth'
        run_cached('stage 0: pretrain the camera branch on 2D targets',
                   ['tools/pretrain_image_backbone.py', VARIANTS['camera'], '--ann-file',
                    str(data_root / 'nuscenes_infos_train.pkl'), '--out', str(pretrained), '--iters',
                    str(args.img_pretrain_iters), '--seed', str(args.seed)], out / 'img_pretrain.log', pretrained)
        starts = {name: [f'load_from={pretrained}'] for name in ('lidar-camera', 'camera')}
    iters2 = args.iters if args.iters2 is None else args.iters2
    # stage 2 starts the fused model from the single-sensor ones: its stage-1 run is only a table row
    stage1 = [n for n in VARIANTS if n != 'lidar-camera' or iters2 == 0 or args.fused_stage1]
    ckpts.update(train_many({name: (f'stage 1: train {name}', VARIANTS[name], out / name, out / f'{name}.log',
                                    '--cfg-options', *common, *schedule_options(args.iters), *starts.get(name, []))
                             for name in stage1}, args.jobs))
    for name in stage1:
        results[f'{name} (stage 1)'] = evaluate(name, VARIANTS[name], ckpts[name], out, *test_options)
    if iters2 != 0:
        every = [] if args.checkpoint_interval is None else [
            f'default_hooks.checkpoint.interval={args.checkpoint_interval}',
            'default_hooks.checkpoint.max_keep_ckpts=-1']
        stage2_configs = stage2_training_configs(args.lidar_dropout, args.fused_config, fused_variants)
        options = [*common, *schedule_options(iters2), *every]
        starts, stage2 = {'lidar': ckpts['lidar'], 'camera': ckpts['camera']}, {}
        for round_configs in stage2_rounds(stage2_configs, args.fused_camera_init):
            if any(name not in SINGLE_SENSOR for name in round_configs):
                camera = stage2['camera'] if args.fused_camera_init == 'stage2' else ckpts['camera']
                fused_init = out / 'stage2_fused_init.pth'
                run_cached(f'stage 2: fused init from the LiDAR-only stage-1 and the camera-only '
                           f'{args.fused_camera_init.replace("stage", "stage-")} checkpoints',
                           ['tools/init_fused_from_single.py', VARIANTS['lidar-camera'], '--lidar',
                            str(ckpts['lidar']), '--camera', str(camera), '--out', str(fused_init)],
                           out / 'stage2_fused_init.log', fused_init)
                starts.update({name: fused_init for name in round_configs if name not in SINGLE_SENSOR})
            stage2.update(train_many(stage2_trainings(out, round_configs, starts, options), args.jobs))
        for name, config in test_configs.items():
            results[f'{name} (stage 2)'] = evaluate(f'stage2_{name}', config, stage2[name], out, *test_options)
        ckpts.update({f'stage2_{name}': ckpt for name, ckpt in stage2.items()})
        if args.checkpoint_interval is not None:  # the val curve of every stage-2 model, at each kept checkpoint
            for name, config in test_configs.items():
                curves[name] = {it: results[f'{name} (stage 2)'] if ckpt.name == stage2[name].name else
                                evaluate(f'stage2_{name}_iter{it}', config, ckpt, out, *test_options)
                                for it, ckpt in kept_checkpoints(out / f'stage2_{name}')}
    lines = ['| model | ' + ' | '.join(KEYS) + ' |', '|---' * (len(KEYS) + 1) + '|']
    lines += [f'| {name} | ' + ' | '.join(f'{metric(r, k):.4f}' for k in KEYS) + ' |' for name, r in results.items()]
    if curves:
        lines += ['', *curve_table(curves)]
    (out / 'modalities.md').write_text('\n'.join(lines) + '\n')
    (out / 'modalities.json').write_text(json.dumps({'seed': args.seed, 'iters': args.iters, 'iters2': iters2,
                                                     'img_pretrain_iters': args.img_pretrain_iters,
                                                     'data_root': repo_relative(data_root), 'results': results,
                                                     'configs': VARIANTS,
                                                     'lidar_dropout': args.lidar_dropout,
                                                     'fused_config': args.fused_config,
                                                     'fused_variants': fused_variants,
                                                     'fused_camera_init': args.fused_camera_init,
                                                     'stage2_configs': stage2_configs if iters2 != 0 else {},
                                                     'checkpoints': {k: repo_relative(v) for k, v in ckpts.items()},
                                                     'curves': {name: {str(it): r for it, r in curve.items()}
                                                                for name, curve in curves.items()}},
                                                    indent=1))
    print('\n'.join(lines))
    stage = 'stage 2' if iters2 != 0 else 'stage 1'
    best_single = max(metric(results[f'lidar ({stage})'], 'NDS'), metric(results[f'camera ({stage})'], 'NDS'))
    print(f'{stage}: fused NDS {metric(results[f"lidar-camera ({stage})"], "NDS"):.4f} vs best single sensor '
          f'{best_single:.4f}')


if __name__ == '__main__':
    main()
