"""What the benchmark measures: the plan (from ``configs/benchmark/*.py``), the methods, and the list of cells.

A cell is one unit of work with one cached result (DESIGN.md §5): a dense-model evaluation, one seed's curves, a
one-shot pruned model (method × sparsity × seed) evaluated on a split, a finetuned one (method × variant × sparsity ×
seed), a point of the β sweep, one seed's additivity check, or the cost measurements. One-shot cells of methods that
use no calibration data (uniform, uniform+, global, LAMP, ERK: masks from the dense weights alone) do not depend on
the seed, so they are one cell each (``seed`` None) and their spread over seeds is zero by construction.

With ``robustness`` set, the dense test evaluation and the selected one-shot and finetuned cells also evaluate their
checkpoint under each degraded-sensor corruption, inside the same cell (checkpoints are not kept between cells), with
one corruption seed for every method (paired comparisons); the single-sensor reference models are ``reference`` cells.

The plan's ``metrics`` names the two figures of every table: the primary one (the verdicts, the β choice, the
plateau check, retention) and the secondary one, as the report shows them, with ``keys`` where the evaluator logs
them under another name: ``dict(primary='NDS', secondary='mAP')`` (the default, nuScenes), ``dict(primary='mIoU',
secondary='acc', keys=dict(mIoU='miou'))`` (mmdet3d's SegMetric).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .metrics import DEFAULT_METRICS, metric_problems, metric_value


@dataclass(frozen=True)
class Method:
    label: str
    allocator: str | None  # None: the dense reference (no pruning)
    regulariser: str = 'local'

    @property
    def needs_curves(self) -> bool:
        """Its allocation depends on the calibration samples (so on the seed)."""
        return self.allocator in ('rd', 'mmprune4u')


METHODS: dict[str, Method] = {
    'uniform': Method('uniform', 'uniform'),
    'uniform_plus': Method('uniform+', 'uniform_plus'),
    'global': Method('global magnitude', 'global'),
    'lamp': Method('LAMP', 'lamp'),
    'erk': Method('ERK', 'erk'),
    'rd': Method('RD (β = 0)', 'rd'),
    'mmprune4u_local': Method('MMPrune4U (local R)', 'mmprune4u', 'local'),
    'mmprune4u_downstream': Method('MMPrune4U (downstream R)', 'mmprune4u', 'downstream'),
    'dense': Method('dense, finetuned (equal budget)', None),
}
BASELINES = ('uniform', 'uniform_plus', 'global', 'lamp', 'erk', 'rd')
VARIANTS = {'task': 'task loss', 'lsi': 'task loss + LogSobolevLoss'}
SENSORS = {'lidar': 'LiDAR-only', 'camera': 'camera-only'}  # the reference models (tools/compare_modalities.py)


def _same(value: float | None, choices) -> bool:
    return value is not None and any(abs(float(value) - float(c)) < 1e-9 for c in choices)


@dataclass(frozen=True)
class Cell:
    """One unit of work. ``kind`` is one of dense_train, dense_eval, curves, beta, oneshot, additivity, costs,
    finetune, reference; the other fields say which instance (None where they do not apply)."""

    kind: str
    method: str | None = None
    sparsity: float | None = None
    seed: int | None = None
    variant: str | None = None
    split: str | None = None
    beta: float | None = None
    iteration: int | None = None
    sensor: str | None = None

    @property
    def id(self) -> str:
        """A path-like name, unique per cell: ``oneshot/lamp/s70/seed-free/test``."""
        parts = [self.kind]
        if self.sensor is not None:
            parts.append(self.sensor)
        if self.method is not None:
            parts.append(self.method + (f'-{self.variant}' if self.variant else ''))
        if self.beta is not None:
            parts.append(f'beta{self.beta:g}')
        if self.sparsity is not None:
            parts.append(f's{round(self.sparsity * 100):02d}')
        if self.iteration is not None:
            parts.append(f'iter{self.iteration}')
        if self.kind in ('oneshot', 'finetune', 'beta', 'curves', 'additivity'):
            parts.append('seed-free' if self.seed is None else f'seed{self.seed}')
        if self.split is not None:
            parts.append(self.split)
        return '/'.join(parts)

    @property
    def label(self) -> str:
        """A human-readable line for the progress log."""
        words = [self.kind]
        if self.sensor is not None:
            words.append(f'{SENSORS[self.sensor]} model')
        if self.method is not None:
            words.append(METHODS[self.method].label)
        if self.variant is not None:
            words.append(f'[{VARIANTS[self.variant]}]')
        if self.beta is not None:
            words.append(f'β={self.beta:g}')
        if self.sparsity is not None:
            words.append(f'{self.sparsity:.0%}')
        if self.iteration is not None:
            words.append(f'iteration {self.iteration}')
        if self.kind in ('oneshot', 'finetune', 'beta', 'curves', 'additivity'):
            words.append('seed-free' if self.seed is None else f'seed {self.seed}')
        if self.split is not None:
            words.append(f'on {self.split}')
        return ' '.join(words)

    def spec(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Plan:
    """The benchmark's settings; see ``configs/benchmark/bevfusion-lite_cpu.py`` for every key."""

    config: str
    seeds: list[int]
    sparsities: list[float]
    methods: list[str]
    hook: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    synthetic: dict | None = None
    splits: dict = field(default_factory=lambda: {'val': {}, 'test': {}})
    dense: dict = field(default_factory=dict)
    calib: dict = field(default_factory=lambda: {'samples': 2, 'batch_size': 2})
    beta: dict = field(default_factory=lambda: {'values': [0, 0.1, 0.3, 1, 3, 10], 'sparsity': 0.8,
                                                'choose_on_val': True, 'default': 1.0})
    finetune: dict = field(default_factory=dict)
    lsi_loss: dict | None = None
    additivity: dict = field(default_factory=lambda: {'random': 32, 'level_range': [0.3, 0.95]})
    costs: dict = field(default_factory=lambda: {'plain_layers': 12, 'probes': 8, 'steps': 10, 'warmup': 2})
    robustness: dict | None = None
    metrics: dict = field(default_factory=lambda: dict(DEFAULT_METRICS))
    docs: str = 'docs/benchmarks.md'
    name: str = 'benchmark'
    related: list[str] = field(default_factory=list)  # other plans' published reports summarised on this one's page

    @classmethod
    def from_file(cls, path: str | Path) -> 'Plan':
        """Read a plan config (an mmengine config: ``_base_`` inheritance works, e.g. the quick plan)."""
        from mmengine.config import Config
        cfg = {k: v for k, v in Config.fromfile(str(path), import_custom_modules=False).to_dict().items()
               if not k.startswith('_')}  # `_name` variables are the plan file's own helpers
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f'plan {path} has unknown keys {unknown}; known: {sorted(known)}')
        plan = cls(**cfg)
        plan.validate()
        return plan

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS or m == 'dense']
        if bad:
            raise ValueError(f'`methods` has unknown entries {bad}; choose from {sorted(set(METHODS) - {"dense"})}')
        if not self.seeds:
            raise ValueError('`seeds` must name at least one seed, but got seeds: []')
        for s in [*self.sparsities, *self.finetune.get('sparsities', [])]:
            if not 0 < s < 1:
                raise ValueError(f'sparsities must be in (0, 1), but got {s}')
        for method, variant in self.finetune_rows():
            if method not in METHODS or variant not in VARIANTS:
                raise ValueError(f'`finetune.rows` entry {(method, variant)} is unknown')
            if variant == 'lsi' and self.lsi_loss is None:
                raise ValueError('`finetune.rows` asks for the LSI variant but `lsi_loss` is None')
        recipe = self.dense.get('recipe')
        if recipe is not None and recipe not in RECIPES:
            raise ValueError(f'`dense.recipe` must be None or one of {list(RECIPES)}, but got {recipe!r}')
        if recipe == 'modalities' and not all(int(self.dense.get(k) or 0) > 0 for k in ('iters', 'iters2')):
            raise ValueError('`dense.recipe=\'modalities\'` needs iters (stage 1) and iters2 (stage 2) > 0, but got '
                             f'iters: {self.dense.get("iters")}, iters2: {self.dense.get("iters2")}')
        if self.dense.get('fused_variant') is not None:
            if recipe != 'modalities':
                raise ValueError("`dense.fused_variant` is a fused stage 2 of `dense.recipe='modalities'`: give it "
                                 'with that recipe')
            fused_variant(self.dense['fused_variant'])
        if self.splits.keys() != {'val', 'test'}:
            raise ValueError(f'`splits` must define exactly val and test, but got {sorted(self.splits)}')
        if self.splits['val'] == self.splits['test']:
            raise ValueError('`splits` val and test are the same data: the tables would be on the split that beta '
                             'is tuned on; point `splits.test` at another set')
        found = metric_problems(self.metrics)
        if found:
            raise ValueError('`metrics` is invalid: ' + '; '.join(found))
        if self.synthetic is not None:
            from .data import problems as data_problems
            found = data_problems(self.synthetic)
            if found:
                raise ValueError('`synthetic` is invalid: ' + '; '.join(found))
        bad = [r for r in self.related if not str(r).endswith('.md') or r == self.docs]
        if bad:
            raise ValueError(f'`related` must name other plans\' reports (.md paths, not this plan\'s docs '
                             f'{self.docs!r}), but got {bad}')
        if self.robustness is not None:
            from .robustness import problems
            found = problems(self)
            if found:
                raise ValueError('`robustness` is invalid: ' + '; '.join(found))

    @property
    def primary(self) -> str:
        """The figure the verdicts, the β choice, the plateau check and retention use (``metrics.primary``)."""
        return self.metrics['primary']

    @property
    def secondary(self) -> str:
        return self.metrics['secondary']

    def metric(self, metrics: dict, name: str) -> float | None:
        """Figure ``name`` in a result's metrics (:func:`metric_value`)."""
        return metric_value(metrics, self.metrics, name)

    def corruptions(self) -> list[str]:
        """The corruptions every selected cell is also evaluated under ([] without ``robustness``)."""
        return list((self.robustness or {}).get('corruptions') or [])

    def corrupted(self, cell: Cell) -> bool:
        """Whether ``cell`` also evaluates its checkpoint under the corruptions: the dense model on test, the
        selected one-shot cells, and every finetune row (the equal-budget dense one too) at the selected
        sparsities."""
        if not self.corruptions() or cell.split != 'test':
            return False
        oneshot, finetune = self.robustness.get('oneshot') or {}, self.robustness.get('finetune') or {}
        if cell.kind == 'dense_eval':
            return cell.iteration is None
        if cell.kind == 'oneshot':
            return cell.method in oneshot.get('methods', []) and _same(cell.sparsity, oneshot.get('sparsities', []))
        if cell.kind == 'finetune':
            selected = finetune.get('sparsities', [])
            return bool(selected) if cell.method == 'dense' else _same(cell.sparsity, selected)
        return False

    def references(self) -> dict[str, dict]:
        """``{sensor: dict(config=..., checkpoint=...)}`` of the single-sensor reference models that are set."""
        refs = (self.robustness or {}).get('references') or {}
        return {s: dict(refs[s]) for s in SENSORS if refs.get(s)}

    def timing_class(self, cell: Cell) -> str:
        """What the ETA groups cell durations by: the kind, apart for cells that also evaluate under corruption."""
        return f'{cell.kind}+corrupted' if self.corrupted(cell) else cell.kind

    def finetune_rows(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self.finetune.get('rows', [])]

    def full_finetune_rows(self) -> list[tuple[str, str]]:
        """The uncut matrix: the dense reference plus every method with both finetuning variants."""
        rows = [('dense', 'task')] + [(m, v) for m in self.methods for v in VARIANTS]
        return rows if self.lsi_loss is not None else [r for r in rows if r[1] == 'task']

    def curve_methods(self) -> list[str]:
        return [m for m in self.methods if METHODS[m].needs_curves]


def fused_variant(text: str) -> tuple[str, str]:
    """``dense.fused_variant`` ``'NAME=CONFIG'`` -> (NAME, CONFIG): tools/compare_modalities.py's
    ``--fused-variant``, whose stage-2 model (row ``lidar-camera_NAME``) is then the dense model."""
    import argparse

    from compare_modalities import fused_variant as parse  # (tools/ is on the path of every _bench user)
    try:
        row, config = parse(str(text))
    except argparse.ArgumentTypeError as e:
        raise ValueError(f'`dense.fused_variant`: {e}') from None
    return row.removeprefix('lidar-camera_'), config


RECIPES = ('modalities',)  # dense.recipe: how the dense model is trained when it is not one plain run
RECIPE_CHECKPOINT = 'dense_recipe'  # references.<sensor>.checkpoint: that sensor's model of the recipe


def dense_curve_iters(plan: Plan) -> int:
    """Iterations of the run whose val primary metric makes the plateau curve: the plain run's, or the fused model's
    stage 2 (``recipe='modalities'``: tools/compare_modalities.py, whose stage 2 trains the fused model from the two
    single-sensor ones)."""
    return int(plan.dense['iters2'] if plan.dense.get('recipe') == 'modalities' else plan.dense['iters'])


def expand(plan: Plan, *, train_dense: bool) -> list[Cell]:
    """Every cell of the plan, in the order they run (each cell's inputs come from cells before it)."""
    cells: list[Cell] = []
    if train_dense:
        cells.append(Cell('dense_train'))
        every, iters = int(plan.dense['eval_every']), dense_curve_iters(plan)
        points = sorted({*range(every, iters + 1, every), iters})
        cells += [Cell('dense_eval', iteration=i, split='val') for i in points[:-1]]
    cells += [Cell('dense_eval', split='val'), Cell('dense_eval', split='test')]
    cells += [Cell('reference', sensor=s, split='test') for s in plan.references()]
    curves = bool(plan.curve_methods()) or bool(plan.beta.get('values'))
    if curves:
        cells += [Cell('curves', seed=s) for s in plan.seeds]
    for seed in plan.seeds:
        for beta in plan.beta.get('values', []):
            cells.append(Cell('beta', method='rd' if beta == 0 else 'mmprune4u_local', beta=float(beta),
                              sparsity=float(plan.beta['sparsity']), seed=seed, split='val'))
    for method in plan.methods:
        for s in plan.sparsities:
            seeds = plan.seeds if METHODS[method].needs_curves else [None]
            cells += [Cell('oneshot', method=method, sparsity=float(s), seed=seed, split='test') for seed in seeds]
    if plan.additivity.get('random', 0) > 0 and curves:
        cells += [Cell('additivity', seed=s) for s in plan.seeds]
    for seed in plan.seeds:
        for method, variant in plan.finetune_rows():
            sparsities = [None] if method == 'dense' else plan.finetune.get('sparsities', [])
            cells += [Cell('finetune', method=method, variant=variant, sparsity=None if s is None else float(s),
                           seed=seed, split='test') for s in sparsities]
    if plan.costs:  # last: it times things, so nothing else should run beside it (with --jobs, nothing does)
        cells.append(Cell('costs', seed=plan.seeds[0]))
    return cells


def plan_summary(plan: Plan) -> dict[str, Any]:
    """The plan as plain data (recorded in the json)."""
    return asdict(plan)
