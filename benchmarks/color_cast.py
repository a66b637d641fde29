"""How far restored faces drift in colour from their originals, and what matching it costs.

    python benchmarks/color_cast.py [PHOTO_FOLDER] [-- RESTORE OPTIONS]

Restores every photo in the folder (default ``../shared/photos``) plus two variants of
each, its grey (stored as RGB) and a green-tinted scan (G x1.12, R and B x0.9), with
``facefix restore --save-faces`` (the given options; none: the defaults). On each aligned
face's centre (the template's cheeks, eyes, nose and mouth) it measures the restored
face's Lab mean shift against the original crop (dL, da, db), its largest chroma, and
its sharpness (Laplacian variance) under three colour treatments: none, ``full`` (Lab
mean and std, the old ``--color-match``) and ``chroma`` (a/b mean and std, lightness
mean only: the restorer's contrast is kept). Prints one row per treatment and variant.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facefix.blending import bgr_to_lab, match_color

CENTRE = slice(160, 400), slice(128, 384)  # of a 512 crop: the inner face, no hair or background


def tinted(pixels: np.ndarray) -> np.ndarray:
    gains = np.array([0.9, 1.12, 0.9], np.float32)  # B, G, R
    return np.clip(pixels.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def greyed(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def measure(face: np.ndarray, original: np.ndarray) -> tuple[float, float, float, float, float]:
    size = 512
    face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    original = cv2.resize(original, (size, size), interpolation=cv2.INTER_AREA)
    face_lab = bgr_to_lab(np.clip(face / 255.0, 0, 1))[CENTRE]
    orig_lab = bgr_to_lab(np.clip(original / 255.0, 0, 1))[CENTRE]
    shift = face_lab.reshape(-1, 3).mean(0) - orig_lab.reshape(-1, 3).mean(0)
    chroma = float(np.hypot(face_lab[..., 1], face_lab[..., 2]).max())
    grey = cv2.cvtColor(np.clip(face, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F)[CENTRE].var())
    return float(shift[0]), float(shift[1]), float(shift[2]), chroma, sharpness


def main() -> None:
    arguments = sys.argv[1:]
    extra: list[str] = []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, extra = arguments[:split], arguments[split + 1:]
    folder = Path(arguments[0]) if arguments else Path(__file__).resolve().parents[2] / "shared" / "photos"
    variants = {"photo": lambda p: p, "grey": greyed, "green": tinted}
    with tempfile.TemporaryDirectory() as work:
        inputs = Path(work) / "in"
        inputs.mkdir()
        for path in sorted(folder.iterdir()):
            pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if pixels is None:
                continue
            for name, make in variants.items():
                cv2.imwrite(str(inputs / f"{name}__{path.stem}.png"), make(pixels))
        out = Path(work) / "out"
        subprocess.run([sys.executable, "-m", "facefix", "restore", str(inputs), str(out), "--save-faces",
                        "--quiet", *extra], check=True)
        rows: dict[tuple[str, str], list[tuple[float, ...]]] = {}
        for restored_path in sorted((out / "restored_faces").glob("*.png")):
            variant = restored_path.name.split("__")[0]
            restored = cv2.imread(str(restored_path)).astype(np.float32)
            original = cv2.imread(str(out / "cropped_faces" / restored_path.name)).astype(np.float32)
            for treatment in ("none", "full", "chroma"):
                face = restored if treatment == "none" else match_color(
                    restored, original, lightness_spread=treatment == "full")
                rows.setdefault((variant, treatment), []).append(measure(face, original))
    print(f"{'variant':8} {'colour':7} {'faces':>5} {'|dL|':>6} {'|da|':>6} {'|db|':>6} {'max da/db':>10} "
          f"{'chroma max':>10} {'sharpness':>10}")
    for (variant, treatment), values in rows.items():
        table = np.array(values)
        worst = np.abs(table[:, 1:3]).max()
        print(f"{variant:8} {treatment:7} {len(table):5d} {np.abs(table[:, 0]).mean():6.2f} "
              f"{np.abs(table[:, 1]).mean():6.2f} {np.abs(table[:, 2]).mean():6.2f} {worst:10.2f} "
              f"{table[:, 3].max():10.1f} {np.median(table[:, 4]):10.1f}")


if __name__ == "__main__":
    main()
