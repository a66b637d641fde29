"""A side-by-side sheet of aligned faces before and after restoration, for the README.

    python benchmarks/side_by_side.py PHOTO [PHOTO ...] -o docs/images/side_by_side.jpg \\
        [--height 256] [--max-faces 6] [-- RESTORE OPTIONS]

Runs ``facefix restore PHOTOS --save-faces`` with the given options (none: the
defaults), then stacks the ``cmp/`` pairs it writes (aligned input | restored face),
each scaled to ``--height``, into one JPEG.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    arguments = sys.argv[1:]
    extra = []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, extra = arguments[:split], arguments[split + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--max-faces", type=int, default=6)
    args = parser.parse_args(arguments)

    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        for photo in args.photos:
            (inputs / photo.name).symlink_to(photo.resolve())
        out = Path(folder) / "out"
        command = [sys.executable, "-m", "facefix", "restore", str(inputs), str(out), "--save-faces", "--quiet", *extra]
        subprocess.run(command, check=True)
        pairs = sorted((out / "cmp").glob("*.png"))[: args.max_faces]
        if not pairs:
            raise SystemExit("no face was restored")
        rows = []
        for path in pairs:
            pair = cv2.imread(str(path))
            scale = args.height / pair.shape[0]
            rows.append(cv2.resize(pair, (round(pair.shape[1] * scale), args.height), interpolation=cv2.INTER_AREA))
    sheet = np.concatenate(rows, axis=0)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"{args.output}: {len(rows)} faces, input | restored")


if __name__ == "__main__":
    main()
