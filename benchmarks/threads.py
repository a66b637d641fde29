"""Detector time by thread count, on an idle machine and beside a busy process.

    python benchmarks/threads.py [--detector retinaface_mobile0.25] [--runs 10]

Times ``--detector`` (facexlib's MobileNet-0.25 in PyTorch by default, from
``../shared/weights``) on ``../shared/photos/insightface_t1.jpg`` with facefix's default
thread count (the CPUs this process may use) and with each count from 1 to the CPU count,
first alone, then while another process keeps one core busy (``--threads`` is for that).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from pathlib import Path

import cv2

from facefix import compose
from facefix.threads import available_cpus, use_threads


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def median_seconds(detector, image, runs: int) -> float:
    detector.detect(image)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detector.detect(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="retinaface_mobile0.25")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    image = cv2.imread(str(shared / "photos" / "insightface_t1.jpg"))
    selection = compose.ComponentSelection(restorer="passthrough", blender="soft", detector=args.detector,
                                           model_dir=shared / "weights")
    detector = compose.assemble(selection, quiet=True).get("detector")
    counts = [0, *range(1, available_cpus() + 1)]
    for load in (False, True):
        busy = multiprocessing.Process(target=spin, args=(3600,), daemon=True) if load else None
        if busy:
            busy.start()
        for count in counts:
            chosen = use_threads(count)
            seconds = median_seconds(detector, image, args.runs)
            label = f"default ({chosen})" if count == 0 else str(count)
            print(f"{'one core busy' if load else 'idle':14} threads {label:12} {seconds * 1000:7.1f} ms per image")
        if busy:
            busy.terminate()


if __name__ == "__main__":
    main()
