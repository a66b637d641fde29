"""GFP-GAN v1.4 through every restorer backend: time to first face in a new process, seconds
per face, peak RSS, and the error against eager fp32 in levels.

    python benchmarks/compiled_restorer.py [--faces 4] [--precisions fp32,bf16]

Each configuration runs in two fresh processes, as two invocations of ``facefix restore``
would: the first builds whatever the backend caches (the ONNX export, the AOTInductor
package), the second finds it. GFP-GAN v1.4's clean architecture has seeded random weights
(the released file isn't here; time doesn't depend on the values, and the error is that of
the arithmetic, measured on the network's real output range). Faces: ``--faces`` real
aligned faces of ``../shared/faces/val512``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RUN = r"""
import json, resource, sys, time
start = time.perf_counter()
from pathlib import Path
import cv2, numpy as np
from facefix import compose
weights, faces_dir, count, backend, precision, out = sys.argv[1:7]
faces = np.stack([cv2.imread(str(p)) for p in sorted(Path(faces_dir).iterdir())[:int(count)]])
selection = compose.ComponentSelection(restorer="gfpgan", weights=Path(weights), backend=backend,
                                       precision=precision, device="cpu", blender="soft")
assembly = compose.assemble(selection, quiet=True)
restorer = assembly.get("restorer")
how = next(text for text in assembly.chosen if text.startswith("restorer"))
ready = time.perf_counter() - start
first = time.perf_counter()
outputs = [restorer.restore(faces[:1])]
first = time.perf_counter() - first
rest = time.perf_counter()
outputs += [restorer.restore(faces[index:index + 1]) for index in range(1, len(faces))]
per_face = (time.perf_counter() - rest) / max(1, len(faces) - 1)
np.save(out, np.concatenate(outputs))
print(json.dumps({"how": how, "ready": ready, "first": first, "per_face": per_face,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CONFIGS = (("torch", "fp32"), ("onnx", "fp32"), ("compile", "fp32"), ("torch", "bf16"), ("compile", "bf16"))


def run(home: Path, *args: str) -> dict:
    environment = dict(os.environ, FACEFIX_HOME=str(home))
    result = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise SystemExit(f"run failed ({args}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    import torch

    from facefix_plugins.gfpgan.arch import official_gfpgan

    precisions = args.precisions.split(",")
    faces_dir = args.shared / "faces" / "val512" / "images"
    with tempfile.TemporaryDirectory(prefix="compiled-") as folder:
        root = Path(folder)
        weights = root / "GFPGANv1.4.pth"
        torch.manual_seed(0)
        torch.save({"params_ema": official_gfpgan("clean").state_dict()}, weights)
        rows, reference = [], None
        for backend, precision in CONFIGS:
            if precision not in precisions:
                continue
            home = root / f"home-{backend}"  # each backend's own cache, shared by its two processes
            first = run(home, str(weights), str(faces_dir), str(args.faces), backend, precision,
                        str(root / "first.npy"))
            second = run(home, str(weights), str(faces_dir), str(args.faces), backend, precision,
                         str(root / "second.npy"))
            output = np.load(root / "second.npy").astype(np.int16)
            if reference is None:
                reference = output  # eager fp32 comes first
            error = np.abs(output - reference)
            rows.append((second["how"], first, second, float(error.mean()), float(np.percentile(error, 99.9)),
                         int(error.max())))
            print(f"# {second['how']}: done", file=sys.stderr, flush=True)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; GFP-GAN v1.4 clean, "
          f"{args.faces} real 512 px faces, one at a time")
    print("| backend | 1st process: ready s | 2nd process: ready s | 1st face s | s / face | peak RSS MiB | "
          "error vs eager fp32, levels: mean / 99.9 % / max |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for how, first, second, mean, high, worst in rows:
        print(f"| {how} | {first['ready']:.1f} | {second['ready']:.1f} | {second['first']:.2f} | "
              f"{second['per_face']:.2f} | {second['peak_mib']:.0f} | {mean:.3f} / {high:.0f} / {worst} |")


if __name__ == "__main__":
    main()
