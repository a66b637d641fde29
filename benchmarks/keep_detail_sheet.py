"""The first face of a photo as pasted back three ways, side by side, for the README.

    python benchmarks/keep_detail_sheet.py PHOTO -o docs/images/keep_detail.jpg [--height 384]

``passthrough`` (the original), ``compact --no-keep-detail`` (the network's 512 px face
enlarged to the paste size) and ``compact`` (the default: the face keeps its own detail),
each cropped to the first detected face's box and labelled with its sharpness
(Laplacian variance of the crop).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facefix import compose

WAYS = (("passthrough", ["--restorer", "passthrough"]), ("compact --no-keep-detail",
        ["--restorer", "compact", "--no-keep-detail"]), ("compact (default)", ["--restorer", "compact"]))


def caption(text: str, width: int, height: int = 28) -> np.ndarray:
    """A white strip holding ``text``, shrunk to fit ``width``: labels drawn on the faces
    would hide what the sheet is there to show."""
    strip = np.full((height, width, 3), 255, np.uint8)
    scale = 0.55
    text_width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
    scale *= min(1.0, (width - 12) / text_width)
    cv2.putText(strip, text, (6, height - 9), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--height", type=int, default=384)
    args = parser.parse_args()
    image = cv2.imread(str(args.photo))
    detector = compose.assemble(compose.ComponentSelection(restorer="passthrough", blender="soft"),
                                quiet=True).get("detector")
    x0, y0, x1, y1 = (int(value) for value in detector.detect(image)[0].box)
    panels = []
    with tempfile.TemporaryDirectory() as folder:
        for index, (label, options) in enumerate(WAYS):
            out = Path(folder) / str(index)
            subprocess.run([sys.executable, "-m", "facefix", "restore", str(args.photo), str(out), "--ext", "png",
                            "--quiet", *options], check=True)
            crop = cv2.imread(str(out / f"{args.photo.stem}.png"))[y0:y1, x0:x1]
            sharpness = cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
            scale = args.height / crop.shape[0]
            panel = cv2.resize(crop, (round(crop.shape[1] * scale), args.height), interpolation=cv2.INTER_AREA)
            text = f"{label}: {sharpness:.0f}"
            panels.append(np.concatenate([caption(text, panel.shape[1]), panel]))
            print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), np.concatenate(panels, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"{args.output}: {len(panels)} panels")


if __name__ == "__main__":
    main()
