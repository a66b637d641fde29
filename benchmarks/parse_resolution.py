"""What parsing a face below the parser's own size costs the paste mask, on real faces.

    python benchmarks/parse_resolution.py [--faces 100] [--shares 1,0.75,0.5,0.375]

The parse blender pastes each face inside ``parse_mask``: the face's own classes,
feathered by two 101 px Gaussians (sigma 11, scaled to the face). facefix parses a face
that is only pasted (not fed to the restorer) at half its paste size, never
below half the parser's own size (``facefix.parsing.paste_parse_size``). This measures
that choice with the only real parser weights here, the small U-Net of ../shared/weights
(own size 256), on the real faces and CelebAMask-HQ masks of ../shared/faces/train512:

- IoU of the pasted classes against the ground-truth mask, parsed at each share of the
  parser's size (1 = its own size): how much the labels themselves lose; and the mean
  distance of the feathered paste mask from the one the ground truth gives, in 1/255;
- the feathered 512 px paste mask against the one from the parser's own size: mean,
  99.9th percentile and largest difference, in 1/255 (one level of a face pasted over a
  background 255 levels apart; real seams are a fraction of that);
- the same for the ground truth itself reduced to each share and brought back (nearest):
  what the resolution alone does, with no network in the way.
"""

from __future__ import annotations

import argparse
import platform
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from facefix.blending import PARSE_KEEP_CLASSES, parse_mask  # noqa: E402
from unet_parser_plugin import UNetParser  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--faces", type=int, default=100)
    parser.add_argument("--shares", default="1,0.75,0.5,0.375")
    args = parser.parse_args()
    folder = args.shared / "faces" / "train512"
    names = sorted(path.stem for path in (folder / "masks").iterdir())[: args.faces]
    faces = np.stack([cv2.imread(str(folder / "images" / f"{name}.jpg")) for name in names])
    truth = np.stack([np.asarray(Image.open(folder / "masks" / f"{name}.png")) for name in names])
    unet = UNetParser(args.shared / "weights" / "parsing_unet_lightweight.pth")
    shares = [float(value) for value in args.shares.split(",")]
    masks: dict[str, dict[float, np.ndarray]] = {"parsed": {}, "truth": {}}
    rows = []
    ideal = np.stack([parse_mask(item, 512) for item in truth])
    for share in shares:
        size = int(round(unet.network_size * share / 4)) * 4
        labels = unet.parse(faces, None if share == 1 else size)
        kept, wanted = np.isin(labels, PARSE_KEEP_CLASSES), np.isin(truth, PARSE_KEEP_CLASSES)
        iou = float(np.mean([(a & b).sum() / max(1, (a | b).sum()) for a, b in zip(kept, wanted)]))
        masks["parsed"][share] = np.stack([parse_mask(item, 512) for item in labels])
        reduced = np.stack([cv2.resize(cv2.resize(item, (size, size), interpolation=cv2.INTER_NEAREST), (512, 512),
                                       interpolation=cv2.INTER_NEAREST) for item in truth])
        masks["truth"][share] = np.stack([parse_mask(item, 512) for item in reduced])
        rows.append((share, size, iou, float(np.abs(masks["parsed"][share] - ideal).mean() * 255)))
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs; {len(names)} faces of ../shared/faces/train512; "
          f"U-Net parser, own size {unet.network_size}")
    print("| share of the parser's size | parsed at px | IoU of pasted classes vs truth | paste mask vs truth's, "
          "mean 1/255 | paste mask vs own size: mean / 99.9 % / max, 1/255 | truth reduced alike: mean / 99.9 % / max |")
    print("|---:|---:|---:|---:|---|---|")
    for share, size, iou, distance in rows:
        cells = []
        for kind in ("parsed", "truth"):
            difference = np.abs(masks[kind][share] - masks[kind][shares[0]]) * 255
            cells.append(f"{difference.mean():.2f} / {np.percentile(difference, 99.9):.1f} / {difference.max():.1f}")
        print(f"| {share:g} | {size} | {iou:.3f} | {distance:.2f} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
