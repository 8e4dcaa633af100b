"""The real executor: runs each cell in this process with the pieces of the project's CLIs.

Pruning is tools/prune.py's ``prune_checkpoint`` (the hook's own before_run -> load -> before_train), finetuning is a
Runner's ``train()`` on the pruning config with ``load_from`` = the dense checkpoint (the hook prunes in
``before_train``, then the task loss, or task loss + LogSobolevLoss, trains the masked model), evaluation is
``Runner.test()`` as in tools/test.py. The cells the plan selects for degraded-sensor evaluation then run
``Runner.test()`` once more per corruption on the same checkpoint (job configs ``test@<corruption>``, so in the key).
In-process, not one subprocess per cell, so a hundred cells do not each pay the ~10 s of importing the OpenMMLab
stack; each cell's Runner logs into its own folder (:func:`isolated`).
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Iterator

from .cells import MissingInput
from .configs import ConfigFactory, ann_files, config_content
from .plan import METHODS, RECIPE_CHECKPOINT, Cell, Plan, fused_variant

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))
CODE_FILES = ('tools/_launch.py', 'tools/prune.py', 'tools/test.py', 'tools/_bench/configs.py',
              'tools/_bench/execute.py')  # what every cell runs; additivity and costs cells also run measure.py
MEASURE_FILE = 'tools/_bench/measure.py'
CORRUPTED = 'test@'  # job config name prefix of an evaluation under a corruption
DENSE_KINDS = ('dense_train', 'dense_eval', 'reference')  # cells of the dense / reference models: no pruner runs
# what dense.recipe='modalities' runs (tools/compare_modalities.py and the CLIs it calls)
RECIPE_FILES = ('tools/compare_modalities.py', 'tools/_stages.py', 'tools/train.py', 'tools/test.py',
                'tools/pretrain_image_backbone.py', 'tools/init_fused_from_single.py',
                'configs/demo/bevfusion-lite_tiny_8xb2-demo_synthetic-nus_lidar-dropout.py')


@contextlib.contextmanager
def isolated(log: Path) -> Iterator[None]:
    """Send everything printed or logged inside the block to ``log`` (at the file-descriptor level too: mmengine's
    ProgressBar holds the original ``sys.stdout`` as a default argument, and C extensions print directly); drop the
    loggers, message hubs and visualizers that Runners built inside it (mmengine keeps them in global registries,
    with open files)."""
    import os

    from mmengine.utils import ManagerMixin

    def managers(cls=ManagerMixin):
        for sub in cls.__subclasses__():
            yield sub
            yield from managers(sub)
    before = {cls: set(getattr(cls, '_instance_dict', {})) for cls in managers()}
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, 'a', buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for cls in managers():
                instances = getattr(cls, '_instance_dict', {})
                for name in set(instances) - before.get(cls, set()):
                    obj = instances.pop(name)
                    for handler in list(getattr(obj, 'handlers', [])):
                        handler.close()
                        obj.removeHandler(handler)


def tool(name: str):
    """A module of tools/ by file (``tools/test.py`` would be shadowed by the standard library's ``test``)."""
    import importlib.util
    module_name = f'_mmprune4u_tool_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO / 'tools' / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]


def _short(metrics: dict) -> dict:
    """Metrics by short name (``NuScenes metric/NDS`` -> ``NDS``; SegMetric's ``miou`` stays ``miou``), as strict JSON
    numbers (tools/test.py's)."""
    return {k.split('/')[-1]: tool('test').json_number(v) for k, v in metrics.items()}


class RealExecutor:
    """Runs cells with mmengine Runners. See :mod:`configs` for what each cell's configs are."""

    def __init__(self, plan: Plan, config: str, work_dir: Path, *, checkpoint: str | None = None,
                 keep_checkpoints: bool = False) -> None:
        import mmprune4u_plugin  # noqa: F401  (registers the plugin, applies the CPU shims)
        from mmdet3d.utils import register_all_modules
        from mmprune4u_plugin.fingerprint import MODEL_CODE, content_digest, file_digest, plugin_version
        register_all_modules(init_default_scope=False)
        self.plan, self.work = plan, Path(work_dir).resolve()
        self.factory = ConfigFactory(plan, config, self.work)
        self.checkpoint = None if checkpoint is None else str(Path(checkpoint).resolve())
        self.keep = keep_checkpoints
        self._digests: dict[tuple, str] = {}
        tools_code = {p: file_digest(REPO / p) for p in CODE_FILES}
        self.code = content_digest(tools_code, plugin_version())
        # the dense model's cells run no pruner: keyed on the model's code only (fingerprint.MODEL_CODE), so that an
        # edit of the pruner reruns the pruning cells but not the dense training
        self.dense_code = content_digest(tools_code, plugin_version(MODEL_CODE))
        self.measure_code = file_digest(REPO / MEASURE_FILE)

    # ------------------------------------------------------------------------------------------------ inputs
    def digest(self, path: str | Path) -> str:
        """Content digest of an input file, cached per (path, size, mtime) within this run: of a checkpoint
        (``.pth``), its weights only, so that a dense model trained again to the same weights (the recipe is seeded)
        keeps the keys of the cells measured on it, in the work dir or in the published json; of any other file, its
        bytes."""
        from mmprune4u_plugin.fingerprint import file_digest, weights_digest
        p = Path(path)
        if not p.is_file():
            raise MissingInput(f'{p} does not exist')
        stat = p.stat()
        key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = weights_digest(p) if p.suffix == '.pth' else file_digest(p)
        return self._digests[key]

    def dense_checkpoint(self, results: dict, iteration: int | None = None) -> str:
        if self.checkpoint is not None:
            return self.checkpoint
        record = results.get('dense_train')
        if record is None or record.get('status') != 'done':
            raise MissingInput('the dense model (cell dense_train) is missing or failed')
        ckpts = record['result']['checkpoints']
        return ckpts[str(iteration)] if iteration is not None else record['result']['checkpoint']

    def chosen_beta(self, results: dict) -> float:
        """β for the MMPrune4U cells: the best mean val primary metric (``plan.metrics``) of the β sweep (ties: the
        plan's default), or the plan's default when the plan does not choose on val."""
        from .report import choose_beta
        if not self.plan.beta.get('choose_on_val', False) or not self.plan.beta.get('values'):
            return float(self.plan.beta['default'])
        beta, missing = choose_beta(results, self.plan)
        if missing:
            raise MissingInput(f'the β sweep is incomplete ({missing[0]} ...)')
        return beta

    def job(self, cell: Cell, results: dict) -> dict:
        """Everything a cell depends on: its configs, the files it reads and other inputs."""
        f = self.factory
        files, extra, configs = {}, {}, {}
        if cell.kind == 'dense_train':
            configs['train'] = f.dense_train()
            if self.plan.dense.get('recipe') == 'modalities':
                extra['recipe'] = self.recipe_args()
                extra['recipe_code'] = {p: self.digest(REPO / p) for p in RECIPE_FILES}
                if self.plan.dense.get('fused_variant'):  # by resolved content, as the tool's own stage keys
                    from mmengine.config import Config
                    config = REPO / fused_variant(self.plan.dense['fused_variant'])[1]
                    extra['recipe_fused_variant'] = config_content(Config.fromfile(str(config)))
        elif cell.kind == 'dense_eval':
            files['checkpoint'] = self.dense_checkpoint(results, cell.iteration)
            configs['test'] = f.evaluation(cell.split)
        elif cell.kind == 'reference':
            ckpt = self.plan.references()[cell.sensor]['checkpoint']
            if ckpt == RECIPE_CHECKPOINT:
                record = results.get('dense_train')
                if record is None or record.get('status') != 'done':
                    raise MissingInput(f'the {cell.sensor}-only model comes from the dense recipe (cell dense_train), '
                                       'which is missing or failed')
                ckpt = record['result']['references'][cell.sensor]
            files['checkpoint'] = ckpt
            configs['test'] = f.reference(cell.sensor, cell.split)
        elif cell.kind in ('curves', 'oneshot', 'beta', 'finetune', 'additivity', 'costs'):
            files['checkpoint'] = self.dense_checkpoint(results)
            beta = cell.beta
            if cell.method in ('mmprune4u_local', 'mmprune4u_downstream') and beta is None:
                beta = extra['beta'] = self.chosen_beta(results)
            if cell.kind == 'curves':
                configs['prune'] = f.pruning('rd', self.plan.sparsities[0], cell.seed)
            elif cell.kind in ('oneshot', 'beta'):
                configs['prune'] = f.pruning(cell.method, cell.sparsity, cell.seed, beta=beta)
                configs['test'] = f.evaluation(cell.split)
            elif cell.kind == 'finetune':
                configs['train'] = f.finetune(cell.method, cell.variant, cell.sparsity, cell.seed, beta=beta)
                configs['test'] = f.evaluation(cell.split)
            else:
                from .measure import additivity_inputs, costs_inputs
                extra.update(additivity_inputs(self, cell, results) if cell.kind == 'additivity'
                             else costs_inputs(self, cell, results))
                configs.update(extra.pop('configs'))
        else:
            raise ValueError(f'unknown cell kind {cell.kind!r}')
        if self.plan.corrupted(cell):
            for name in self.plan.corruptions():
                configs[f'{CORRUPTED}{name}'] = f.evaluation(cell.split, corruption=name)
        return dict(configs=configs, files=files, extra=extra)

    def key(self, cell: Cell, results: dict) -> str:
        from mmprune4u_plugin.fingerprint import content_digest
        job = self.job(cell, results)
        contents = {name: config_content(cfg) for name, cfg in job['configs'].items()}
        data = sorted({p for cfg in contents.values() for p in ann_files(cfg)})
        code = [self.code, self.measure_code] if cell.kind in ('additivity', 'costs') else self.code
        code = self.dense_code if cell.kind in DENSE_KINDS else code
        return content_digest(dict(cell=cell.spec(), configs=contents, extra=job['extra'], code=code,
                                   files={k: self.digest(v) for k, v in job['files'].items()},
                                   data={str(p): self.digest(p) for p in data}))

    def valid(self, cell: Cell, record: dict) -> bool:
        """A stored dense model or curve cache that later cells read must still be on disk, unchanged."""
        result = record.get('result', {})
        if cell.kind == 'dense_train':
            return all(Path(p).is_file() for p in [result['checkpoint'], *result['checkpoints'].values(),
                                                   *result.get('references', {}).values()])
        if cell.kind == 'curves':
            from mmprune4u_plugin.core.curves import DistortionCurves
            return Path(result['curves']).is_file() and \
                curves_digest(DistortionCurves.load(result['curves'])) == result['curves_digest']
        return True

    # ------------------------------------------------------------------------------------------------ running
    def run(self, cell: Cell, out: Path, results: dict) -> dict:
        job = self.job(cell, results)
        for cfg in job['configs'].values():
            cfg.work_dir = str(out)
            cfg.launcher = 'none'
        if cell.seed is not None:
            self._drop_unreadable_curves(cell.seed)
        return getattr(self, f'_run_{cell.kind}')(cell, out, job, results)

    def recipe_args(self) -> list[str]:
        """tools/compare_modalities.py's arguments for ``dense.recipe='modalities'`` (its stages are cached in the
        recipe's work dir by their own keys: a rerun with the same arguments reuses them)."""
        d = self.plan.dense
        # as written in the plan (a relative one is below the repository, where the tool runs): the tool's stage
        # keys hold it literally, so the same text reuses a run of the tool made by hand
        work = d.get('work_dir') or str(self.work / 'dense_modalities')
        return ['--work-dir', str(work), '--iters', str(int(d['iters'])), '--iters2', str(int(d['iters2'])),
                '--img-pretrain-iters', str(int(d.get('img_pretrain_iters', 600))),
                '--seed', str(int(d.get('seed', 0))), '--checkpoint-interval', str(int(d['eval_every'])),
                '--jobs', str(int(d.get('jobs', 1))), *(['--lidar-dropout'] if d.get('lidar_dropout') else []),
                *(['--fused-variant', d['fused_variant']] if d.get('fused_variant') else []), *self._recipe_data()]

    def _recipe_data(self) -> list[str]:
        """The plan's synthetic train/val set for the recipe (generated there under the same key as the plan's)."""
        syn = self.plan.synthetic
        if not syn or syn.get('kind', 'nuscenes') != 'nuscenes':
            return []
        return ['--data-root', str(syn['root']), '--num-train', str(int(syn['num_train'])),
                '--num-val', str(int(syn['num_val']))]

    def _run_dense_train(self, cell, out, job, results) -> dict:
        if 'recipe' in job['extra']:
            return self._run_dense_recipe(job['extra']['recipe'], out)
        with isolated(out / 'log.txt'):
            self._runner(job['configs']['train'], 'dense_train').train()
        ckpts = {p.stem.split('_')[-1]: str(p) for p in sorted(out.glob('iter_*.pth'))}
        last = Path((out / 'last_checkpoint').read_text().strip())
        return dict(checkpoints=ckpts, checkpoint=str(last), seconds_per_iter=seconds_per_iter(out))

    def _run_dense_recipe(self, args: list[str], out: Path) -> dict:
        """The fused model of tools/compare_modalities.py (stage 2, its checkpoints every ``eval_every``) and its
        single-sensor models (the references), with the recipe's own val table."""
        import subprocess
        with open(out / 'log.txt', 'w') as log:
            proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'compare_modalities.py'), *args], cwd=REPO,
                                  stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise RuntimeError(f'tools/compare_modalities.py failed (exit {proc.returncode}); see {out / "log.txt"}')
        work = REPO / args[args.index('--work-dir') + 1]  # (an absolute one stays as it is)
        summary = json.loads((work / 'modalities.json').read_text())
        # the tool records its checkpoints relative to the repository (an absolute one stays as it is): the cells
        # read them from wherever this benchmark runs
        paths = {name: REPO / path for name, path in summary['checkpoints'].items()}
        variant = self.plan.dense.get('fused_variant')
        fused = paths['stage2_lidar-camera' + (f'_{fused_variant(variant)[0]}' if variant else '')]
        ckpts = {p.stem.split('_')[-1]: str(p) for p in sorted(fused.parent.glob('iter_*.pth'))}
        refs = {sensor: str(paths[f'stage2_{sensor}']) for sensor in ('lidar', 'camera')}
        return dict(checkpoints=ckpts, checkpoint=str(fused), references=refs, recipe='modalities',
                    modalities=summary['results'], seconds_per_iter=seconds_per_iter(fused.parent))

    def _run_dense_eval(self, cell, out, job, results) -> dict:
        return self.evaluate_all(job, job['files']['checkpoint'], out)

    def _run_reference(self, cell, out, job, results) -> dict:
        """A single-sensor model, dense, evaluated clean: no sparsity report (the plan's modality patterns are the
        fused model's; one sensor's group is absent from it)."""
        return self.evaluate(job['configs']['test'], job['files']['checkpoint'], out, sparsity=False)

    def _run_curves(self, cell, out, job, results) -> dict:
        from mmprune4u_plugin.core.curves import DistortionCurves
        cfg = job['configs']['prune']
        self._prune(cfg, job['files']['checkpoint'], out / 'pruned.pth', out)
        (out / 'pruned.pth').unlink()
        path = self.factory.curve_cache(cell.seed)
        path = path.with_name(f'{path.stem}_round1.npz')
        curves = DistortionCurves.load(path)
        return dict(curves=str(path), curves_digest=curves_digest(curves), stats=curves.stats,
                    layers=len(curves.names), levels=len(curves.grid), estimator=str(curves.estimator))

    def _run_oneshot(self, cell, out, job, results) -> dict:
        ckpt = out / 'pruned.pth'
        pruned = self._prune(job['configs']['prune'], job['files']['checkpoint'], ckpt, out)
        result = self.evaluate_all(job, ckpt, out)
        result.update(pruned)
        if not self.keep:
            ckpt.unlink()
        return result

    _run_beta = _run_oneshot

    def _run_finetune(self, cell, out, job, results) -> dict:
        import torch
        cfg = job['configs']['train']
        cfg.load_from = job['files']['checkpoint']
        with isolated(out / 'log.txt'):
            self._runner(cfg, cell.id).train()
        ckpt = Path((out / 'last_checkpoint').read_text().strip())
        saved = torch.load(ckpt, map_location='cpu', weights_only=False).get('mmprune4u') or {}
        result = self.evaluate_all(job, ckpt, out)
        result.update(allocation=saved.get('allocation', {}), seconds_per_iter=seconds_per_iter(out),
                      iters=int(cfg.train_cfg.get('max_iters', 0) or 0))
        if not self.keep:
            for p in out.glob('*.pth'):
                p.unlink()
        return result

    def _run_additivity(self, cell, out, job, results) -> dict:
        from .measure import run_additivity
        return run_additivity(self, cell, out, job)

    def _run_costs(self, cell, out, job, results) -> dict:
        from .measure import run_costs
        return run_costs(self, cell, out, job)

    # ------------------------------------------------------------------------------------------------ helpers
    def _drop_unreadable_curves(self, seed: int) -> None:
        """A curve cache cut short by a killed run would make the hook fail on every later cell: remove it (the
        hook then measures again)."""
        from mmprune4u_plugin.core.curves import DistortionCurves
        path = self.factory.curve_cache(seed)
        path = path.with_name(f'{path.stem}_round1.npz')
        if path.is_file():
            try:
                DistortionCurves.load(path)
            except Exception:  # noqa: BLE001 (any unreadable file)
                path.unlink()

    def _runner(self, cfg, name: str):
        build_runner = tool('_launch').build_runner
        cfg.experiment_name = name.replace('/', '_')
        return build_runner(cfg)

    def build_loaded(self, cfg, checkpoint: str, name: str):
        """A Runner with the checkpoint's weights in its model and every hook's ``before_run`` done (what
        tools/prune.py does before pruning)."""
        cfg.load_from = checkpoint
        runner = self._runner(cfg, name)
        runner.call_hook('before_run')
        runner.load_or_resume()
        return runner

    def _prune(self, cfg, checkpoint: str, ckpt: Path, out: Path) -> dict:
        """tools/prune.py on ``cfg``: the pruned checkpoint, its allocation, and sparse vs dense size."""
        import time

        import torch
        prune_checkpoint = tool('prune').prune_checkpoint
        cfg.load_from = checkpoint
        start = time.time()
        with isolated(out / 'log.txt'):
            prune_checkpoint(self._runner(cfg, str(out.name)), ckpt)
        seconds = time.time() - start
        saved = torch.load(ckpt, map_location='cpu', weights_only=False)
        return dict(allocation=saved['mmprune4u']['allocation'], prune_seconds=round(seconds, 1),
                    size=checkpoint_sizes(saved['state_dict']))

    def evaluate_all(self, job: dict, checkpoint, out: Path) -> dict:
        """:meth:`evaluate` on the clean test config, then the metrics under each corruption of the job (the same
        weights, so the sparsity is not measured again) in ``result['corrupted'][name]``."""
        result = self.evaluate(job['configs']['test'], checkpoint, out)
        corrupted = {name[len(CORRUPTED):]: cfg for name, cfg in job['configs'].items() if name.startswith(CORRUPTED)}
        if corrupted:
            result['corrupted'] = {name: self.evaluate(cfg, checkpoint, out, tag=name, sparsity=False)['metrics']
                                   for name, cfg in corrupted.items()}
        return result

    def evaluate(self, cfg, checkpoint, out: Path, *, tag: str = 'test', sparsity: bool = True) -> dict:
        """tools/test.py in-process: metrics, and the weights' sparsity overall and per modality (the hook's
        modality patterns)."""
        from mmprune4u_plugin.core.layers import find_prunable_layers, get_weight
        from mmprune4u_plugin.core.masks import sparsity_report
        from mmprune4u_plugin.hooks.calibration import unwrap
        cfg.load_from = str(checkpoint)
        with isolated(out / 'log.txt'):
            runner = self._runner(cfg, f'{out.name}_{tag}')
            metrics = runner.test()
        if not sparsity:
            return dict(metrics=_short(metrics))
        args = self.factory.hook_args()
        model = unwrap(runner.model)
        layers = find_prunable_layers(model, include=args['include'] or (), exclude=args['exclude'] or (),
                                      modalities=args['modalities'])
        report = sparsity_report([(lay.name, lay.modality, get_weight(model, lay).detach()) for lay in layers])
        return dict(metrics=_short(metrics), sparsity=report.global_sparsity,
                    by_modality={m: s for m, (_, _, s) in report.by_modality().items()},
                    weights_by_modality={m: n for m, (n, _, _) in report.by_modality().items()})


def checkpoint_sizes(state_dict: dict) -> dict:
    """Bytes of the weights saved dense and saved compressed (core/export.py, as tools/export_sparse.py does)."""
    import io

    import torch
    from mmprune4u_plugin.core.export import compress_state_dict

    def size(obj) -> int:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.tell()
    dense, sparse = size({'state_dict': state_dict}), size({'state_dict': compress_state_dict(state_dict)})
    return dict(dense_bytes=dense, sparse_bytes=sparse, ratio=sparse / dense)


def curves_digest(c) -> str:
    """Digest of loaded curves' content (layers, grid, curves, estimator, the weights and batches they were measured
    on), without their timing stats: curves measured again to the same values keep the keys of the cells that read
    them (additivity, costs)."""
    from mmprune4u_plugin.fingerprint import content_digest
    return content_digest(dict(names=list(c.names), modalities=list(c.modalities), numels=[int(n) for n in c.numels],
                               grid=c.grid, task=c.task, local=c.local, downstream=dict(c.downstream),
                               estimator=str(c.estimator), source=c.source))


def seconds_per_iter(work_dir: Path) -> float | None:
    """Mean ``time`` of the logged training iterations (mmengine's vis_data/scalars.json), None if none logged."""
    logs = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    times = [rec['time'] for log in logs for rec in map(json.loads, log.read_text().splitlines()) if 'time' in rec]
    return sum(times) / len(times) if times else None


__all__ = ['RealExecutor', 'isolated', 'checkpoint_sizes', 'seconds_per_iter', 'METHODS']
