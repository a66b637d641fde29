"""Where inputs come from: local paths, or any filesystem fsspec can open (``s3://``, ``gs://``,
``file://``, ...). Both engines read through here, so a URI works the same with either."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from facefix.errors import InputError


def is_uri(text: str | Path) -> bool:
    return isinstance(text, str) and "://" in text


def as_source(text: str) -> Path | str:
    """A command-line input: a URI stays a string (``Path`` would fold ``//``), else a ``Path``."""
    return text if is_uri(text) else Path(text)


def _filesystem(uri: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as error:  # unknown scheme, or its fsspec driver isn't installed
        raise InputError(uri, f"can't open this filesystem ({error})") from None


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def not_a_regular_file(source: Path | str) -> str | None:
    """Why a local input can't be read as a file (a FIFO or a device would block or never
    end), or None for a regular file, a URI, or a path that doesn't exist (reading says so)."""
    if is_uri(source):
        return None
    try:
        mode = os.stat(source).st_mode  # follows links: a link to a FIFO is a FIFO
    except OSError:
        return None
    for check, what in _SPECIAL_FILES:
        if check(mode):
            return f"not a regular file ({what}); refused"
    return None if stat.S_ISREG(mode) else "not a regular file; refused"


def read_source(source: Path | str) -> bytes:
    """The whole file, or InputError saying why not."""
    special = not_a_regular_file(source)
    if special:
        raise InputError(source, special)
    try:
        if is_uri(source):
            filesystem, path = _filesystem(str(source))
            with filesystem.open(path, "rb") as stream:
                return stream.read()
        return Path(source).read_bytes()
    except InputError:
        raise
    except OSError as error:
        raise InputError(source, f"unreadable ({error.strerror or error})") from None


def source_exists(source: Path | str) -> bool:
    if is_uri(source):
        filesystem, path = _filesystem(str(source))
        return bool(filesystem.exists(path))
    return Path(source).exists()


def list_uri(uri: str, extensions: tuple[str, ...], recursive: bool) -> list[tuple[str, Path]]:
    """``(file URI, path relative to uri)`` for the files with ``extensions`` under a URI folder,
    or the URI itself when it names a file."""
    filesystem, root = _filesystem(uri)
    protocol = uri.split("://", 1)[0]
    if not filesystem.isdir(root):
        return [(uri, Path(PurePosixPath(root).name))]
    names = filesystem.find(root) if recursive else [entry for entry in filesystem.ls(root, detail=False)
                                                     if filesystem.isfile(entry)]
    found = []
    base = PurePosixPath(root.rstrip("/"))
    for name in sorted(names):
        relative = PurePosixPath(name).relative_to(base)
        if relative.suffix.lower() in extensions and not relative.name.startswith("."):
            found.append((f"{protocol}://{name}", Path(*relative.parts)))
    return found
