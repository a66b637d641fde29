"""facefix restore against GFPGAN's own script on the same photos, weights and settings.

    python benchmarks/vs_gfpgan.py --reference-python /tmp/refenv/bin/python [--repeats 2]

The reference runs in a throwaway virtualenv holding gfpgan 1.3.8 / basicsr 1.4.2 /
facexlib 0.3.0, never in the project's environment (it sees the project's torch through
``--system-site-packages``)::

    python -m venv /tmp/refenv --system-site-packages
    /tmp/refenv/bin/pip install -c constraints.txt wheel setuptools
    /tmp/refenv/bin/pip download --no-deps -d /tmp/refpkgs gfpgan==1.3.8 basicsr==1.4.2
    /tmp/refenv/bin/pip install --no-deps --no-build-isolation -c constraints.txt \\
        /tmp/refpkgs/basicsr-1.4.2.tar.gz /tmp/refpkgs/gfpgan-1.3.8-py3-none-any.whl

Both sides get the same files in one folder: GFP-GAN v1.4's clean architecture and
facexlib's ParseNet with seeded random weights of the released layouts (the released
files can't be had here; time and memory don't depend on the values) and RetinaFace
MobileNet-0.25 from ../shared/weights. Settings as GFPGAN's ``inference_gfpgan.py``:
``--upscale 2``, no background upsampler, faces pasted with ParseNet masks; GFPGANer's
detector is switched to MobileNet-0.25 to match. Each side runs in its own process
(peak RSS is that process's own), the two alternated; then facefix's defaults (soft
paste, no parser). Reported: wall time of the restore loop, per-stage seconds, peak RSS,
and detection's cost per megapixel of input.
facefix's one-time ONNX exports happen in an unmeasured warm-up run first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PHOTOS = ("insightface_t1.jpg", "gfpgan__inputs_whole_imgs_00.jpg", "gfpgan__inputs_whole_imgs_Blake_Lively.jpg",
          "facexlib__assets_test.jpg")

REFERENCE = r"""
import json, os, resource, sys, time
from pathlib import Path
import cv2, torch
from facefix.compat import ensure_torchvision
ensure_torchvision()
import torchvision.transforms._functional_tensor as functional_tensor
sys.modules.setdefault("torchvision.transforms.functional_tensor", functional_tensor)
import gfpgan.utils
from facexlib.utils.face_restoration_helper import FaceRestoreHelper

weights, photos, out = Path(sys.argv[1]), [Path(p) for p in sys.argv[2].split(",")], Path(sys.argv[3])
seconds = {"detect": 0.0, "restore": 0.0, "paste": 0.0}

def helper(*args, **kwargs):  # GFPGANer's own helper, with the detector both sides use
    kwargs.update(det_model="retinaface_mobile0.25", model_rootpath=str(weights))
    return FaceRestoreHelper(*args, **kwargs)

gfpgan.utils.FaceRestoreHelper = helper
restorer = gfpgan.utils.GFPGANer(model_path=str(weights / "GFPGANv1.4.pth"), upscale=2, arch="clean",
                                 channel_multiplier=2, bg_upsampler=None, device=torch.device("cpu"))

def timed(owner, name, stage):
    original = getattr(owner, name)
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[stage] += time.perf_counter() - start
    setattr(owner, name, run)

timed(restorer.face_helper, "get_face_landmarks_5", "detect")
timed(restorer.gfpgan, "forward", "restore")
timed(restorer.face_helper, "paste_faces_to_input_image", "paste")
faces = 0
start = time.perf_counter()
for photo in photos:
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    cropped, restored, result = restorer.enhance(image, has_aligned=False, only_center_face=False, paste_back=True)
    faces += len(restored)
    cv2.imwrite(str(out / photo.name), result)
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "faces": faces, "stages": seconds,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

FACEFIX = r"""
import json, resource, sys, time
from pathlib import Path
from facefix import compose
from facefix.image_io import find_images
from facefix.pipeline import FaceOptions, Pipeline, PipelineOptions

weights, photos, out, parse = Path(sys.argv[1]), [Path(p) for p in sys.argv[2].split(",")], Path(sys.argv[3]), sys.argv[4] == "parse"
selection = compose.ComponentSelection(restorer="gfpgan", weights=weights / "GFPGANv1.4.pth", model_dir=weights,
                                       detector="retinaface_mobile0.25", blender="parse" if parse else "soft",
                                       parser="parsenet" if parse else None, device="cpu")
start = time.perf_counter()
assembly = compose.assemble(selection, quiet=True)
loaded = time.perf_counter() - start
pipeline = Pipeline(restorer=assembly.get("restorer"), blender=assembly.get("blender"),
                    detector=assembly.get("detector"), parser=assembly.get("parser"),
                    options=PipelineOptions(faces=FaceOptions(upscale=2), quiet=True))
start = time.perf_counter()
summary = pipeline.run(find_images(photos, False), out)
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "faces": summary.faces, "stages": dict(summary.stage_seconds), "load": loaded,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_weights(folder: Path, shared: Path) -> None:
    """Seeded random weights of the released layouts, and the shared detector."""
    import torch

    from facefix.compat import ensure_torchvision
    from facefix_plugins.gfpgan.arch import official_gfpgan

    ensure_torchvision()
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(0)
    torch.save({"params_ema": official_gfpgan("clean").state_dict()}, folder / "GFPGANv1.4.pth")
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth")
    shutil.copy(shared / "weights" / "detection_mobilenet0.25_Final.pth", folder)


def run(python: str, script: str, *args: str) -> dict:
    result = subprocess.run([python, "-c", script, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summary(label: str, runs: list[dict], megapixels: float) -> str:
    wall = [item["wall"] for item in runs]
    detect = statistics.median(item["stages"].get("detect", 0.0) for item in runs) / megapixels
    stages = {stage: statistics.median(item["stages"].get(stage, 0.0) for item in runs) for stage in runs[0]["stages"]}
    stage_text = ", ".join(f"{stage} {value:.1f}" for stage, value in stages.items() if value >= 0.05)
    peaks = [item["peak_mib"] for item in runs]
    return (f"| {label} | {statistics.median(wall):.1f} ({min(wall):.1f}–{max(wall):.1f}) | {runs[0]['faces']} | "
            f"{min(peaks):.0f}–{max(peaks):.0f} | {detect:.3f} | {stage_text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", default="/tmp/refenv/bin/python")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    photos = ",".join(str(args.shared / "photos" / name) for name in PHOTOS)
    from PIL import Image

    megapixels = 0.0
    for name in PHOTOS:
        with Image.open(args.shared / "photos" / name) as image:
            megapixels += image.width * image.height / 1e6
    with tempfile.TemporaryDirectory(prefix="vs-gfpgan-") as folder:
        root = Path(folder)
        weights = root / "weights"
        weights.mkdir()
        make_weights(weights, args.shared)
        # one unmeasured facefix run exports GFP-GAN and ParseNet to ONNX (cached, as after a
        # user's first run): the runs below measure steady use, not the one-time export
        warmup = root / "warmup"
        warmup.mkdir()
        first = run(sys.executable, FACEFIX, str(weights), photos, str(warmup), "parse")
        print(f"# facefix warm-up (ONNX exports): {first['load']:.1f} s to load, peak {first['peak_mib']:.0f} MiB",
              file=sys.stderr, flush=True)
        results: dict[str, list[dict]] = {"reference": [], "parse": [], "soft": []}
        for repeat in range(args.repeats):
            for label in results:  # alternated: reference, facefix matched, facefix default, again
                out = root / f"{label}-{repeat}"
                out.mkdir()
                if label == "reference":
                    results[label].append(run(args.reference_python, REFERENCE, str(weights), photos, str(out)))
                else:
                    results[label].append(run(sys.executable, FACEFIX, str(weights), photos, str(out), label))
                print(f"# {label} run {repeat + 1}: {results[label][-1]['wall']:.1f} s", file=sys.stderr, flush=True)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs; {len(PHOTOS)} photos of ../shared/photos; "
          f"{args.repeats} alternated runs each; --upscale 2")
    print(f"# {megapixels:.2f} megapixels in all")
    print("| run | wall s, median (range) | faces | peak RSS MiB | detect s / MP | stages, median s |")
    print("|---|---:|---:|---:|---:|---|")
    print(summary("GFPGAN 1.3.8 `GFPGANer.enhance` (ParseNet paste)", results["reference"], megapixels))
    print(summary("facefix restore, matched (`--blender parse --parser parsenet`)", results["parse"], megapixels))
    print(summary("facefix restore, defaults (soft paste)", results["soft"], megapixels))


if __name__ == "__main__":
    main()
