"""How much the regulariser moves the allocation: beta = 0 (RD) against beta > 0, from measured curves.

Reads a curve cache written by MMPrune4UHook (``curve_cache``, e.g. the demo's ``work_dirs/demo/curves_round1.npz``)
and, for each target sparsity, allocates with every beta and prints how many layers change their chosen level
against beta = 0 and the per-modality sparsities. Also writes the table as json / markdown with ``--out``.

    .venv/bin/python tools/beta_effect.py work_dirs/demo/curves_round1.npz --sparsity 0.5 0.7 0.9 --beta 0 1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmprune4u_plugin.core.curves import DistortionCurves  # noqa: E402
from mmprune4u_plugin.core.layers import PrunableLayer  # noqa: E402
from mmprune4u_plugin.core.plan import AllocationSpec, allocate_layers  # noqa: E402


def layers_of(curves: DistortionCurves) -> list[PrunableLayer]:
    """The layers the curves were measured for (names, sizes, modalities; a flat shape stands in for the real one)."""
    return [PrunableLayer(n, n.rsplit('.', 1)[0], n.rsplit('.', 1)[-1], 'unknown', (int(k),), m)
            for n, m, k in zip(curves.names, curves.modalities, curves.numels)]


def modality_sparsity(layers: list[PrunableLayer], alloc: dict[str, float]) -> dict[str, float]:
    """Weighted sparsity of each modality group."""
    out: dict[str, list[float]] = {}
    for lay in layers:
        acc = out.setdefault(lay.modality, [0.0, 0.0])
        acc[0] += alloc[lay.name] * lay.numel
        acc[1] += lay.numel
    return {m: z / n for m, (z, n) in out.items()}


def beta_effect(curves: DistortionCurves, targets: list[float], betas: list[float],
                regulariser: str = 'local') -> list[dict]:
    """One row per (target, beta): layers whose level differs from beta = 0, per-modality sparsity, R's scale."""
    layers = layers_of(curves)
    rows = []
    for target in targets:
        base = allocate_layers(layers, AllocationSpec(target, 'rd'), curves=curves)
        for beta in betas:
            alloc = base if beta == 0 else allocate_layers(
                layers, AllocationSpec(target, 'mmprune4u', beta=beta, regulariser=regulariser), curves=curves)
            changed = sum(abs(alloc[n] - base[n]) > 1e-9 for n in base)
            rows.append(dict(target=target, beta=beta, layers=len(layers), changed=int(changed),
                             modalities=modality_sparsity(layers, alloc),
                             scale=curves.regulariser_scale(target, regulariser)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('curves', help='curve cache (.npz) written by MMPrune4UHook')
    parser.add_argument('--sparsity', type=float, nargs='+', default=[0.5, 0.7, 0.9])
    parser.add_argument('--beta', type=float, nargs='+', default=[0.0, 1.0])
    parser.add_argument('--regulariser', default='local', choices=['local', 'downstream'])
    parser.add_argument('--out', help='write <out>.json and <out>.md')
    args = parser.parse_args()
    rows = beta_effect(DistortionCurves.load(args.curves), args.sparsity, args.beta, args.regulariser)
    mods = list(rows[0]['modalities'])
    lines = ['| target | beta | layers changed vs beta=0 | ' + ' | '.join(mods) + ' |', '|---' * (3 + len(mods)) + '|']
    lines += [f'| {r["target"]} | {r["beta"]} | {r["changed"]} / {r["layers"]} | '
              + ' | '.join(f'{r["modalities"][m]:.3f}' for m in mods) + ' |' for r in rows]
    print('\n'.join(lines))
    if args.out:
        Path(args.out).with_suffix('.json').write_text(json.dumps(dict(curves=args.curves, rows=rows), indent=1))
        Path(args.out).with_suffix('.md').write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
