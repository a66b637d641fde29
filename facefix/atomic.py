"""Every file facefix writes appears whole or not at all.

Images, videos, checkpoints, ONNX exports and downloads are written to a temporary
file beside their target (same folder, so the final rename is atomic), then renamed
over it. If anything fails on the way, the Ctrl-C or kill that interrupts it included,
the temporary file is removed and the target is left as it was. Temporaries are named
``.{target name}.{pid}-{random}-{check}.part``: hidden, tied to the process writing them,
and provably facefix's own (``check`` is a digest of the rest of the name), so that the
next run can remove those a killed process left (:func:`remove_stale_temporaries`)
without touching a live run's, or a user's file that merely looks alike
(``.chapter.2023-final.part``). A long target name is shortened in its temporary's, which
stays within the file system's 255-byte limit.

A target that exists and is not a regular file (a device, a FIFO, a folder) is never
replaced: the rename would put a regular file in its place (``-o /dev/null`` as root).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Iterator

from facefix.errors import OutputError

TEMPORARY_SUFFIX = ".part"
#: file names longer than this many bytes are refused by Linux, macOS and Windows file systems
NAME_MAX = 255


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check(stem: str, pid: int, token: str) -> str:
    return hashlib.sha256(f"facefix temporary:{stem}:{pid}:{token}".encode("utf-8", "surrogateescape")).hexdigest()[:8]


def temporary_name(target_name: str, pid: int, token: str) -> str:
    """The name of ``pid``'s temporary for a file named ``target_name`` (``token``: 8 hex digits)."""
    tail = f".{pid}-{token}-"
    room = NAME_MAX - len((tail + "00000000" + TEMPORARY_SUFFIX).encode()) - 1
    stem = target_name
    while len(stem.encode("utf-8", "surrogateescape")) > room:  # a long name, shortened by characters
        stem = stem[:-1]
    return f".{stem}{tail}{_check(stem, pid, token)}{TEMPORARY_SUFFIX}"


def refuse_unreplaceable(path: Path | str) -> None:
    """:class:`OutputError` when ``path`` exists and is not a regular file: renaming over it
    would replace a device, a FIFO or a link to one (``-o /dev/null``) with a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputError(path, f"can't be written ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise OutputError(path, "is a folder, not a file: give a file name")
    if not stat.S_ISREG(mode):
        what = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode) else
                "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OutputError(path, f"exists and is {what}: facefix only writes regular files, and leaves it as it is")


def same_file(first: Path | str, second: Path | str) -> bool:
    """Whether two paths name one file (a link, ``..`` or another spelling included)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one does not exist (yet): compare where they point
        return Path(first).resolve() == Path(second).resolve()


def refuse_input_as_output(output: Path | str, inputs: dict[str, Path | str | None]) -> None:
    """:class:`OutputError` when ``output`` is one of a command's input files (by option name):
    ``export -o w.pth --weights w.pth`` would replace the trained checkpoint with ONNX."""
    for option, path in inputs.items():
        if path is not None and same_file(output, path):
            raise OutputError(output, f"is also the command's {option} input; writing it would destroy that "
                                      "input: choose another output")


def temporary_beside(path: Path | str) -> Path:
    """A new empty temporary file beside ``path``, with ordinary permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.parent / temporary_name(path.name, os.getpid(), secrets.token_hex(4))
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask())
        except FileExistsError:
            continue
        os.close(handle)
        return temporary


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Write to the yielded temporary path; when the block ends normally it replaces ``path``.

    The rename happens only after the block, so checks made inside it (a video's frame
    count, an export's parity) decide whether the file appears at all.
    """
    refuse_unreplaceable(path)
    temporary = temporary_beside(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """``data`` into ``path``, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


_OWN_TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-(?P<token>[0-9a-f]{8})-(?P<check>[0-9a-f]{8})"
                            + re.escape(TEMPORARY_SUFFIX) + "$")


def own_temporary_pid(name: str) -> int | None:
    """The process that made the temporary named ``name``, or None when facefix did not
    make it (the pattern and its digest must both hold)."""
    match = _OWN_TEMPORARY.match(name)
    if match is None:
        return None
    pid = int(match.group("pid"))
    return pid if _check(match.group("stem"), pid, match.group("token")) == match.group("check") else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(folder: Path | str, recursive: bool = False) -> list[Path]:
    """Remove the temporaries that facefix processes no longer alive left in ``folder`` (a
    SIGKILL or a power cut leaves them); a running process's are left alone. Returns what went."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.rglob(f".*{TEMPORARY_SUFFIX}") if recursive else folder.glob(f".*{TEMPORARY_SUFFIX}"):
        pid = own_temporary_pid(candidate.name)
        if pid is None or pid == os.getpid() or _alive(pid) or not candidate.is_file():
            continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError:  # not ours to remove after all (permissions): leave it
            continue
    return removed
