"""Per-step cost of keeping a model pruned, against plain training (the benchmark issue's goal: under 3%).

A pruned model trains with its masks: the gradients of pruned weights are zeroed on backward, and every pruned
weight is set back to 0 after the optimizer step (MMPrune4UHook's ``after_train_iter``). This times training steps
of the config's model, plain and with the masks, interleaved step by step on the same pre-fetched batches of the
config's train dataloader (data loading excluded, so the overhead is relative to the compute alone), and the
re-application alone. Every prunable layer is masked by magnitude at ``--sparsity``: the allocation does not change
the cost.

    .venv/bin/python tools/benchmark_masks.py CONFIG [--checkpoint CKPT] [--sparsity 0.7] [--steps 10] [--warmup 2]
        [--threads N] [--cfg-options data_root=...]

Beside the interleaved steps, the re-application and the gradient masking are each timed on their own: a few ms in a
step of ~1 s whose time drifts by several percent, so their sum is the steadier figure.

The same interleaved measurement is the ``costs`` cell's step overhead in tools/benchmark.py (there with the LSI loss
as well).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench.measure import round_robin_step_seconds  # noqa: E402
from _launch import build_runner, common_parser, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = common_parser('Per-step cost of the pruning masks against plain training')
    parser.add_argument('--checkpoint', help='weights to load (default: the config\'s initialisation)')
    parser.add_argument('--sparsity', type=float, default=0.7, help='every prunable layer masked at this sparsity')
    parser.add_argument('--steps', type=int, default=10, help='timed steps per mode (the median is reported)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed rounds first')
    parser.add_argument('--batches', type=int, default=4, help='pre-fetched batches, used in turn')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch default)')
    args = parser.parse_args(argv)
    if not 0 <= args.sparsity < 1:
        raise SystemExit(f'--sparsity must be in [0, 1), got {args.sparsity}')
    if args.steps < 1 or args.warmup < 0 or args.batches < 1:
        raise SystemExit('--steps and --batches must be >= 1, --warmup >= 0')
    import torch

    from mmprune4u_plugin.core.layers import find_prunable_layers
    from mmprune4u_plugin.core.pruner import Pruner
    from mmprune4u_plugin.hooks.calibration import unwrap
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg)
    runner.call_hook('before_run')
    runner.load_or_resume()
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)  # built by train() otherwise
    model, wrapper = unwrap(runner.model), runner.optim_wrapper
    layers = find_prunable_layers(model)
    pruner = Pruner(layers)
    pruner.prepare(model)
    pruner.set_sparsities({lay.name: args.sparsity for lay in layers})
    loader = iter(runner.build_dataloader(runner._train_dataloader, seed=runner.seed))
    batches = [next(loader) for _ in range(args.batches)]

    def enter(mode: str) -> None:
        if mode == 'plain':
            pruner.remove_hooks()
        else:
            pruner.prepare(model)
    times, apply_times = round_robin_step_seconds(
        model, wrapper, batches, ['plain', 'masks'], enter=enter, leave=lambda mode: None,
        after_step={'masks': pruner.apply}, warmup=args.warmup, steps=args.steps)
    med = {mode: statistics.median(v) for mode, v in times.items()}
    paired = statistics.median(m / p for m, p in zip(times['masks'], times['plain'])) - 1
    grad_seconds = gradient_masking_seconds(model, wrapper, pruner, batches[0], repeats=3)
    apply_seconds = statistics.median(apply_times)
    result = dict(layers=len(layers), weights=sum(lay.numel for lay in layers), threads=torch.get_num_threads(),
                  seconds_per_step=med, mask_apply_seconds=apply_seconds, grad_mask_seconds=grad_seconds,
                  mask_overhead=med['masks'] / med['plain'] - 1, mask_overhead_paired=paired,
                  mask_overhead_parts=(apply_seconds + grad_seconds) / med['plain'])
    print(f'{result["layers"]} prunable layers, {result["weights"]:,} weights at sparsity {args.sparsity}; '
          f'{result["threads"]} torch thread(s); median of {args.steps} steps per mode, interleaved')
    print(f'plain training step       {med["plain"]:8.3f} s')
    print(f'with the masks            {med["masks"]:8.3f} s  ({100 * result["mask_overhead"]:+.1f}%; '
          f'median of the per-round ratios {100 * paired:+.1f}%)')
    print(f're-application alone      {1000 * apply_seconds:8.1f} ms '
          f'({100 * apply_seconds / med["plain"]:.1f}% of a plain step)')
    print(f'gradient masking alone    {1000 * grad_seconds:8.1f} ms '
          f'({100 * grad_seconds / med["plain"]:.1f}% of a plain step)')
    print(f'the two together          {100 * result["mask_overhead_parts"]:8.1f} % of a plain step (timed on their '
          f'own: steady where the step times drift)')
    return result


def gradient_masking_seconds(model, wrapper, pruner, batch, repeats: int) -> float:
    """Median seconds of masking every gradient once, after a real backward (what the hooks add per step).

    Timed on its own because it is a few ms inside a step of ~1 s whose time drifts by several percent. After the
    whole backward the gradients are colder in cache than when each hook runs, so this errs high."""
    import time

    import torch
    pruner.remove_hooks()
    with wrapper.optim_context(model):
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model._run_forward(data, mode='loss'))
    loss.backward()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        pruner.mask_grads()
        seconds.append(time.perf_counter() - start)
    wrapper.zero_grad()
    pruner.prepare(model)
    with torch.no_grad():
        pruner.apply()
    return statistics.median(seconds)


if __name__ == '__main__':
    main()
