"""The parse path: seconds per face and peak memory of each parser, by backend and batch size.

    python benchmarks/parsers.py [--parsers parsenet,bisenet] [--faces 8] [--batches 1,4]

facexlib's ParseNet and BiSeNet run on seeded random weights of their released layouts
(their files aren't in ../shared; speed doesn't depend on the values), on real aligned
faces from ../shared/faces/val512. Each configuration runs in a fresh process (its peak
RSS is its own), after one warm-up face; "torch" is eager PyTorch, "onnx" the export
facefix caches and runs by default on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

PROBE = r"""
import json, resource, sys, time
from pathlib import Path
import cv2, numpy as np, torch
from facefix.compat import ensure_torchvision
from facefix.components import Normalization
from facefix.inference import SegmentationParser
from facefix.backends import parser_backend
ensure_torchvision()
name, backend, batch, count, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
torch.manual_seed(0)
if name == "parsenet":
    from facexlib.parsing.parsenet import ParseNet
    network, normalization = ParseNet(in_size=512, out_size=512, parsing_ch=19), Normalization()
else:
    from facexlib.parsing.bisenet import BiSeNet
    network = BiSeNet(num_class=19)
    normalization = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
weights = cache / f"{name}-random.pth"
if not weights.exists():
    torch.save(network.state_dict(), weights)
parser = SegmentationParser(network, network_size=512, normalization=normalization, output_index=0,
                            name=f"{name}-bench", weights=weights, batch_size=batch)
runner, how = parser_backend(parser, backend, "cpu", cache)
folder = Path("../shared/faces/val512/images")
faces = np.stack([cv2.imread(str(path)) for path in sorted(folder.iterdir())[:count]])
runner.parse(faces[:1])
start = time.perf_counter()
for index in range(0, count, batch):
    runner.parse(faces[index:index + batch])
seconds = (time.perf_counter() - start) / count
print(json.dumps({"per_face": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parsers", default="parsenet,bisenet")
    parser.add_argument("--faces", type=int, default=8)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--cache", default="runs/bench_parsers")
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs; {args.faces} faces of ../shared/faces/val512 at 512 px")
    print("| parser | backend | batch | s / face | peak RSS MiB |")
    print("|---|---|---:|---:|---:|")
    for name in args.parsers.split(","):
        for backend in ("torch", "onnx"):
            for batch in (int(value) for value in args.batches.split(",")):
                if backend == "onnx" and batch > 1:
                    continue  # the onnx parser runs faces one at a time on a CPU whatever the batch
                result = subprocess.run([sys.executable, "-c", PROBE, name, backend, str(batch), str(args.faces),
                                         args.cache], capture_output=True, text=True)
                label = "onnxruntime" if backend == "onnx" else "torch eager"
                if result.returncode != 0:
                    reason = (result.stderr.strip().splitlines() or ["?"])[-1][:120]
                    print(f"| {name} | {label} | {batch} | failed: {reason} | |", flush=True)
                    continue
                report = json.loads(result.stdout.strip().splitlines()[-1])
                print(f"| {name} | {label} | {batch} | {report['per_face']:.2f} | {report['peak_mib']:.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
