"""Write a compressed sparse checkpoint (bitmask + non-zero values) and print dense vs sparse file size.

    python tools/export_sparse.py PRUNED.pth [--out PRUNED_sparse.pth] [--check]

Load it back with ``mmprune4u_plugin.core.export.decompress_state_dict(torch.load(path)['state_dict'])``; ``--check``
does that and asserts the weights are identical.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mmprune4u_plugin.core.export import compress_state_dict, decompress_state_dict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('--out')
    parser.add_argument('--check', action='store_true', help='reload and compare with the dense weights')
    args = parser.parse_args()
    src = Path(args.checkpoint)
    out = Path(args.out) if args.out else src.with_name(src.stem + '_sparse.pth')
    ckpt = torch.load(src, map_location='cpu', weights_only=False)
    state = ckpt.get('state_dict', ckpt)
    dense_only = src.with_name(src.stem + '_dense_weights.pth')
    torch.save({'state_dict': state}, dense_only)  # same content as the sparse file, for a fair size comparison
    torch.save({'state_dict': compress_state_dict(state), 'meta': ckpt.get('meta', {})}, out)
    dense_size, sparse_size = os.path.getsize(dense_only), os.path.getsize(out)
    print(f'dense weights : {dense_size / 1e6:9.3f} MB  ({dense_only})')
    print(f'sparse weights: {sparse_size / 1e6:9.3f} MB  ({out})  ratio {sparse_size / dense_size:.3f}')
    if args.check:
        back = decompress_state_dict(torch.load(out, map_location='cpu', weights_only=True)['state_dict'])
        same = set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state
                                               if isinstance(state[k], torch.Tensor))
        print('reloaded weights identical:', same)
        if not same:
            raise SystemExit(1)


if __name__ == '__main__':
    main()
