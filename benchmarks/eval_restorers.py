"""Score restorers on one fixed degraded set, through the user-facing commands only.

    python benchmarks/eval_restorers.py --faces ../shared/faces/val512/images --work runs/eval \\
        [--preset gfpgan] [--seed 0] [--size 512] [--low-resolution PX] \\
        --restorer passthrough --restorer compact \\
        --restorer "gfpgan 128 px=gfpgan:runs/gfpgan_cpu128_phase2/final.pth"

Super-resolvers: ``--low-resolution 8 --size 128 --baseline "bicubic x16"`` gives each
restorer the faces shrunk to 8 px (``facefix degrade --preset none --size 8``: area), the
targets at 128 px (``--size 128``), and as the baseline row those same 8 px faces enlarged
bicubically to 128 px (``facefix degrade --size 128`` of them). Or ``--preset none
--degrade-config benchmarks/configs/bicubic_x16.json``: the inputs are the faces shrunk 16
times and enlarged back bicubically (also the baseline row), which ``facefix restore
--aligned`` shrinks again to the restorer's input size. ``--restore-args "LABEL=--parser
psfrgan --parser-weights FILE"`` gives one row's restore more options.

It runs ``facefix degrade`` once (``--save-hq`` keeps the exact targets), then for each
``--restorer [LABEL=]NAME[:WEIGHTS]`` ``facefix restore --aligned`` and ``facefix eval
--json``, and prints a Markdown table: mean PSNR (and its change from the degraded
input), SSIM, LPIPS, NIQE, ids, deg and fd_sface (those whose weights ``--model-dir``
holds), and how many faces score above their degraded input in PSNR.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path


def facefix(*args: str) -> str:
    command = [sys.executable, "-m", "facefix", *args]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr}")
    return completed.stdout


def parse_restorer(text: str) -> tuple[str, str, str | None]:
    label, _, spec = text.rpartition("=")
    name, _, weights = spec.partition(":")
    return label or spec, name, weights or None


COLUMNS = (("ssim", "SSIM", 4), ("ms_ssim", "MS-SSIM", 4), ("lpips", "LPIPS", 4), ("niqe", "NIQE", 2),
           ("ids", "ids", 4), ("deg", "deg", 1), ("fd_sface", "fd_sface", 3))


def scores(predictions: Path, targets: Path, model_dir: str | None) -> dict:
    extra = ["--model-dir", model_dir] if model_dir else []
    return json.loads(facefix("eval", str(predictions), str(targets), "--json", "--quiet", *extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--preset", default="gfpgan")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--size", default="512")
    parser.add_argument("--degrade-config", help="JSON overrides of the preset (facefix degrade --config)")
    parser.add_argument("--baseline", default="degraded input", help="label of the inputs' own row")
    parser.add_argument("--low-resolution", metavar="PX",
                        help="super-resolvers: inputs shrunk to PX (area), baseline their bicubic enlargement to --size")
    parser.add_argument("--restorer", action="append", default=[], help="[LABEL=]NAME[:WEIGHTS]; repeat")
    parser.add_argument("--restore-args", action="append", default=[], metavar="LABEL=ARGS",
                        help="more `facefix restore` options for one restorer's row, e.g. "
                             "'CFGPFSSR=--parser psfrgan --parser-weights FILE'; repeat")
    parser.add_argument("--model-dir", help="weights of the metrics (LPIPS, NIQE, SFace) and of the restorers")
    args = parser.parse_args()

    degraded, targets = args.work / "degraded", args.work / "targets"
    inputs = degraded
    if args.low_resolution:
        inputs = args.work / f"low{args.low_resolution}"
        if not degraded.exists():
            facefix("degrade", str(args.faces), str(targets), "--preset", "none", "--size", args.size, "--quiet")
            facefix("degrade", str(args.faces), str(inputs), "--preset", "none", "--size", args.low_resolution,
                    "--quiet")
            facefix("degrade", str(inputs), str(degraded), "--preset", "none", "--size", args.size, "--quiet")
    elif not degraded.exists():
        extra = ["--config", args.degrade_config] if args.degrade_config else []
        facefix("degrade", str(args.faces), str(degraded), "--preset", args.preset, "--seed", args.seed,
                "--size", args.size, "--save-hq", str(targets), "--quiet", *extra)
    baseline = scores(degraded, targets, args.model_dir)
    before = {row["file"].rsplit(".", 1)[0]: row["psnr"] for row in baseline["images"]}
    rows = [(args.baseline, baseline, None)]
    more_args = {}
    for text in args.restore_args:
        label, _, options = text.partition("=")
        more_args[label] = shlex.split(options)
    for text in args.restorer:
        label, name, weights = parse_restorer(text)
        out = args.work / label.replace(" ", "_").replace("/", "_")
        command = ["restore", str(inputs), str(out), "--aligned", "--restorer", name, "--quiet"]
        if weights:
            command += ["--weights", weights]
        if args.model_dir:
            command += ["--model-dir", args.model_dir]
        facefix(*command, *more_args.get(label, []))
        result = scores(out, targets, args.model_dir)
        better = sum(row["psnr"] > before[row["file"].rsplit(".", 1)[0]] for row in result["images"])
        rows.append((label, result, better))

    base = baseline["mean"]["psnr"]
    overrides = f" --config {args.degrade_config}" if args.degrade_config else ""
    if args.low_resolution:
        print(f"{baseline['count']} faces of {args.faces} at {args.low_resolution} px (`facefix degrade --preset none "
              f"--size {args.low_resolution}`), scored at {args.size} px\n")
    else:
        print(f"{baseline['count']} faces of {args.faces}, `facefix degrade --preset {args.preset} --seed {args.seed} "
              f"--size {args.size}{overrides}`\n")
    columns = [column for column in COLUMNS if column[0] in baseline["mean"]]
    print("| | mean PSNR | change | " + " | ".join(title for _, title, _ in columns) + " | faces above their input |")
    print("|---|---:|---:|" + "---:|" * len(columns) + "---:|")
    for label, result, better in rows:
        mean = result["mean"]
        change = "" if better is None else f"{mean['psnr'] - base:+.2f} dB"
        count = "" if better is None else f"{better}/{result['count']}"
        cells = " | ".join(f"{mean[key]:.{digits}f}" for key, _, digits in columns)
        print(f"| {label} | {mean['psnr']:.2f} dB | {change} | {cells} | {count} |")


if __name__ == "__main__":
    main()
