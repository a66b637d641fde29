"""``facefix restore``: every face in every image, detected, restored and pasted back."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from facefix.cli.common import fail
from facefix.cli.options import component_options, engine_options
from facefix.compose import ComponentSelection
from facefix.distributed import EngineOptions, require_ray
from facefix.errors import FacefixError


@click.command(name="restore")
@click.argument("inputs", nargs=-1, required=True)
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@component_options
@engine_options
@click.option("--aligned", is_flag=True, help="Inputs are already aligned face crops: restore them only.")
@click.option("--save-faces", is_flag=True, help="Also write cropped_faces/, restored_faces/ and cmp/.")
@click.option("--ext", type=click.Choice(["png", "jpg", "webp", "bmp", "tif"]), default=None,
              help="Output format (default: the input's).")
@click.option("--suffix", default="", help="Appended to output file names.")
@click.option("--skip-existing", is_flag=True, help="Leave inputs whose output already exists.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of input folders.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=150_000_000, show_default=True,
              help="Refuse images with more pixels than this.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="JPEG/WebP output quality (default: the input's own quality, at least 95).")
def restore_command(inputs: tuple[str, ...], output: Path, selection: ComponentSelection, faces, quiet: bool,
            engine: EngineOptions, aligned: bool, save_faces: bool, ext: str | None, suffix: str, skip_existing: bool, recursive: bool,
            max_pixels: int, jpeg_quality: int | None) -> None:
    """Restore every face in INPUTS (images or folders, local or URIs such as s3://bucket/photos/)
    and write the results to OUTPUT."""
    from facefix import compose
    from facefix.image_io import find_images
    from facefix.pipeline import Pipeline, PipelineOptions, restorer_geometry
    from facefix.sources import as_source, source_exists

    if engine.distributed:
        try:
            require_ray()
        except FacefixError as error:
            fail(str(error))
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

    options = PipelineOptions(faces=faces, aligned=aligned, save_faces=save_faces, ext=ext, suffix=suffix,
                              skip_existing=skip_existing, max_pixels=max_pixels, jpeg_quality=jpeg_quality, quiet=quiet)
    try:
        assembly = compose.assemble(selection, aligned=aligned, quiet=quiet,
                                    note=lambda message: click.echo(message, err=True))
        names = assembly.names
        pipeline = Pipeline(restorer=assembly.get("restorer"), blender=assembly.get("blender"),
                            detector=assembly.get("detector"), parser=assembly.get("parser"), options=options,
                            upsampler=assembly.get("upsampler"))
    except FacefixError as error:
        fail(str(error))
    if not quiet:
        click.echo(assembly.describe() + (" (ray engine)" if engine.distributed else ""), err=True)
    output.mkdir(parents=True, exist_ok=True)
    if engine.distributed:
        from facefix.distributed.images import restore_images

        sizes = restorer_geometry(pipeline.restorer)
        del pipeline, assembly  # the actors load their own; the driver keeps none
        try:
            summary = restore_images(files, output, selection, names, sizes, options, engine)
        except FacefixError as error:
            fail(str(error))
    else:
        summary = pipeline.run(files, output)
    click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)
