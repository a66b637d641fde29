"""``facefix upscale``: whole images enlarged by a background upsampler, no faces involved."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from facefix.cli.common import fail
from facefix.errors import FacefixError


@click.command(name="upscale")
@click.argument("inputs", nargs=-1, required=True)
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option("--upsampler", default=None,
              help="Upsampler (see `facefix plugins`; default: the first whose weights are on disk, or the "
                   "network that --weights holds).")
@click.option("--weights", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Weights file; without --upsampler, its network is read from the file.")
@click.option("--scale", type=click.FloatRange(min=0.05, max=16), default=None,
              help="Output scale (default: the network's own, e.g. 4); other scales are resized from it "
                   "(Lanczos up, area down).")
@click.option("--tile", type=click.IntRange(min=0), default=400, show_default=True,
              help="Tile size in input pixels, 0 = the whole image at once (tiles overlap: same result).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
              help="Where the network runs.")
@click.option("--backend", type=click.Choice(["auto", "torch", "compile", "onnx"]), default="auto",
              show_default=True, help="auto = onnxruntime on CPU (exported once and cached), PyTorch on GPU.")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FACEFIX_MODEL_DIR",
              help="Folder with weights files, used as given (also FACEFIX_MODEL_DIR).")
@click.option("--ext", type=click.Choice(["png", "jpg", "webp", "bmp", "tif"]), default=None,
              help="Output format (default: the input's).")
@click.option("--suffix", default="", help="Appended to output file names.")
@click.option("--skip-existing", is_flag=True, help="Leave inputs whose output already exists.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of input folders.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=150_000_000, show_default=True,
              help="Refuse images with more pixels than this.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="JPEG/WebP output quality (default: the input's own quality, at least 95).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes (errors are still shown).")
def upscale_command(inputs: tuple[str, ...], output: Path, upsampler: str | None, weights: Path | None,
                    scale: float | None, tile: int, device: str, backend: str, model_dir: Path | None,
                    ext: str | None, suffix: str, skip_existing: bool, recursive: bool, max_pixels: int,
                    jpeg_quality: int | None, quiet: bool) -> None:
    """Enlarge every image in INPUTS (files or folders) with a super-resolution network and write
    the results to OUTPUT."""
    from facefix import compose
    from facefix.atomic import write_bytes_atomic
    from facefix.image_io import encode_image, find_images, read_image
    from facefix.inference import select_device
    from facefix.pipeline import DEFAULT_JPEG_QUALITY, PipelineOptions, Summary, error_text, plan_images
    from facefix.sources import as_source, source_exists
    from facefix.upsamplers import background
    from facefix.weights import WeightsResolver

    sources = [as_source(text) for text in inputs]
    try:
        missing = [str(source) for source in sources if not source_exists(source)]
        if missing:
            fail(f"input not found: {', '.join(missing)}")
        files = find_images(sources, recursive)
    except FacefixError as error:
        fail(str(error))
    if not files:
        fail(f"no images found in {', '.join(map(str, inputs))}" + ("" if recursive else " (use --recursive for sub-folders)"))
    try:
        torch_device = select_device(device)
        resolver = WeightsResolver(model_dir=model_dir, progress=not quiet)
        if upsampler is None and weights is not None:
            spec = compose.detect_restorer(weights, kind="upsampler")
        else:
            spec = compose.choose("upsampler", upsampler, resolver)
        selection = compose.ComponentSelection(backend=backend, upsampler_tile=tile)
        network = compose.build(spec, device=torch_device, resolver=resolver, selection=selection,
                                weights_path=weights)
        from facefix.upsamplers import upsampler_backend
        from facefix.weights import default_cache_dir

        network, how = upsampler_backend(network, backend, torch_device, default_cache_dir().parent / "onnx",
                                         warn=lambda message: click.echo(message, err=True))
    except FacefixError as error:
        fail(str(error))
    factor = float(scale if scale is not None else network.scale)
    if not quiet:
        click.echo(f"facefix: upsampler {spec.name} ({how or 'torch'}, x{network.scale}) on {torch_device}; "
                   f"output x{factor:g}, tiles of {tile or 'the whole image'}", err=True)
    options = PipelineOptions(ext=ext, suffix=suffix, skip_existing=skip_existing, max_pixels=max_pixels,
                              jpeg_quality=jpeg_quality, quiet=quiet)
    output.mkdir(parents=True, exist_ok=True)
    plan = plan_images(files, output, options)
    summary = Summary(skipped=plan.skipped)

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
            write_bytes_atomic(task.output, encode_image(pixels, task.output.suffix.lstrip("."), quality))
        except Exception as error:
            failed(error_text(error, task.source))
            continue
        summary.processed += 1
    progress.close()
    skipped = f", {summary.skipped} skipped (already done)" if summary.skipped else ""
    click.echo(f"{summary.processed} upscaled, {summary.failed} failed{skipped}", err=True)
    if summary.failed:
        sys.exit(1)
