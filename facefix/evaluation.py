"""``facefix eval``'s work: score restored faces against their ground truths.

Files are paired by name stem. Every metric is named (``--metrics``); by default all
whose weights are on disk run. Full-reference metrics compare each pair; NIQE needs no
reference and scores the predictions; ``fd_sface`` compares the two sets as wholes.
When a prediction's size differs from its ground truth's, the larger of the two is
shrunk to the other's size (area interpolation): a network trained at a smaller size is
scored at its own resolution, and one that upsamples at the ground truth's.

PSNR, SSIM and MS-SSIM compare RGB by default (every channel alike), as basicsr's
scripts and the face-restoration papers built on them report; ``y_channel`` compares
MATLAB's ``rgb2gray`` luminance instead, the convention of the reference IQA toolbox
and of MATLAB's own SSIM (on TID2013 it reproduces their SSIM to four digits).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facefix.errors import FacefixError, WeightsError
from facefix.weights import WeightsResolver, get_entry


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "pair": prediction vs ground truth; "prediction": no reference; "set": the sets as wholes
    weights: str | None  # the weights registry entry it needs
    better: str  # "higher" or "lower"
    description: str


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("psnr", "pair", None, "higher", "peak signal-to-noise ratio, dB"),
    Metric("ssim", "pair", None, "higher", "structural similarity (Gaussian 11x11, σ 1.5)"),
    Metric("ms_ssim", "pair", None, "higher", "multi-scale SSIM (5 scales)"),
    Metric("lpips", "pair", "alexnet", "lower", "LPIPS v0.1 on AlexNet"),
    Metric("lpips_vgg", "pair", "vgg16", "lower", "LPIPS v0.1 on VGG16"),
    Metric("niqe", "prediction", "niqe", "lower", "NIQE of the prediction (no reference)"),
    Metric("ids", "pair", "sface", "higher", "cosine similarity of SFace identity embeddings"),
    Metric("deg", "pair", "sface", "lower", "angle between SFace embeddings, degrees"),
    Metric("fd_sface", "set", "sface", "lower", "Fréchet distance of the sets' SFace embeddings (not FID)"),
)}


def default_metrics(resolver: WeightsResolver) -> list[str]:
    """Every metric whose weights are on disk (never downloads)."""
    return [name for name, metric in METRICS.items()
            if metric.weights is None or resolver.find_local(get_entry(metric.weights)) is not None]


def skipped_metrics(chosen: list[str]) -> dict[str, str]:
    """The metrics left out of ``chosen``, each with the weights entry it lacks."""
    return {name: metric.weights or "" for name, metric in METRICS.items() if name not in chosen}


def parse_metrics(text: str | None, resolver: WeightsResolver) -> list[str]:
    """``--metrics a,b,c`` as a list in the table's order; None: :func:`default_metrics`."""
    if text is None:
        return default_metrics(resolver)
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise FacefixError(f"unknown metric {', '.join(unknown) or '(none given)'}; metrics: {', '.join(METRICS)}")
    return [name for name in METRICS if name in names]


class Scorers:
    """The networks the chosen metrics need, each built once."""

    def __init__(self, metrics: list[str], resolver: WeightsResolver, device: str = "cpu"):
        self.metrics = metrics
        self.lpips: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}
        self.niqe: Callable[[np.ndarray], float] | None = None
        self.sface: Callable[[np.ndarray], np.ndarray] | None = None
        for name in metrics:
            metric = METRICS[name]
            if metric.weights is None:
                continue
            try:
                path = resolver.resolve(metric.weights)
            except WeightsError as error:
                raise WeightsError(f"--metrics {name}: {error}") from None
            if name in ("lpips", "lpips_vgg"):
                from facefix.metrics.lpips import LPIPS

                self.lpips[name] = LPIPS(name, path, device)
            elif name == "niqe":
                from facefix.metrics.niqe import NIQE

                self.niqe = NIQE(path)
            elif self.sface is None:  # ids, deg, fd_sface share one network
                from facefix.metrics.identity import SFaceEmbedder

                self.sface = SFaceEmbedder(path, device)


def _pairs(predictions: Path, ground_truth: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    from facefix.image_io import find_images

    truth = {path.stem: path for path, _ in find_images([ground_truth], recursive=False)}
    pairs, unmatched = [], []
    for path, _ in find_images([predictions], recursive=False):
        if path.stem in truth:
            pairs.append((path, truth[path.stem]))
        else:
            unmatched.append(path.name)
    return pairs, unmatched


def evaluate(predictions: Path, ground_truth: Path, metrics: list[str] | None = None, *,
             resolver: WeightsResolver | None = None, device: str = "cpu", y_channel: bool = False,
             parser: Any | None = None, masks: Path | None = None, quiet: bool = True) -> dict[str, Any]:
    """Scores of every prediction with a ground truth, their means, and what was done."""
    import cv2
    from tqdm import tqdm

    from facefix.image_io import read_image
    from facefix.metrics.identity import cosine, degrees, frechet_distance
    from facefix.metrics.parsing import confusion_matrix, mean_iou
    from facefix.metrics.pixel import luminance, ms_ssim, psnr, ssim
    from facefix.training.data import read_labels

    resolver = resolver if resolver is not None else WeightsResolver(progress=not quiet)
    metrics = list(METRICS)[:3] if metrics is None else metrics
    pairs, unmatched = _pairs(predictions, ground_truth)
    if not pairs:
        raise FacefixError(f"no file in {predictions} has a ground truth of the same name in {ground_truth}")
    scorers = Scorers(metrics, resolver, device)
    rows, confusion, resized, shrunk = [], np.zeros((19, 19), np.int64), 0, 0
    embeddings: dict[str, list[np.ndarray]] = {"prediction": [], "truth": []}
    failed: list[str] = []
    for predicted_path, truth_path in tqdm(pairs, desc="eval", unit="img", disable=quiet, file=sys.stderr):
        try:  # one unreadable file is named and left out; the others are still scored
            original = predicted = read_image(predicted_path).bgr8()
            truth = read_image(truth_path).bgr8()
        except FacefixError as error:
            failed.append(str(error))
            continue
        if predicted.shape[:2] != truth.shape[:2]:
            if predicted.shape[0] * predicted.shape[1] > truth.shape[0] * truth.shape[1]:
                predicted = cv2.resize(predicted, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_AREA)
                shrunk += 1
            else:
                truth = cv2.resize(truth, (predicted.shape[1], predicted.shape[0]), interpolation=cv2.INTER_AREA)
                resized += 1
        a, b = (luminance(predicted), luminance(truth)) if y_channel else (predicted, truth)
        row: dict[str, Any] = {"file": predicted_path.name}
        if "psnr" in metrics:
            row["psnr"] = psnr(a, b)
        if "ssim" in metrics:
            row["ssim"] = ssim(a, b)
        if "ms_ssim" in metrics:
            row["ms_ssim"] = ms_ssim(a, b) if min(a.shape[:2]) >= 16 else float("nan")
        for name, scorer in scorers.lpips.items():
            row[name] = scorer(predicted, truth)
        if scorers.niqe is not None:
            row["niqe"] = scorers.niqe(original) if min(original.shape[:2]) >= 96 else float("nan")
        if scorers.sface is not None:
            mine, theirs = scorers.sface(predicted), scorers.sface(truth)
            embeddings["prediction"].append(mine)
            embeddings["truth"].append(theirs)
            similarity = cosine(mine, theirs)
            if "ids" in metrics:
                row["ids"] = similarity
            if "deg" in metrics:
                row["deg"] = degrees(similarity)
        if parser is not None and masks is not None:
            mask_file = masks / f"{truth_path.stem}.png"
            if not mask_file.exists():
                raise FacefixError(f"{mask_file}: no ground-truth mask for {truth_path.name}")
            labels = read_labels(mask_file)
            predicted_labels = parser.parse(predicted[None])[0]
            labels = cv2.resize(labels, predicted_labels.shape[::-1], interpolation=cv2.INTER_NEAREST)
            image_confusion = confusion_matrix(predicted_labels, labels)
            row["miou"] = mean_iou(image_confusion)
            confusion += image_confusion
        rows.append(row)
    if not rows:
        raise FacefixError(f"no pair of {predictions} and {ground_truth} could be read: {failed[0]}")
    means = {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0] if key != "file"}
    if "miou" in means:
        means["miou"] = mean_iou(confusion)  # over every pixel of the set, not a mean of per-image values
    if "fd_sface" in metrics:
        means["fd_sface"] = frechet_distance(np.array(embeddings["prediction"]), np.array(embeddings["truth"]))
    return {"predictions": str(predictions), "ground_truth": str(ground_truth), "count": len(rows),
            "metrics": [name for name in metrics], "y_channel": y_channel, "mean": means, "images": rows,
            "unmatched": unmatched, "failed": failed, "ground_truth_resized": resized,
            "predictions_resized": shrunk}
