"""Finding ffmpeg, starting it, and probing inputs.

ffmpeg comes from PATH, else the binary the imageio-ffmpeg package ships. ffprobe is
not needed: stream information comes from the header ffmpeg prints for ``-i`` and
from one demux-only pass (``-c copy -f framecrc``) that lists the packets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

from facefix.errors import FacefixError, InputError
from facefix.video.commands import probe_args
from facefix.video.info import VideoInfo, parse_input_header

FFMPEG_MISSING = "ffmpeg not found: install ffmpeg on PATH, or the imageio-ffmpeg package (pip install imageio-ffmpeg)"


def find_ffmpeg() -> str:
    """ffmpeg from PATH, else the binary the imageio-ffmpeg package ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or installed without its binary
        exe = None
    if exe and os.path.isfile(exe):
        return exe
    raise FacefixError(FFMPEG_MISSING)


def start_ffmpeg(args: list[str], **kwargs: Any) -> subprocess.Popen:
    # Own session: Ctrl-C reaches Python alone, which stops the run and deletes the
    # temporary output. An ffmpeg that got SIGINT itself would end its stream early
    # and cleanly, and a shortened video could pass for a finished one.
    return subprocess.Popen(args, start_new_session=True, **kwargs)


# -- probing ---------------------------------------------------------------------


def check_readable(path: Path) -> None:
    """Fail early, with the reason, for what ffmpeg would only call 'invalid data'."""
    if not path.exists():
        raise InputError(path, "not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not a video file")
    try:
        with open(path, "rb") as stream:
            first = stream.read(1)
    except OSError as error:
        raise InputError(path, f"unreadable ({error.strerror or error})") from None
    if not first:
        raise InputError(path, "empty file (0 bytes)")


def probe(path: Path, ffmpeg_exe: str) -> VideoInfo:
    """Stream information without ffprobe; raises InputError for unusable inputs."""
    check_readable(path)
    result = subprocess.run(probe_args(ffmpeg_exe, path), capture_output=True)
    stderr = result.stderr.decode("utf-8", "replace")
    info = parse_input_header(stderr, path)
    time_base = None
    times, keyframes = [], []
    for line in result.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            num, den = line.split(":", 1)[1].strip().split("/")
            time_base = Fraction(int(num), int(den))
        elif line and not line.startswith("#") and time_base is not None:
            fields = line.split(",")
            try:
                time = float(int(fields[2]) * time_base)
            except (ValueError, IndexError):
                continue
            times.append(time)
            if is_key_packet(fields):
                keyframes.append(time)
    if not times:
        raise InputError(path, "the video stream has no frames")
    return VideoInfo(**{**info.__dict__, "packet_times": tuple(sorted(times)), "keyframe_times": tuple(sorted(keyframes)),
                                        "time_base": time_base})


def is_key_packet(fields: list[str]) -> bool:
    """framecrc writes ``F=0x..`` only for packets whose flags aren't exactly "key"."""
    for field in fields[6:]:
        field = field.strip()
        if field.startswith("F=0x"):
            return bool(int(field[4:], 16) & 1)
    return True
