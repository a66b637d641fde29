"""Calibrate a detector's default confidence on real photos against two other detectors.

    python benchmarks/detector_threshold.py [--detector retinaface_bundled] [--floor 0.5]
        [--photos ../shared/photos [FOLDER ...]] [--model-dir ../shared/weights]

Runs ``--detector`` with its confidence lowered to ``--floor`` on every photo, and the
references (RetinaFace MobileNet-0.25 in PyTorch, facexlib's file, and YuNet, at their
own defaults) beside it. A detection both references miss (box IoU under 0.4 with every
reference box) counts as false. Prints each detection's score and verdict, then for each
candidate threshold the confirmed faces it would lose and the false ones it would keep,
per folder (give a folder of degraded copies too: blurred faces score lower).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facefix import compose


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detector(name: str, model_dir: Path, threshold: float | None):
    selection = compose.ComponentSelection(restorer="passthrough", blender="soft", detector=name,
                                           model_dir=model_dir, detection_threshold=threshold)
    return compose.assemble(selection, quiet=True).get("detector")


def main() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="retinaface_bundled")
    parser.add_argument("--references", nargs="+", default=["retinaface_mobile0.25", "yunet"])
    parser.add_argument("--floor", type=float, default=0.5)
    parser.add_argument("--photos", type=Path, nargs="+", default=[shared / "photos"])
    parser.add_argument("--model-dir", type=Path, default=shared / "weights")
    args = parser.parse_args()
    tested = detector(args.detector, args.model_dir, args.floor)
    references = [detector(name, args.model_dir, None) for name in args.references]
    scores: dict[Path, tuple[list[float], list[float]]] = {}
    for folder in args.photos:
        true_scores, false_scores = scores.setdefault(folder, ([], []))
        for path in sorted(folder.iterdir()):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            boxes = [np.asarray(face.box, np.float64) for ref in references for face in ref.detect(image)]
            for face in tested.detect(image):
                box = np.asarray(face.box, np.float64)
                confirmed = any(iou(box, other) >= 0.4 for other in boxes)
                (true_scores if confirmed else false_scores).append(face.score)
                side = min(box[2] - box[0], box[3] - box[1])
                print(f"{folder.name}/{path.name:48} score {face.score:.3f} side {side:5.0f} px  "
                      f"{'face' if confirmed else 'FALSE'}")
    print(f"\n{'threshold':>9}" + "".join(f"  {folder.name + ' lost/false':>24}" for folder in scores) + "  errors")
    for threshold in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99):
        row, errors = f"{threshold:9.2f}", 0
        for true_scores, false_scores in scores.values():
            lost = sum(score < threshold for score in true_scores)
            kept = sum(score >= threshold for score in false_scores)
            errors += lost + kept
            row += f"  {f'{lost} of {len(true_scores)} / {kept}':>24}"
        print(f"{row}  {errors:6d}")

if __name__ == "__main__":
    main()
