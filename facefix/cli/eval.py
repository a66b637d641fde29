"""``facefix eval PRED_DIR GT_DIR``: full-reference quality of restored faces.

Files are paired by name stem. PSNR, SSIM and MS-SSIM (facefix.training.metrics,
RGB, 8-bit) per pair and their means; with ``--masks DIR --parser NAME``, the mean IoU
over the 19 CelebAMask-HQ classes of the chosen parser's reading of each restored
face against the ground-truth mask. When a prediction's size differs from its ground
truth's, the larger of the two is shrunk to the other's size (area interpolation): a
network trained at a smaller size is scored at its own resolution, and one that
upsamples (passthrough's 1024 px crops) at the ground truth's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from facefix.cli.options import selection_options
from facefix.compose import ComponentSelection


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


def evaluate(predictions: Path, ground_truth: Path, parser: Any | None = None, masks: Path | None = None,
             quiet: bool = True) -> dict[str, Any]:
    """Scores of every prediction with a ground truth, and their means."""
    import cv2
    from tqdm import tqdm

    from facefix.errors import FacefixError
    from facefix.image_io import read_image
    from facefix.training.data import read_labels
    from facefix.training.metrics import confusion_matrix, mean_iou, ms_ssim, psnr, ssim

    pairs, unmatched = _pairs(predictions, ground_truth)
    if not pairs:
        raise FacefixError(f"no file in {predictions} has a ground truth of the same name in {ground_truth}")
    rows, confusion, resized, shrunk = [], np.zeros((19, 19), np.int64), 0, 0
    for predicted_path, truth_path in tqdm(pairs, desc="eval", unit="img", disable=quiet, file=sys.stderr):
        predicted, truth = read_image(predicted_path).bgr8(), read_image(truth_path).bgr8()
        if predicted.shape[:2] != truth.shape[:2]:
            if predicted.shape[0] * predicted.shape[1] > truth.shape[0] * truth.shape[1]:
                predicted = cv2.resize(predicted, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_AREA)
                shrunk += 1
            else:
                truth = cv2.resize(truth, (predicted.shape[1], predicted.shape[0]), interpolation=cv2.INTER_AREA)
                resized += 1
        row = {"file": predicted_path.name, "psnr": psnr(predicted, truth), "ssim": ssim(predicted, truth)}
        row["ms_ssim"] = ms_ssim(predicted, truth) if min(predicted.shape[:2]) >= 16 else float("nan")
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
    means = {key: float(np.nanmean([row[key] for row in rows])) for key in rows[0] if key != "file"}
    if "miou" in means:
        means["miou"] = mean_iou(confusion)  # over every pixel of the set, not a mean of per-image values
    return {"predictions": str(predictions), "ground_truth": str(ground_truth), "count": len(rows),
            "mean": means, "images": rows, "unmatched": unmatched, "ground_truth_resized": resized,
            "predictions_resized": shrunk}


@click.command(name="eval")
@click.argument("predictions", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("ground_truth", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--masks", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ground-truth parsing masks (PNG labels, same stems): adds parse-mIoU of the restored faces.")
@selection_options("parser", "parser_weights", "model_dir", "device", help_texts={
    "parser": "Parser that reads the restored faces for --masks (default: the best one whose weights are on disk).",
    "parser_weights": "Weights file for that parser (e.g. one trained with `facefix train psfrgan-parse`).",
    "model_dir": "Folder with weights files, used as given (also FACEFIX_MODEL_DIR)."})
@click.option("--json", "as_json", is_flag=True, help="Print every score as JSON instead of the table.")
@click.option("--per-image", is_flag=True, help="Add a table row per image.")
def eval_command(predictions: Path, ground_truth: Path, masks: Path | None, selection: ComponentSelection,
                 as_json: bool, per_image: bool, quiet: bool) -> None:
    """Score restored faces in PREDICTIONS against GROUND_TRUTH (PSNR, SSIM, MS-SSIM[, parse-mIoU])."""
    from facefix import compose
    from facefix.errors import FacefixError
    from facefix.inference import select_device
    from facefix.weights import WeightsResolver

    parser_name = selection.chosen_parser
    try:
        parser = None
        if masks is not None:
            resolver = WeightsResolver(model_dir=selection.model_dir, progress=not quiet)
            spec = compose.choose("parser", parser_name, resolver)
            parser = compose.build(spec, device=select_device(selection.device), resolver=resolver,
                                   selection=selection, weights_path=selection.parser_weights)
            parser_name = spec.name
        result = evaluate(predictions, ground_truth, parser, masks, quiet=quiet or as_json)
    except FacefixError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    if parser is not None:
        result["parser"] = parser_name
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    columns = ["psnr", "ssim", "ms_ssim"] + (["miou"] if parser is not None else [])
    header = f"{'':<40} {'n':>5} " + " ".join(f"{name.upper():>8}" for name in columns)
    click.echo(header)
    if per_image:
        for row in result["images"]:
            click.echo(f"{row['file'][:40]:<40} {1:>5} " + " ".join(f"{row[name]:8.4f}" for name in columns))
    label = f"mean ({predictions.name})"
    click.echo(f"{label[:40]:<40} {result['count']:>5} " + " ".join(f"{result['mean'][name]:8.4f}" for name in columns))
    notes = []
    if result["unmatched"]:
        notes.append(f"{len(result['unmatched'])} file(s) without a ground truth skipped")
    if result["ground_truth_resized"]:
        notes.append(f"ground truth resized to the prediction's size for {result['ground_truth_resized']} file(s)")
    if result["predictions_resized"]:
        notes.append(f"prediction resized to the ground truth's size for {result['predictions_resized']} file(s)")
    if parser is not None:
        notes.append(f"mIoU by parser {parser_name}, over all pixels of the set")
    for note in notes:
        click.echo(f"note: {note}", err=True)
