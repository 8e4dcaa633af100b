"""The plan's synthetic data (its ``synthetic`` key), generated once per content key and reused while it matches.

``kind='nuscenes'`` (the default): tools/create_synthetic_nuscenes.py's train/val set in ``root`` (seed 0, shared with
the demo through tools/_stages.py) and the test split, another generator seed, in ``test_root``.

``kind='semantickitti'``: ``mmprune4u_plugin.datasets.synthetic_semantickitti`` in one ``root`` with an info pkl per
split, ``semantickitti_infos_{train,val,test}.pkl``; each split is its own sequences, i.e. its own streets (train
0-7, 9, 10; val 8; test 11-13 by default, as tools/create_synthetic_semantickitti.py). The key is the generator's
settings and the plugin's ``datasets`` code; a root without a key whose info pkls say they were generated with the
same settings (e.g. by that tool, by hand) is kept and given the key, not generated again.

Either way the key is written to ``<root>/.mmprune4u_stage_key``, which every cell's key reads (configs.ann_files).
"""
from __future__ import annotations

import shutil
from pathlib import Path

KINDS = ('nuscenes', 'semantickitti')
KEYS = {'nuscenes': ('kind', 'root', 'num_train', 'num_val', 'test_root', 'test_seed', 'num_test'),
        'semantickitti': ('kind', 'root', 'splits', 'seed', 'frames', 'frame_step', 'image_scale', 'azimuth_steps',
                          'workers')}
SEMANTICKITTI_SPLITS = {'train': [0, 1, 2, 3, 4, 5, 6, 7, 9, 10], 'val': [8], 'test': [11, 12, 13]}


def problems(syn) -> list[str]:
    """Everything wrong with a plan's ``synthetic`` (None: no data to generate), in words ([] when it is fine)."""
    if not isinstance(syn, dict):
        return [f'it must be a dict or None, but got synthetic: {syn!r}']
    kind = syn.get('kind', 'nuscenes')
    if kind not in KINDS:
        return [f'`kind` must be one of {list(KINDS)}, but got kind: {kind!r}']
    found = [f'unknown key {k!r} for kind {kind!r} (known: {list(KEYS[kind])})' for k in syn if k not in KEYS[kind]]
    if not syn.get('root'):
        found.append('`root` must name the data folder')
    if kind == 'semantickitti':
        splits = syn.get('splits') or SEMANTICKITTI_SPLITS
        seqs = [s for v in splits.values() for s in v]
        if not {'train', 'val', 'test'} <= set(splits) or len(set(seqs)) != len(seqs):
            found.append(f'`splits` must give train, val and test disjoint sequences, but got splits: {splits}')
    return found


def ensure_data(plan, work: Path) -> None:
    """Generate the plan's synthetic data unless present with the same key (no ``synthetic``: nothing to do)."""
    syn = plan.synthetic
    if not syn:
        return
    logs = work / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    if syn.get('kind', 'nuscenes') == 'semantickitti':
        _semantickitti(syn, logs / 'data.log')
    else:
        _nuscenes(syn, logs)


def _nuscenes(syn: dict, logs: Path) -> None:
    from _stages import KEY_NAME, ensure_synthetic_data, reusable, run, stage_key
    ensure_synthetic_data(logs / 'data.log', Path(syn['root']), int(syn['num_train']), int(syn['num_val']))
    root = Path(syn['test_root']).resolve()
    args = ['tools/create_synthetic_nuscenes.py', '--out-dir', str(root), '--num-train', '0', '--num-val',
            str(syn['num_test']), '--seed', str(syn['test_seed']), '--workers', '2']
    key = stage_key(args, plugin_part='datasets')
    if not reusable('synthetic test split', root / KEY_NAME, key, root / 'nuscenes_infos_val.pkl'):
        shutil.rmtree(root, ignore_errors=True)
        run('synthetic test split', args, logs / 'data_test.log')
        (root / KEY_NAME).write_text(key + '\n')


def semantickitti_settings(syn: dict):
    """(splits, SyntheticSemanticKittiConfig) of a ``kind='semantickitti'`` block; unset keys take the generator's
    (and tools/create_synthetic_semantickitti.py's) defaults."""
    from mmprune4u_plugin.datasets.synthetic_semantickitti import SyntheticSemanticKittiConfig, hdl64e
    splits = {name: tuple(int(s) for s in seqs) for name, seqs in (syn.get('splits') or SEMANTICKITTI_SPLITS).items()}
    defaults = SyntheticSemanticKittiConfig()
    cfg = SyntheticSemanticKittiConfig(
        seed=int(syn.get('seed', defaults.seed)), frames=int(syn.get('frames', defaults.frames)),
        frame_step=float(syn.get('frame_step', defaults.frame_step)),
        image_scale=float(syn.get('image_scale', defaults.image_scale)),
        lidar=hdl64e(int(syn.get('azimuth_steps', defaults.lidar.azimuth_steps))))
    return splits, cfg


def _same_settings(root: Path, splits: dict, cfg) -> bool:
    """Whether ``root`` holds every split's info pkl, written by this generator version with these settings."""
    from mmengine.fileio import load
    from mmprune4u_plugin.datasets.synthetic_semantickitti import SequenceGenerator
    gen = SequenceGenerator(cfg, root)
    for split, seqs in splits.items():
        path = root / f'semantickitti_infos_{split}.pkl'
        if not path.is_file():
            return False
        info = load(str(path))
        if info['metainfo'].get('synthetic') != gen.metainfo(split, seqs)['synthetic'] \
                or len(info['data_list']) != len(seqs) * cfg.frames:
            return False
    return True


def _semantickitti(syn: dict, log: Path) -> None:
    from dataclasses import asdict

    from _stages import KEY_NAME, reusable
    from mmprune4u_plugin.datasets.synthetic_semantickitti import generate_synthetic_semantickitti
    from mmprune4u_plugin.fingerprint import content_digest, plugin_version
    splits, cfg = semantickitti_settings(syn)
    root = Path(syn['root']).resolve()
    key = content_digest(dict(splits=splits, settings=asdict(cfg)), plugin_version('datasets'))
    pkls = [root / f'semantickitti_infos_{split}.pkl' for split in splits]
    if not (root / KEY_NAME).is_file() and _same_settings(root, splits, cfg):
        print(f'[benchmark] synthetic SemanticKITTI: {root} was generated with these settings: kept', flush=True)
        (root / KEY_NAME).write_text(key + '\n')
    if reusable('synthetic SemanticKITTI', root / KEY_NAME, key, *pkls):
        return
    shutil.rmtree(root, ignore_errors=True)
    print(f'[benchmark] synthetic SemanticKITTI: generating {root} (log: {log}) ...', flush=True)
    with open(log, 'w') as f:
        out = generate_synthetic_semantickitti(root, splits, cfg, workers=int(syn.get('workers', 2)),
                                               log=lambda msg: print(msg, file=f, flush=True))
    print(f'[benchmark] synthetic SemanticKITTI: done in {out["seconds"]:.0f} s', flush=True)
    (root / KEY_NAME).write_text(key + '\n')
