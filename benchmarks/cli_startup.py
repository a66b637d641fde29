"""How long `facefix --help` takes, and which heavy modules it imports.

    python benchmarks/cli_startup.py [--runs 10] [--command "--help"]

Runs the command in fresh processes (median and best wall time of ``--runs``), then
once under ``python -X importtime`` to list the slowest top-level imports and whether
torch, cv2 or onnxruntime were imported at all. A command that lists the CLI should
load neither torch nor a network: plugins register cards and factories, not modules.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "cv2", "onnxruntime", "numpy", "PIL", "facexlib", "onnx")


def wall_times(arguments: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "facefix", *arguments], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def import_report(arguments: list[str]) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """Cumulative import time (s) of each heavy package imported, and the slowest top-level imports."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "facefix", *arguments], check=True,
                            capture_output=True, text=True)
    heavy: dict[str, float] = {}
    top: list[tuple[float, str]] = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative_us, name = line.split("|")
        module = name.strip()
        seconds = int(cumulative_us) / 1e6
        indent = len(name) - len(name.lstrip())
        if module in HEAVY:
            heavy[module] = max(heavy.get(module, 0.0), seconds)
        if indent <= 1:
            top.append((seconds, module))
    return heavy, sorted(top, reverse=True)[:8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--command", default="--help", help="arguments after `facefix` (default: --help)")
    args = parser.parse_args()
    arguments = shlex.split(args.command)
    times = wall_times(arguments, args.runs)
    heavy, top = import_report(arguments)
    print(f"facefix {args.command}: median {statistics.median(times):.2f} s, best {min(times):.2f} s "
          f"over {args.runs} runs")
    for package in HEAVY:
        state = f"imported ({heavy[package]:.2f} s cumulative)" if package in heavy else "not imported"
        print(f"  {package:<12} {state}")
    print("slowest top-level imports:")
    for seconds, module in top:
        print(f"  {seconds:6.3f} s  {module}")


if __name__ == "__main__":
    main()
