"""Background upsamplers: seconds per input megapixel and peak memory, by backend and tile size.

    python benchmarks/upsamplers.py [--model-dir ../shared/weights] [--photo PHOTO]
        [--upsamplers realesr-animevideov3,realesrgan-x2plus] [--tiles 0,200,400] [--backends torch,onnx]

Each configuration runs in a fresh process on the same photo (so the peak RSS is that
run's own: torch, the model, the image and its tiles), twice, and reports the faster
run's upscaling time per input megapixel, the process's wall time (start-up, model load
and a first ONNX export included) and its peak resident memory. Networks without a file in --model-dir run on seeded random weights
of the released layout (speed doesn't depend on the values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = r"""
import json, resource, sys, time, cv2, torch
from facefix import compose, plugins
from facefix.upsamplers import upsampler_backend, background
from facefix.weights import WeightsResolver, default_cache_dir
name, photo, tile, backend, model_dir, weights = sys.argv[1:7]
resolver = WeightsResolver(model_dir=model_dir or None, allow_download=False, progress=False)
spec = plugins.get_component("upsampler", name)
selection = compose.ComponentSelection(upsampler_tile=int(tile))
upsampler = compose.build(spec, device="cpu", resolver=resolver, selection=selection, weights_path=weights or None)
upsampler, how = upsampler_backend(upsampler, backend, "cpu", default_cache_dir().parent / "onnx", warn=lambda m: None)
image = cv2.imread(photo)
start = time.perf_counter()
output = upsampler.upscale(image)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB: this process's own peak
print(json.dumps({"seconds": seconds, "shape": list(output.shape), "how": how, "peak_mib": peak}))
"""


def random_weights(name: str, folder: Path) -> Path:
    """A file of the released layout with seeded random weights, for networks not on disk."""
    import torch

    from facefix import plugins

    card = plugins.get_component("upsampler", name).card
    config = {"realesrgan-x4plus": {"scale": 4}, "realesrgan-x2plus": {"scale": 2},
              "realesr-general-x4v3": {"num_conv": 32}, "realesr-animevideov3": {}}[name]
    torch.manual_seed(0)
    path = folder / f"{name}-random.pth"
    torch.save({"params": card.architecture(config).state_dict()}, path)
    return path


def run(name: str, photo: Path, tile: int, backend: str, model_dir: str, weights: str) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, name, str(photo), str(tile), backend, model_dir, weights],
                            capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report.update(wall=wall)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="../shared/weights")
    parser.add_argument("--photo", default="../shared/photos/gfpgan__inputs_whole_imgs_Blake_Lively.jpg")
    parser.add_argument("--upsamplers", default="realesr-animevideov3,realesrgan-x2plus")
    parser.add_argument("--tiles", default="0,200,400")
    parser.add_argument("--backends", default="torch,onnx")
    args = parser.parse_args()
    import cv2

    height, width = cv2.imread(args.photo).shape[:2]
    megapixels = height * width / 1e6
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads default; "
          f"photo {Path(args.photo).name} {width}x{height} ({megapixels:.2f} MP)")
    print("| upsampler | backend | tile | s / input MP (network) | wall s (process) | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.upsamplers.split(","):
            from facefix import plugins
            from facefix.weights import WeightsResolver, get_entry

            entry = get_entry(plugins.get_component("upsampler", name).weights[0])
            local = WeightsResolver(model_dir=args.model_dir, allow_download=False).find_local(entry)
            weights = "" if local is not None else str(random_weights(name, Path(folder)))
            note = "" if local is not None else " (random weights)"
            for backend in args.backends.split(","):
                for tile in (int(value) for value in args.tiles.split(",")):
                    runs = [run(name, Path(args.photo), tile, backend, args.model_dir, weights) for _ in range(2)]
                    best = min(runs, key=lambda item: item["seconds"])
                    peak = max(item["peak_mib"] for item in runs)
                    print(f"| {name}{note} | {best['how']} | {tile or 'whole'} | {best['seconds'] / megapixels:.2f} | "
                          f"{best['wall']:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
