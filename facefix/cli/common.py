"""What every facefix command shares: the one-line error exit, and finding the input images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

import click

from facefix.errors import FacefixError, one_line


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler: ``kill`` (SIGTERM) stops a command as Ctrl-C does, cleaning up alike."""
    raise KeyboardInterrupt


def fail(message: str) -> NoReturn:
    """``Error: <one line>`` on stderr, exit status 1."""
    click.echo(f"Error: {one_line(message)}", err=True)
    sys.exit(1)


class FoundImages(list):
    """The ``(source, relative output)`` pairs of a command's inputs; ``errors``: the folders
    and files that could not be listed (already reported), which the summary counts as failed."""

    errors: list[str] = []


def input_images(inputs: tuple[str, ...], recursive: bool,
                 output: Path | None = None, quiet: bool = False) -> FoundImages:
    """The images named by INPUTS (files, folders or URIs) as ``(source, relative output)``
    pairs, never from inside ``output`` (an output folder within an input folder would
    otherwise be restored again by every later ``--recursive`` run); a missing input, or
    none found, ends the command with one line."""
    from facefix.image_io import find_images
    from facefix.sources import as_source, link_problem, source_exists

    sources = [as_source(text) for text in inputs]
    try:
        for source in sources:  # a loop would read as "not found"
            broken = link_problem(source)
            if broken and "does not exist" not in broken:
                fail(f"{source}: {broken}")
        missing = [str(source) for source in sources if not source_exists(source)]
        if missing:
            fail(f"input not found: {', '.join(missing)}")
        errors: list[str] = []
        notes: list[str] = []
        files = FoundImages(find_images(sources, recursive, exclude=[output] if output is not None else [],
                                        errors=errors, notes=notes))
    except FacefixError as error:
        fail(str(error))
    for message in errors:
        click.echo(f"error: {one_line(message)}", err=True)
    if not quiet:
        for message in notes:
            click.echo(f"facefix: note: {one_line(message)}", err=True)
    files.errors = errors
    if not files:
        fail(f"no images found in {', '.join(map(str, inputs))}" + ("" if recursive else " (use --recursive for sub-folders)"))
    return files


def inputs_and_output(paths: tuple[str, ...], input_options: tuple[str, ...],
                      output_option: Path | None) -> tuple[tuple[str, ...], Path]:
    """INPUTS and OUTPUT from ``INPUTS... OUTPUT`` and/or ``-i IN -o OUT`` (GFPGAN's flags)."""
    if output_option is not None:
        inputs = (*input_options, *paths)
        output = output_option
    elif not paths:
        fail("missing INPUTS and OUTPUT: facefix restore INPUTS... OUTPUT (or -i INPUT -o OUTPUT)")
    elif len(paths) == 1 and not input_options:
        fail(f"missing OUTPUT: where should the results of {paths[0]} go? "
             "facefix restore INPUTS... OUTPUT (or -o OUTPUT)")
    else:
        inputs, output = (*input_options, *paths[:-1]), Path(paths[-1])
    if not inputs:
        fail("missing INPUTS: facefix restore INPUTS... OUTPUT (or -i INPUT -o OUTPUT)")
    return inputs, output


def single_file_output(files: list[tuple[Path | str, Path]], output: Path) -> Path | None:
    """OUTPUT as a file (``restore a.jpg out.jpg``): when it has an image's extension and
    isn't an existing folder; None when it is a folder. A file output takes one image."""
    from facefix.image_io import IMAGE_EXTENSIONS

    if output.suffix.lower() not in IMAGE_EXTENSIONS or output.is_dir():
        return None
    if len(files) != 1:
        fail(f"{output}: an output file takes one input image, and {len(files)} were found; "
             "give an output folder instead")
    return output


def unwritable(folder: Path) -> str | None:
    """Why files can't be written into ``folder`` (read-only, a read-only file system, no
    space for even an empty file), found by writing one; None when they can."""
    from facefix.atomic import temporary_beside

    try:
        temporary_beside(folder / "probe").unlink()
    except OSError as error:
        return error.strerror or str(error)
    return None


def make_output_folder(output: Path, quiet: bool = False) -> None:
    """Create OUTPUT before any network loads, so a folder that can't be made costs one line,
    not minutes; and remove the temporaries a killed earlier run left in it."""
    from facefix.atomic import remove_stale_temporaries

    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"{output}: can't create the output folder ({error.strerror or error})")
    problem = unwritable(output)
    if problem:
        fail(f"{output}: can't write into the output folder ({problem})")
    removed = remove_stale_temporaries(output, recursive=True)
    if removed and not quiet:
        click.echo(f"facefix: removed {len(removed)} temporary file(s) an interrupted run left in {output}", err=True)


def _name_suffix(context: click.Context, parameter: click.Parameter, value: str) -> str:
    """``--suffix`` goes into a file name: a separator would lead elsewhere, even out of OUTPUT."""
    if any(character in value for character in ("/", "\\", "\0")):
        raise click.BadParameter(f"{value!r}: a suffix is part of a file name, without '/' or '\\'")
    return value


def image_output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of commands that write one image per input image (``restore``, ``upscale``):
    the command gets ``ext``, ``suffix``, ``skip_existing``, ``recursive``, ``max_pixels`` and
    ``jpeg_quality``."""
    options = [
        click.option("--ext", type=click.Choice(["png", "jpg", "webp", "bmp", "tif"]), default=None,
                     help="Output format (default: the input's)."),
        click.option("--suffix", default="", callback=_name_suffix,
                     help="Appended to output file names (no path separators)."),
        click.option("--skip-existing", is_flag=True, help="Leave inputs whose output already exists."),
        click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of input folders."),
        click.option("--max-pixels", type=click.IntRange(min=1), default=150_000_000, show_default=True,
                     help="Refuse images with more pixels than this."),
        click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
                     help="JPEG/WebP output quality (default: the input's own quality, at least 95)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
