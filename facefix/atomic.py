"""Every file facefix writes appears whole or not at all.

Images, videos, checkpoints, ONNX exports and downloads are written to a temporary
file beside their target (same folder, so the final rename is atomic), then renamed
over it. If anything fails on the way, the Ctrl-C or kill that interrupts it included,
the temporary file is removed and the target is left as it was. Temporaries are named
``.{target name}.{pid}-{random}.part``: hidden, recognisable as facefix's own, and
tied to the process writing them, so that the next run can remove those a killed
process left (:func:`remove_stale_temporaries`) without touching a live run's.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

TEMPORARY_SUFFIX = ".part"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: Path | str) -> Path:
    """A new empty temporary file beside ``path``, with ordinary permissions (mkstemp makes it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=TEMPORARY_SUFFIX,
                                         dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())
    return Path(temporary)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Write to the yielded temporary path; when the block ends normally it replaces ``path``.

    The rename happens only after the block, so checks made inside it (a video's frame
    count, an export's parity) decide whether the file appears at all.
    """
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


_OWN_TEMPORARY = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+" + re.escape(TEMPORARY_SUFFIX) + "$")


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
        match = _OWN_TEMPORARY.match(candidate.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError:  # not ours to remove after all (permissions): leave it
            continue
    return removed
