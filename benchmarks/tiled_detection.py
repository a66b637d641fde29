"""What detecting in full-resolution tiles costs, and what it finds: a group photo's faces
placed at their own scale in frames of 12 to 48 MP, detected by the bundled RetinaFace on
the 2048 px copy alone and with the tiles.

    python benchmarks/tiled_detection.py [--photo ../shared/photos/insightface_t1.jpg] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from facefix import plugins
from facefix.components import ComponentContext
from facefix.pipeline import detect
from facefix.weights import WeightsResolver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=Path("../shared/photos/insightface_t1.jpg"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    resolver = WeightsResolver(allow_download=False, progress=False)
    detector = plugins.get_component("detector", "retinaface_bundled").build(
        ComponentContext(resolve_weights=resolver.resolve))
    photo = cv2.resize(cv2.imread(str(args.photo)), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    alone = len(detector.detect(photo))
    print(f"{args.photo.name} at half size: {alone} faces alone\n")
    print("| frame | MP | faces, copy only | faces, copy + tiles | s, copy only | s, copy + tiles | s per MP added |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for width, height in ((4000, 3000), (6000, 4000), (8000, 6000)):
        frame = cv2.GaussianBlur(rng.integers(60, 200, (height, width, 3), np.uint8), (0, 0), 3)
        top, left = height // 3, width // 2
        frame[top:top + photo.shape[0], left:left + photo.shape[1]] = photo
        timings = {}
        counts = {}
        for tiled in (False, True):
            detect(detector, frame, tiled=tiled)  # warm-up
            started = time.perf_counter()
            for _ in range(args.repeats):
                counts[tiled] = len(detect(detector, frame, tiled=tiled))
            timings[tiled] = (time.perf_counter() - started) / args.repeats
        megapixels = width * height / 1e6
        print(f"| {width}x{height} | {megapixels:.0f} | {counts[False]} | {counts[True]} | {timings[False]:.2f} | "
              f"{timings[True]:.2f} | {(timings[True] - timings[False]) / megapixels:.3f} |")


if __name__ == "__main__":
    main()
