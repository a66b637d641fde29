"""``facefix upscale``: whole images enlarged by a background upsampler, no faces involved."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from facefix.cli.common import fail, image_output_options, input_images, make_output_folder
from facefix.cli.types import FiniteFloat, InputFile, TileSize
from facefix.errors import FacefixError


@click.command(name="upscale")
@click.argument("inputs", nargs=-1, required=True)
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option("--upsampler", default=None,
              help="Upsampler (see `facefix plugins`; default: the first whose weights are on disk, or the "
                   "network that --weights holds).")
@click.option("--weights", type=InputFile(path_type=Path),
              help="Weights file; without --upsampler, its network is read from the file.")
@click.option("--scale", type=FiniteFloat(min=0.05, max=16), default=None,
              help="Output scale (default: the network's own, e.g. 4); other scales are resized from it "
                   "(Lanczos up, area down).")
@click.option("--tile", type=TileSize(), default=400, show_default=True,
              help="Tile size in input pixels, 0 = the whole image at once (tiles overlap: same result).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
              help="Where the network runs.")
@click.option("--backend", type=click.Choice(["auto", "torch", "compile", "onnx"]), default="auto",
              show_default=True, help="auto = onnxruntime on CPU (exported once and cached), PyTorch on GPU.")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FACEFIX_MODEL_DIR",
              help="Folder with weights files, used as given (also FACEFIX_MODEL_DIR).")
@image_output_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes (errors are still shown).")
def upscale_command(inputs: tuple[str, ...], output: Path, upsampler: str | None, weights: Path | None,
                    scale: float | None, tile: int, device: str, backend: str, model_dir: Path | None,
                    ext: str | None, suffix: str, skip_existing: bool, recursive: bool, max_pixels: int,
                    jpeg_quality: int | None, quiet: bool) -> None:
    """Enlarge every image in INPUTS (files or folders) with a super-resolution network and write
    the results to OUTPUT."""
    from facefix import compose
    from facefix.atomic import write_bytes_atomic
    from facefix.image_io import encode_image, read_image
    from facefix.inference import select_device
    from facefix.pipeline import DEFAULT_JPEG_QUALITY, PipelineOptions, Summary, error_text, plan_images
    from facefix.upsamplers import background
    from facefix.weights import WeightsResolver

    files = input_images(inputs, recursive, output, quiet)
    make_output_folder(output, quiet)
    try:
        torch_device = select_device(device)
        resolver = WeightsResolver(model_dir=model_dir, progress=not quiet)
        if upsampler is None and weights is not None:
            spec = compose.detect_component(weights, kind="upsampler")
        else:
            spec = compose.choose("upsampler", upsampler, resolver)
        selection = compose.ComponentSelection(backend=backend, upsampler_tile=tile)
        network, how = compose.build_upsampler(spec, selection, torch_device, resolver,
                                               note=lambda message: click.echo(message, err=True),
                                               weights_path=weights)
    except FacefixError as error:
        fail(str(error))
    factor = float(scale if scale is not None else network.scale)
    if not quiet:
        click.echo(f"facefix: upsampler {spec.name} ({how or 'torch'}, x{network.scale}) on {torch_device}; "
                   f"output x{factor:g}, tiles of {tile or 'the whole image'}", err=True)
    options = PipelineOptions(ext=ext, suffix=suffix, skip_existing=skip_existing, max_pixels=max_pixels,
                              jpeg_quality=jpeg_quality, quiet=quiet)
    plan = plan_images(files, output, options)
    summary = Summary(skipped=plan.skipped, failed=len(files.errors))

    def failed(message: str) -> None:
        summary.failed += 1
        click.echo(f"error: {message}", err=True)

    for message in plan.errors:
        failed(message)
    progress = tqdm(plan.tasks, desc="upscale", unit="img", disable=quiet, file=sys.stderr)
    for task in progress:
        try:
            image = read_image(task.source, max_pixels)
            started = time.perf_counter()
            height, width = image.pixels.shape[:2]
            pixels = background(image.pixels, round(width * factor), round(height * factor), network)
            summary.stage_seconds["upsample"] += time.perf_counter() - started
            quality = jpeg_quality or max(DEFAULT_JPEG_QUALITY, image.jpeg_quality or 0)
            data = encode_image(pixels, task.output.suffix.lstrip("."), quality, exif=image.exif,
                                icc=image.icc)
            write_bytes_atomic(task.output, data)
        except Exception as error:
            failed(error_text(error, task.source))
            continue
        summary.processed += 1
    progress.close()
    skipped = f", {summary.skipped} skipped (already done)" if summary.skipped else ""
    click.echo(f"{summary.processed} upscaled, {summary.failed} failed{skipped}", err=True)
    if summary.failed:
        sys.exit(1)
