"""Where inputs come from: local paths, or any filesystem fsspec can open (``s3://``, ``gs://``,
``file://``, ...). Both engines read through here, so a URI works the same with either."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from facefix.errors import InputError


def is_uri(text: str | Path) -> bool:
    return isinstance(text, str) and "://" in text


def as_source(text: str) -> Path | str:
    """A command-line input: a URI stays a string (``Path`` would fold ``//``), else a ``Path``."""
    return text if is_uri(text) else Path(text)


#: the schemes an input may use: local files, object stores, the web (zip://, ssh://, ...
#: would reach what a photo batch has no business reading)
SUPPORTED_SCHEMES = ("file", "s3", "s3a", "gs", "gcs", "http", "https")


def _filesystem(uri: str):
    import fsspec

    scheme = uri.split("://", 1)[0].lower()
    if "::" in uri or scheme not in SUPPORTED_SCHEMES:
        raise InputError(uri, f"unsupported location: facefix reads local paths and {', '.join(SUPPORTED_SCHEMES)}:// "
                              "URIs (no chained URLs)")

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as error:  # unknown scheme, or its fsspec driver isn't installed
        raise InputError(uri, f"can't open this filesystem ({error})") from None


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def resolved(path: Path | str) -> Path:
    """``path`` made absolute with its links followed; a link loop or an unreadable folder
    leaves it absolute as given (``resolve()`` raises on a loop)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def link_problem(source: Path | str) -> str | None:
    """Why a local path that is a symbolic link can't be followed (a loop, a missing target),
    or None."""
    if is_uri(source) or not os.path.islink(source):
        return None
    try:
        os.stat(source)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop (following it leads back to itself); refused"
        if error.errno == errno.ENOENT:
            return f"a symbolic link to {os.readlink(source)}, which does not exist"
        return f"a symbolic link that can't be followed ({error.strerror})"
    return None


def not_a_regular_file(source: Path | str) -> str | None:
    """Why a local input can't be read as a file (a FIFO or a device would block or never
    end, a link loop never resolve), or None for a regular file, a URI, or a path that
    doesn't exist (reading says so)."""
    if is_uri(source):
        return None
    broken = link_problem(source)
    if broken:
        return broken
    try:
        mode = os.stat(source).st_mode  # follows links: a link to a FIFO is a FIFO
    except OSError:
        return None
    for check, what in _SPECIAL_FILES:
        if check(mode):
            return f"not a regular file ({what}); refused"
    return None if stat.S_ISREG(mode) else "not a regular file; refused"


def read_source(source: Path | str, limit: Callable[[bytes], int] | None = None) -> bytes:
    """The whole file, or InputError saying why not. ``limit(head)``, given the file's first
    MiB, says how many bytes the file may hold at most (from its header: a 10 GB sparse
    ``.jpg`` is refused before it is read, not after)."""
    special = not_a_regular_file(source)
    if special:
        raise InputError(source, special)
    try:
        if is_uri(source):
            filesystem, path = _filesystem(str(source))
            with filesystem.open(path, "rb") as stream:
                return _read_bounded(source, stream, limit)
        with open(source, "rb") as stream:
            return _read_bounded(source, stream, limit)
    except InputError:
        raise
    except OSError as error:
        raise InputError(source, f"unreadable ({error.strerror or error})") from None


def _read_bounded(source: Path | str, stream: BinaryIO, limit: Callable[[bytes], int] | None) -> bytes:
    head = stream.read(1 << 20)
    if limit is None or len(head) < 1 << 20:
        return head + stream.read()
    most = limit(head)
    rest = stream.read(most - len(head) + 1)
    if len(head) + len(rest) > most:
        raise InputError(source, f"larger than an image of its size can be (over {most / 2**20:.0f} MiB); refused "
                                 "unread")
    return head + rest


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
