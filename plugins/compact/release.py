"""Turn a trained compact checkpoint into the file that ships in weights/.

    python -m facefix_plugins.compact.release runs/compact/final.pth weights/facefix_compact_v1.pth

Keeps the EMA weights and the config, stores the weights in half precision (half the
size; the loader widens them to float32, and the outputs move by under one 8-bit level),
and prints the size and SHA-256 for the card's weights entry (``plugins/compact/__init__.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from facefix.atomic import atomic_path
from facefix.networks import load_network
from facefix.weights import sha256_file
from facefix_plugins.compact import CARD


def release(source: Path, target: Path) -> tuple[int, str]:
    network = load_network(CARD, source).module  # refuses anything that isn't a loadable compact checkpoint
    shipped = {
        "params_ema": {key: value.half() for key, value in network.state_dict().items()},
        "config": network.config(),
    }
    with atomic_path(target) as temporary:
        torch.save(shipped, temporary)
    return target.stat().st_size, sha256_file(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    size, digest = release(args.source, args.target)
    print(f"{args.target}: {size} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
