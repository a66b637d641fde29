"""``facefix restore``: every face in every image, detected, restored and pasted back."""

from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path

import click

from facefix.cli.common import (FoundImages, fail, image_output_options, input_images, inputs_and_output,
                                make_output_folder, raise_interrupt, single_file_output)
from facefix.cli.options import component_options, engine_options
from facefix.compose import ComponentSelection
from facefix.distributed import EngineOptions, require_ray
from facefix.errors import FacefixError, brief


#: GFPGAN's ``-v`` values and the restorers they name
GFPGAN_VERSIONS = {"1": "gfpgan-v1", "1.2": "gfpgan-v1.2", "1.3": "gfpgan-v1.3", "1.4": "gfpgan"}


@click.command(name="restore")
@click.argument("paths", metavar="INPUTS... OUTPUT", nargs=-1)
@click.option("-i", "--input", "input_options", multiple=True,
              help="An input (image, folder or URI); repeatable. With -i/-o, INPUTS... OUTPUT may be left out.")
@click.option("-o", "--output", "output_option", type=click.Path(path_type=Path),
              help="The output folder (or, for one input image, an output file such as out.jpg); "
                   "default: the last of the paths.")
@click.option("-v", "--version", "gfpgan_version", type=click.Choice(sorted(GFPGAN_VERSIONS)),
              help="GFPGAN's -v: the GFP-GAN release to restore with (1.4: --restorer gfpgan; 1.3, 1.2, 1: "
                   "--restorer gfpgan-v1.3 ...).")
@component_options
@engine_options
@click.option("--aligned", is_flag=True, help="Inputs are already aligned face crops: restore them only.")
@click.option("--save-faces", is_flag=True, help="Also write cropped_faces/, restored_faces/ and cmp/.")
@image_output_options
def restore_command(paths: tuple[str, ...], input_options: tuple[str, ...], output_option: Path | None,
                    gfpgan_version: str | None, selection: ComponentSelection, faces, quiet: bool,
            engine: EngineOptions, aligned: bool, save_faces: bool, ext: str | None, suffix: str, skip_existing: bool, recursive: bool,
            max_pixels: int, jpeg_quality: int | None) -> None:
    """Restore every face in INPUTS (images or folders, local or URIs such as s3://bucket/photos/)
    and write the results to OUTPUT."""
    from facefix import compose
    from facefix.pipeline import Pipeline, PipelineOptions, restorer_geometry

    if gfpgan_version is not None:
        chosen = GFPGAN_VERSIONS[gfpgan_version]
        if selection.restorer is not None and selection.restorer.casefold() != chosen:
            raise click.UsageError(f"-v {gfpgan_version} is --restorer {chosen}, but --restorer {selection.restorer} "
                                   "was given too: give one of them")
        selection = dataclasses.replace(selection, restorer=chosen)
    if engine.distributed:
        try:
            require_ray()
        except FacefixError as error:
            fail(str(error))
    inputs, output = inputs_and_output(paths, input_options, output_option)
    files = input_images(inputs, recursive, output, quiet)
    single = single_file_output(files, output)
    if single is not None:  # `restore a.jpg out.jpg`: that file, not a folder named out.jpg
        files, output, ext, suffix = (FoundImages([(files[0][0], Path(single.name))]), single.parent,
                                      single.suffix.lstrip("."), "")
    make_output_folder(output, quiet)

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
    except Exception as error:  # a component's crash while loading still gets one line
        fail(f"{type(error).__name__}: {brief(error, 300)}")
    if not quiet:
        click.echo(assembly.describe() + (" (ray engine)" if engine.distributed else ""), err=True)
    if engine.distributed:
        from facefix.distributed.images import restore_images

        sizes = restorer_geometry(pipeline.restorer)
        del pipeline, assembly  # the actors load their own; the driver keeps none
        try:
            summary = restore_images(files, output, selection, names, sizes, options, engine)
        except FacefixError as error:
            fail(str(error))
    else:
        # Ctrl-C and `kill` (SIGTERM) stop between files' writes alike: an output being written
        # is removed with its temporary, and the summary says what was written
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
        try:
            summary = pipeline.run(files, output)
        except KeyboardInterrupt:
            click.echo(f"\nError: interrupted; {pipeline.summary.line()}", err=True)
            sys.exit(130)
        finally:
            signal.signal(signal.SIGTERM, previous)
    summary.failed += len(files.errors)  # folders or files that could not even be listed
    click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)
