"""Evaluate a (pruned) checkpoint: the same CLI as mmdet3d's tools/test.py; prints the weights' sparsity too."""
from __future__ import annotations

import math

from _launch import build_runner, common_parser, load_config, prune_hook_cfgs


def main() -> None:
    parser = common_parser('Test a 3D detector / segmentor (with the mmprune4u plugin)')
    parser.add_argument('checkpoint', help="checkpoint file ('none': the config's initial weights)")
    parser.add_argument('--metrics-json', help='also write the metrics and the weights\' sparsity to this file')
    args = parser.parse_args()
    cfg = load_config(args)
    cfg.load_from = None if args.checkpoint == 'none' else args.checkpoint
    runner = build_runner(cfg)
    metrics = runner.test()
    from mmprune4u_plugin.core.layers import find_prunable_layers, get_weight
    from mmprune4u_plugin.core.masks import sparsity_report
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    hooks = prune_hook_cfgs(cfg)  # a pruning config's modality groups name the by-modality figures
    modalities = hooks[0].get('modalities') if hooks else None
    report = sparsity_report([(lay.name, lay.modality, get_weight(model, lay).detach())
                              for lay in find_prunable_layers(model, modalities=modalities)])
    runner.logger.info(f'prunable-weight sparsity of the tested model: {report.global_sparsity:.4f} '
                       f'({report.zeros}/{report.total}); metrics: {metrics}')
    if args.metrics_json:
        import json
        with open(args.metrics_json, 'w') as f:
            json.dump({'metrics': {k: json_number(v) for k, v in metrics.items()}, 'sparsity': report.global_sparsity,
                       'by_modality': {m: s for m, (_, _, s) in report.by_modality().items()}}, f, indent=1,
                      allow_nan=False)


def json_number(value) -> float | None:
    """A metric as strict JSON: NaN / inf (e.g. the IoU of a class absent from the data) become null."""
    value = float(value)
    return value if math.isfinite(value) else None


if __name__ == '__main__':
    main()
