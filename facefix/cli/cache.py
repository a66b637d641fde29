"""``facefix cache list|clear``: what facefix keeps under ``$FACEFIX_HOME`` besides weights.

ONNX exports (``onnx/``, one per weights file), compiled packages (``compiled/``, one per
weights file, precision and device) and training landmarks (``landmarks/``) are made on
first use and reused; each can be made again, so clearing them loses only time.
Downloaded weights (``weights/``) are listed too but cleared only when named.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click

from facefix.atomic import remove_stale_temporaries
from facefix.weights import default_cache_dir, format_size

#: What ``cache clear`` removes when no kind is named: everything facefix can make again.
REMAKEABLE = ("onnx", "compiled", "landmarks")
KINDS = (*REMAKEABLE, "weights")


@dataclass(frozen=True)
class CacheEntry:
    kind: str
    name: str
    paths: tuple[Path, ...]  # an ONNX export is its graph and the weights file beside it
    size: int
    modified: float


def cache_home() -> Path:
    return default_cache_dir().parent


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size


def cache_entries(kinds: tuple[str, ...] = KINDS) -> list[CacheEntry]:
    """Every entry of the named kinds, by kind then name; an export's data files count with it."""
    entries = []
    for kind in kinds:
        folder = cache_home() / kind
        if not folder.is_dir():
            continue
        # dot files are facefix's bookkeeping (verified digests) or temporaries being written
        items = sorted(item for item in folder.iterdir() if not item.name.startswith("."))
        graphs = {item.name for item in items if item.suffix == ".onnx"}
        grouped: dict[str, list[Path]] = {}
        for item in items:
            owner = item.name.split(".onnx.", 1)[0] + ".onnx" if ".onnx." in item.name else item.name
            grouped.setdefault(owner if owner in graphs else item.name, []).append(item)
        for name, paths in grouped.items():
            try:
                size = sum(_size(path) for path in paths)
                modified = max(path.stat().st_mtime for path in paths)
            except OSError:  # removed meanwhile by another process
                continue
            entries.append(CacheEntry(kind, name, tuple(paths), size, modified))
    return entries


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@click.group(name="cache")
def cache_group() -> None:
    """List or clear what facefix keeps in $FACEFIX_HOME: ONNX exports, compiled packages,
    training landmarks (all made again when needed) and downloaded weights."""


@cache_group.command(name="list")
@click.argument("kinds", nargs=-1, type=click.Choice(KINDS))
def list_command(kinds: tuple[str, ...]) -> None:
    """List the cached files of KINDS (default: all) with their sizes and ages."""
    entries = cache_entries(kinds or KINDS)
    now = time.time()
    width = max((len(entry.name) for entry in entries), default=4)
    for entry in entries:
        days = (now - entry.modified) / 86400
        click.echo(f"{entry.kind:9}  {entry.name:{width}}  {format_size(entry.size):>10}  {days:5.0f} days")
    totals = {kind: sum(entry.size for entry in entries if entry.kind == kind) for kind in (kinds or KINDS)}
    summary = ", ".join(f"{kind} {format_size(size)}" for kind, size in totals.items())
    click.echo(f"{cache_home()}: {len(entries)} entries, {format_size(sum(totals.values()))} ({summary})")


@cache_group.command(name="clear")
@click.argument("kinds", nargs=-1, type=click.Choice(KINDS))
def clear_command(kinds: tuple[str, ...]) -> None:
    """Remove the cached files of KINDS (default: onnx, compiled and landmarks, which facefix
    makes again when needed; downloaded weights only when 'weights' is named)."""
    entries = cache_entries(kinds or REMAKEABLE)
    removed = 0
    for kind in kinds or REMAKEABLE:
        if (cache_home() / kind).is_dir():
            remove_stale_temporaries(cache_home() / kind)  # what a killed run left half-written
    for entry in entries:
        for path in entry.paths:
            try:
                _remove(path)
            except OSError as error:
                raise click.ClickException(f"{path}: cannot remove it ({error.strerror or error})") from None
        removed += entry.size
    click.echo(f"removed {len(entries)} entries, {format_size(removed)}, from {cache_home()}")
