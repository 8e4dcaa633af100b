"""Evaluate a (pruned) checkpoint: the same CLI as mmdet3d's tools/test.py; prints the weights' sparsity too."""
from __future__ import annotations

from _launch import build_runner, common_parser, load_config


def main() -> None:
    parser = common_parser('Test a 3D detector / segmentor (with the mmprune4u plugin)')
    parser.add_argument('checkpoint', help='checkpoint file')
    args = parser.parse_args()
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg)
    metrics = runner.test()
    from mmprune4u_plugin.core.layers import find_prunable_layers, get_weight
    from mmprune4u_plugin.core.masks import sparsity_report
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    report = sparsity_report([(lay.name, lay.modality, get_weight(model, lay).detach())
                              for lay in find_prunable_layers(model)])
    runner.logger.info(f'prunable-weight sparsity of the tested model: {report.global_sparsity:.4f} '
                       f'({report.zeros}/{report.total}); metrics: {metrics}')


if __name__ == '__main__':
    main()
