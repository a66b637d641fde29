"""A training run's ``final.pth`` with every floating-point tensor stored in fp16: half the
bytes, for a checkpoint kept in the repository (``load_network`` copies it back into the
network's fp32 weights).

    python benchmarks/half_checkpoint.py runs/cfgpfssr128_full/final.pth benchmarks/checkpoints/cfgpfssr_cpu_16x.pth
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch


def halved(value: Any) -> Any:
    """``value`` with its floating-point tensors in fp16, at any depth of nested dicts."""
    if isinstance(value, torch.Tensor):
        return value.half() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: halved(item) for key, item in value.items()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    torch.save(halved(torch.load(args.source, weights_only=True)), args.target)
    print(f"{args.target}: {args.target.stat().st_size / 2**20:.1f} MiB (from {args.source.stat().st_size / 2**20:.1f})")


if __name__ == "__main__":
    main()
