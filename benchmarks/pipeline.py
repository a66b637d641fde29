"""Time each stage of `facefix restore` on the real photos in ../shared/photos.

    python benchmarks/pipeline.py [--photos DIR] [--weights DIR] [--device cpu]

Stages: decode, detect, align, parse, restore, blend (background resize + paste-back),
encode. Configurations use the `passthrough` restorer, so "restore" is the pipeline's
own cost. A parsing configuration uses facexlib's ParseNet at its real size with
randomly initialised weights: speed doesn't depend on the weight values, and the
official file can't be downloaded here.
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from facefix import compose
from facefix.image_io import find_images
from facefix.pipeline import FaceOptions, Pipeline, PipelineOptions
from facefix.weights import WeightsResolver

STAGES = ("decode", "detect", "align", "parse", "restore", "blend", "encode")
HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def model_dir_with_random_parsenet(weights: Path, folder: Path) -> Path:
    from facefix.compat import ensure_torchvision

    ensure_torchvision()
    from facexlib.parsing.parsenet import ParseNet

    for file in weights.iterdir():
        shutil.copy(file, folder / file.name)
    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth")
    return folder


def run(config: dict, files, model_dir: Path, device: str, out: Path):
    resolver = WeightsResolver(model_dir=model_dir, allow_download=False, progress=False)
    built = {
        kind: compose.build(compose.choose(kind, name, resolver), device=device, resolver=resolver)
        for kind, name in config.items()
        if name
    }
    pipeline = Pipeline(
        restorer=built["restorer"], blender=built["blender"], detector=built["detector"], parser=built.get("parser"),
        options=PipelineOptions(faces=FaceOptions(upscale=1.0, batch_size=4), quiet=True), report=lambda message: None,
    )
    pipeline.run(files[:1], out / "warmup")  # first-call costs (allocations, oneDNN kernels) out of the figures
    pipeline.summary = type(pipeline.summary)()
    start = time.perf_counter()
    summary = pipeline.run(files, out / "run")
    return summary, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    files = find_images([args.photos], recursive=False)
    configs = {
        "retinaface_mobile0.25 + soft": {"detector": "retinaface_mobile0.25", "restorer": "passthrough", "blender": "soft"},
        "yunet + soft": {"detector": "yunet", "restorer": "passthrough", "blender": "soft"},
        "retinaface_mobile0.25 + parsenet + parse": {"detector": "retinaface_mobile0.25", "restorer": "passthrough",
                                                     "blender": "parse", "parser": "parsenet"},
    }
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as temporary:
        temporary = Path(temporary)
        (temporary / "weights").mkdir()
        model_dir = model_dir_with_random_parsenet(args.weights, temporary / "weights")
        for name, config in configs.items():
            summary, wall = run(config, files, model_dir, args.device, temporary / name.replace(" ", "_"))
            images = summary.processed
            print(f"\n{name}: {images} images, {summary.faces} faces, {wall:.2f} s wall, "
                  f"{wall / images * 1000:.0f} ms/image")
            print(f"  {'stage':<8} {'total s':>8} {'ms/image':>9} {'ms/face':>8}")
            for stage in STAGES:
                seconds = summary.stage_seconds.get(stage, 0.0)
                per_face = seconds / summary.faces * 1000 if summary.faces else 0.0
                print(f"  {stage:<8} {seconds:8.2f} {seconds / images * 1000:9.1f} {per_face:8.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
