"""``facefix weights``: list, download, verify and locate weights files."""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from facefix.errors import FacefixError
from facefix.weights import WeightsResolver, format_size, get_entry, weights_entries


@dataclass
class _Options:
    model_dir: Path | None


# find_object looks up the context chain by type, so this works whatever object the
# root group keeps in ctx.obj.
_pass_options = click.make_pass_decorator(_Options)


def _errors_to_exit(func: Callable[..., Any]) -> Callable[..., Any]:
    """A FacefixError becomes ``Error: <one line>`` on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FacefixError as error:
            click.echo(f"Error: {error}", err=True)
            raise click.exceptions.Exit(1) from None

    return wrapper


@click.group(name="weights")
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FACEFIX_MODEL_DIR",
    default=None,
    help="Folder searched for weights files before the cache (env FACEFIX_MODEL_DIR).",
)
@click.pass_context
def weights_group(ctx: click.Context, model_dir: Path | None) -> None:
    """List, download, verify and locate weights files."""
    ctx.obj = _Options(model_dir=model_dir)


def _set_model_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.find_object(_Options).model_dir = value


# Also accepted after the subcommand (`facefix weights list --model-dir DIR`), where
# users put it by habit from `facefix restore`.
_model_dir_option = click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    expose_value=False,
    callback=_set_model_dir,
    help="Folder searched for weights files before the cache.",
)


def _resolver(options: _Options, **kwargs: Any) -> WeightsResolver:
    return WeightsResolver(model_dir=options.model_dir, **kwargs)


@weights_group.command("list")
@_model_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--long", "-l", "long_table", is_flag=True,
              help="Every column (file, component, local path), however wide.")
@_pass_options
@_errors_to_exit
def list_command(options: _Options, as_json: bool, long_table: bool) -> None:
    """Every known weights file with its status and local path."""
    resolver = _resolver(options, allow_download=False)
    rows = []
    for entry in sorted(weights_entries().values(), key=lambda e: e.name):
        path = resolver.find_local(entry)
        rows.append(
            {
                "name": entry.name,
                "filename": entry.filename,
                "component": entry.component,
                "status": resolver.status(entry),
                "path": str(path) if path is not None else None,
                "pinned": entry.pinned,
                "sha256": entry.sha256,
                "size": entry.size,
                "license": entry.license,
                "urls": list(entry.urls),
                "description": entry.description,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    cells = {
        "NAME": lambda row: row["name"], "FILE": lambda row: row["filename"],
        "COMPONENT": lambda row: row["component"] or "-", "STATUS": lambda row: row["status"],
        "PINNED": lambda row: "yes" if row["pinned"] else "no", "SIZE": lambda row: format_size(row["size"]),
        "LICENSE": lambda row: row["license"] or "-", "PATH": lambda row: row["path"] or "-",
    }
    # the short table fits the terminal: the last column is cut to what is left of it
    header = tuple(cells) if long_table else ("NAME", "STATUS", "PINNED", "SIZE", "LICENSE")
    table = [header] + [tuple(cells[column](row) for column in header) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    room = None if long_table else shutil.get_terminal_size((100, 24)).columns - sum(widths) - 2 * len(widths)
    for line in table:
        last = line[-1]
        if room is not None and len(last) > max(room, 4):
            last = last[: max(room, 4) - 1] + "…"
        click.echo("  ".join([cell.ljust(width) for cell, width in zip(line, widths)] + [last]).rstrip())
    if not long_table:
        click.echo("(--long adds each file's name, component and local path)")


@weights_group.command("download")
@_model_dir_option
@click.argument("name")
@click.option("--force", is_flag=True, help="Download again even when the cache has the file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_pass_options
@_errors_to_exit
def download_command(options: _Options, name: str, force: bool, quiet: bool) -> None:
    """Download NAME into the cache, verified, and print its path. NAME is a weights name
    (`facefix weights list`) or a component's (`gfpgan`: the file it uses by default)."""
    from facefix.weights import bundled_dir

    entry = entry_for(name)
    shipped = bundled_dir() / entry.filename
    if not entry.urls and shipped.is_file():  # nothing to fetch: it came with facefix
        click.echo(f"facefix: {entry.name} ships with facefix; nothing to download", err=True)
        click.echo(str(shipped))
        return
    path = _resolver(options, progress=not quiet).download(entry, force=force)
    click.echo(str(path))


def entry_for(name: str):
    """The weights entry NAME names, or the first file of the component named NAME."""
    from facefix.components import KINDS
    from facefix.errors import WeightsError
    from facefix.plugins import components, find

    try:
        return get_entry(name)
    except WeightsError as unknown:
        for kind in KINDS:
            spec = find(components(kind), name)
            if spec is not None and spec.weights:
                return get_entry(spec.weights[0])
        raise unknown from None


@weights_group.command("verify")
@_model_dir_option
@click.argument("names", nargs=-1)
@_pass_options
@_errors_to_exit
def verify_command(options: _Options, names: tuple[str, ...]) -> None:
    """Check local files against their sha256 (default: all)."""
    resolver = _resolver(options, allow_download=False)
    entries = [entry_for(name) for name in names] if names else sorted(weights_entries().values(), key=lambda e: e.name)
    mismatches = 0
    for entry in entries:
        path, verdict = resolver.verify(entry)
        mismatches += verdict.startswith("mismatch")
        click.echo(f"{entry.name}: {verdict}" + (f"  {path}" if path is not None else ""))
    if mismatches:
        raise click.exceptions.Exit(1)


@weights_group.command("path")
@_model_dir_option
@click.argument("name")
@_pass_options
@_errors_to_exit
def path_command(options: _Options, name: str) -> None:
    """Print the local path of NAME (never downloads). NAME is a weights name or a component's,
    as for `facefix weights download`."""
    click.echo(str(_resolver(options, allow_download=False).resolve(entry_for(name))))
