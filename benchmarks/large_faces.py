"""Faces larger than the restorer's crop: leave them alone, or restore them and keep their detail?

    python benchmarks/large_faces.py [PHOTO_FOLDER] [--min-box PX]

Takes the photos of the folder (default ``../shared/photos``) whose first face's box is at
least ``--min-box`` px on its shorter side (default 300: such a face is pasted larger than
a 512 px crop), and four versions of each at full resolution: the photo itself and three
degradations a large face meets (camera noise and JPEG; defocus; a small face enlarged 4x).
Each goes through ``facefix restore`` three ways: ``--max-face-size`` just under the box
(the face is left exactly as it is), ``compact --no-keep-detail`` (the
network's 512 px face enlarged) and ``compact`` (the default: restored, with the face's own
detail above the crop kept as far as it holds any). On the face's box it measures the PSNR
and LPIPS (AlexNet, ``--lpips-weights``, default ``../shared/weights``) against the clean
photo, and the sharpness (Laplacian variance) as a share of the clean photo's. Prints one
row per version and way, averaged over the photos.
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
from facefix.metrics.lpips import LPIPS
from facefix.metrics.pixel import psnr


def ways(min_box: int) -> dict[str, list[str]]:
    return {
        f"compact --max-face-size {min_box - 1} (left alone)": ["--restorer", "compact", "--max-face-size",
                                                                 str(min_box - 1)],
        "compact --no-keep-detail": ["--restorer", "compact", "--no-keep-detail"],
        "compact (default: --keep-detail)": ["--restorer", "compact"],
    }


def noisy_jpeg(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = pixels.astype(np.float32) + rng.normal(0.0, 8.0, pixels.shape)
    _, data = cv2.imencode(".jpg", np.clip(noisy, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 40])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def defocused(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(pixels, (0, 0), 3.0)


def enlarged(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = pixels.shape[:2]
    small = cv2.resize(pixels, (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


VERSIONS = {"clean": None, "noise 8 + JPEG 40": noisy_jpeg, "defocus (blur 3)": defocused,
            "4x enlarged": enlarged}


def sharpness(pixels: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[2] / "shared" / "photos")
    parser.add_argument("--min-box", type=int, default=300)
    parser.add_argument("--lpips-weights", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "weights" / "alexnet_imagenet_features.pth")
    args = parser.parse_args()
    lpips = LPIPS("lpips", args.lpips_weights)
    detector = compose.assemble(compose.ComponentSelection(restorer="passthrough", blender="soft"),
                                quiet=True).get("detector")
    chosen: dict[str, tuple[np.ndarray, tuple[slice, slice]]] = {}
    for path in sorted(args.photos.iterdir()):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        faces = detector.detect(image) if image is not None else []
        if not faces:
            continue
        x0, y0, x1, y1 = (int(value) for value in faces[0].box)
        if min(x1 - x0, y1 - y0) >= args.min_box:
            chosen[path.stem] = image, (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
    print(f"{len(chosen)} photos with a face box of {args.min_box} px or more: {', '.join(chosen)}")
    rng = np.random.default_rng(0)
    print("| version | way | PSNR on the face, dB | LPIPS | sharpness / clean photo's |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for version, degrade in VERSIONS.items():
            inputs = Path(work) / version.replace(" ", "_") / "in"
            inputs.mkdir(parents=True)
            for stem, (image, _) in chosen.items():
                cv2.imwrite(str(inputs / f"{stem}.png"), image if degrade is None else degrade(image, rng))
            for index, (way, options) in enumerate(ways(args.min_box).items()):
                out = inputs.parent / str(index)
                subprocess.run([sys.executable, "-m", "facefix", "restore", str(inputs), str(out), "--quiet",
                                *options], check=True)
                scores, distances, shares = [], [], []
                for stem, (image, box) in chosen.items():
                    restored = cv2.imread(str(out / f"{stem}.png"))[box]
                    scores.append(psnr(restored, image[box]))
                    distances.append(lpips(restored, image[box]))
                    shares.append(sharpness(restored) / sharpness(image[box]))
                print(f"| {version} | {way} | {np.mean(scores):.2f} | {np.mean(distances):.3f} | {np.mean(shares):.2f} |", flush=True)


if __name__ == "__main__":
    main()
