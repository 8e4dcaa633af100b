"""One-shot prune a model (a checkpoint, or the config's initial weights) without training.

Writes the pruned checkpoint (plain state_dict keys, plus ``mmprune4u`` masks and allocation) and the report into
``--work-dir``. The pruning settings come from the config's MMPrune4UHook entry; ``--sparsity`` / ``--allocator``
override it or add one.

    python tools/prune.py CONFIG [--checkpoint CKPT] [--sparsity 0.7] [--allocator mmprune4u] [--work-dir DIR]
"""
from __future__ import annotations

import time
from pathlib import Path

from _launch import build_runner, common_parser, load_config, prune_hook_cfgs


def main() -> None:
    parser = common_parser('One-shot MMPrune4U pruning of a checkpoint')
    parser.add_argument('--checkpoint', help='weights to prune (default: the config\'s initialisation)')
    parser.add_argument('--sparsity', type=float, help='global target sparsity')
    parser.add_argument('--allocator', help='mmprune4u, rd, lamp, global, uniform, uniform_plus or erk')
    parser.add_argument('--out', default='pruned.pth', help='file name of the pruned checkpoint in work_dir')
    args = parser.parse_args()
    cfg = load_config(args)
    hooks = prune_hook_cfgs(cfg)
    if not hooks:
        if args.sparsity is None:
            raise SystemExit('the config has no MMPrune4UHook: give --sparsity')
        cfg.default_hooks = dict(cfg.get('default_hooks') or {}, mmprune4u=dict(type='MMPrune4UHook'))
        hooks = prune_hook_cfgs(cfg)
    for key, value in (('sparsity', args.sparsity), ('allocator', args.allocator)):
        if value is not None:
            hooks[0][key] = value
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg)
    prune_checkpoint(runner, Path(runner.work_dir) / args.out)


def prune_checkpoint(runner, out: Path) -> None:
    """Run the hook's pruning on ``runner.model`` and save the result."""
    import torch
    from mmengine.runner.checkpoint import weights_to_cpu

    from mmprune4u_plugin.hooks import MMPrune4UHook
    hook = next(h for h in runner.hooks if isinstance(h, MMPrune4UHook))
    start = time.time()
    runner.call_hook('before_run')
    runner.load_or_resume()
    hook.before_train(runner)
    checkpoint = {'meta': {'mmprune4u_seconds': round(time.time() - start, 1)},
                  'state_dict': weights_to_cpu(runner.model.state_dict())}
    hook.before_save_checkpoint(runner, checkpoint)
    torch.save(checkpoint, out)
    runner.logger.info(f'pruned checkpoint written to {out} ({time.time() - start:.1f} s)')


if __name__ == '__main__':
    main()
