"""``facefix eval PRED_DIR GT_DIR``: the quality of restored faces (:mod:`facefix.evaluation`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from facefix.cli.options import selection_options
from facefix.compose import ComponentSelection


@click.command(name="eval")
@click.argument("predictions", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("ground_truth", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--metrics", "metric_names", metavar="NAMES",
              help="Comma-separated: psnr, ssim, ms_ssim, lpips, lpips_vgg, niqe, ids, deg, fd_sface "
                   "(default: every metric whose weights are on disk).")
@click.option("--y-channel", is_flag=True,
              help="PSNR/SSIM/MS-SSIM on MATLAB's rgb2gray luminance (the IQA toolbox's convention) instead of RGB.")
@click.option("--masks", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ground-truth parsing masks (PNG labels, same stems): adds parse-mIoU of the restored faces.")
@selection_options("parser", "parser_weights", "model_dir", "device", help_texts={
    "parser": "Parser that reads the restored faces for --masks (default: the best one whose weights are on disk).",
    "parser_weights": "Weights file for that parser (e.g. one trained with `facefix train psfrgan-parse`).",
    "model_dir": "Folder with weights files (the metrics' and the parser's), used as given (also FACEFIX_MODEL_DIR)."})
@click.option("--json", "as_json", is_flag=True, help="Print every score as JSON instead of the table.")
@click.option("--per-image", is_flag=True, help="Add a table row per image.")
def eval_command(predictions: Path, ground_truth: Path, metric_names: str | None, y_channel: bool,
                 masks: Path | None, selection: ComponentSelection, as_json: bool, per_image: bool,
                 quiet: bool) -> None:
    """Score restored faces in PREDICTIONS against GROUND_TRUTH: PSNR, SSIM, MS-SSIM, LPIPS,
    NIQE, identity (ids/deg) and fd_sface, whichever have their weights[, parse-mIoU]."""
    from facefix import compose
    from facefix.errors import FacefixError
    from facefix.evaluation import evaluate, parse_metrics, skipped_metrics
    from facefix.inference import select_device
    from facefix.weights import WeightsResolver

    parser_name = selection.chosen_parser
    try:
        resolver = WeightsResolver(model_dir=selection.model_dir, progress=not quiet)
        metrics = parse_metrics(metric_names, resolver)
        device = select_device(selection.device)
        parser = None
        if masks is not None:
            spec = compose.choose("parser", parser_name, resolver)
            parser = compose.build(spec, device=device, resolver=resolver, selection=selection,
                                   weights_path=selection.parser_weights)
            parser_name = spec.name
        result = evaluate(predictions, ground_truth, metrics, resolver=resolver, device=device, y_channel=y_channel,
                          parser=parser, masks=masks, quiet=quiet or as_json)
    except FacefixError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    if parser is not None:
        result["parser"] = parser_name
    skipped = skipped_metrics(metrics) if metric_names is None else {}
    if skipped and not quiet:
        click.echo(f"note: {', '.join(skipped)} skipped: their weights ({', '.join(dict.fromkeys(skipped.values()))}) "
                   "are not on disk; give --model-dir, or `facefix weights download NAME` each", err=True)
    for message in result["failed"]:
        click.echo(f"error: {message}", err=True)
    if result["unmatched"]:
        shown = ", ".join(result["unmatched"][:10]) + (", ..." if len(result["unmatched"]) > 10 else "")
        click.echo(f"error: {len(result['unmatched'])} prediction(s) without a ground truth of the same name in "
                   f"{ground_truth}: {shown}", err=True)
    incomplete = bool(result["failed"] or result["unmatched"])
    if as_json:
        click.echo(json.dumps(result, indent=2))
        sys.exit(1 if incomplete else 0)
    columns = [name for name in result["mean"] if name != "miou"] + (["miou"] if parser is not None else [])
    click.echo(f"{'':<40} {'n':>5} " + " ".join(f"{name.upper():>9}" for name in columns))
    if per_image:
        for row in result["images"]:
            cells = [f"{row[name]:9.4f}" if name in row else f"{'':>9}" for name in columns]  # fd_sface: the set's
            click.echo(f"{row['file'][:40]:<40} {1:>5} " + " ".join(cells))
    label = f"mean ({predictions.name})"
    click.echo(f"{label[:40]:<40} {result['count']:>5} " + " ".join(f"{result['mean'][name]:9.4f}" for name in columns))
    notes = []
    if y_channel:
        notes.append("PSNR, SSIM and MS-SSIM on luminance (MATLAB's rgb2gray)")
    if result["ground_truth_resized"]:
        notes.append(f"ground truth resized to the prediction's size for {result['ground_truth_resized']} file(s)")
    if result["predictions_resized"]:
        notes.append(f"prediction resized to the ground truth's size for {result['predictions_resized']} file(s)")
    if "fd_sface" in columns:
        notes.append("fd_sface is a Fréchet distance of SFace identity embeddings: not comparable with published FID")
    if parser is not None:
        notes.append(f"mIoU by parser {parser_name}, over all pixels of the set")
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if incomplete:
        click.echo(f"{result['count']} scored; {len(result['failed'])} unreadable, {len(result['unmatched'])} "
                   "without a ground truth", err=True)
        sys.exit(1)
