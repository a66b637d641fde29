"""Finding ffmpeg, starting it, and probing inputs.

ffmpeg comes from PATH when it is 6.0 or later, else the binary the imageio-ffmpeg package
ships (Debian 12's ffmpeg is 5.1). ffprobe is
not needed: stream information comes from the header ffmpeg prints for ``-i`` and
from one demux-only pass (``-c copy -f framecrc``) that lists the packets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from facefix.errors import FacefixError, InputError
from facefix.video.commands import probe_args
from facefix.video.info import VideoInfo, parse_input_header

FFMPEG_MISSING = "ffmpeg not found: install ffmpeg on PATH, or the imageio-ffmpeg package (pip install imageio-ffmpeg)"


#: The oldest ffmpeg facefix drives: ``-display_rotation`` (rotated videos) came in 6.0.
MIN_FFMPEG_MAJOR = 6


def ffmpeg_version(exe: str) -> tuple[int, ...] | None:
    """The ``(major, minor, ...)`` version ``exe -version`` reports (None for a git build's
    date-only name or a binary that won't run)."""
    if exe not in _VERSIONS:
        try:
            first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
        except (OSError, subprocess.SubprocessError):
            first = ""
        match = re.search(r"version n?(\d+(?:\.\d+)*)", first)
        _VERSIONS[exe] = tuple(int(part) for part in match.group(1).split(".")) if match else None
    return _VERSIONS[exe]


_VERSIONS: dict[str, tuple[int, ...] | None] = {}


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or installed without its binary
        return None
    return exe if exe and os.path.isfile(exe) else None


def find_ffmpeg() -> str:
    """``$FACEFIX_FFMPEG`` when set (used as given, whatever its version); else ffmpeg from
    PATH when it is recent enough (6.0 or later, or a build without a version number), else
    the binary the imageio-ffmpeg package ships, else whatever PATH has."""
    chosen = os.environ.get("FACEFIX_FFMPEG")
    if chosen:
        exe = shutil.which(chosen)
        if exe is None:
            raise FacefixError(f"FACEFIX_FFMPEG={chosen}: no such ffmpeg (not an executable file, nor on PATH)")
        return exe
    found = shutil.which("ffmpeg")
    if found:
        version = ffmpeg_version(found)
        if version is None or version[0] >= MIN_FFMPEG_MAJOR:
            return found
    bundled = _bundled_ffmpeg()
    if bundled:
        return bundled
    if found:
        return found  # an old one: what it can't do (a rotated video) says so in one line
    raise FacefixError(FFMPEG_MISSING)


def start_ffmpeg(args: list[str], **kwargs: Any) -> subprocess.Popen:
    # Own session: Ctrl-C reaches Python alone, which stops the run and deletes the
    # temporary output. An ffmpeg that got SIGINT itself would end its stream early
    # and cleanly, and a shortened video could pass for a finished one.
    # And where util-linux's setpriv is at hand, the kernel kills ffmpeg when the thread
    # that started it dies (every caller waits for its ffmpeg in that thread), so a
    # SIGKILLed facefix leaves no ffmpeg finishing a file under a temporary name.
    return subprocess.Popen([*_DIE_WITH_PARENT, *args], start_new_session=True, **kwargs)


_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []


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


def missing_video(info: VideoInfo) -> str | None:
    """Why a video is cut short, or None: a file whose header (an MP4's moov atom written
    first) promises a duration its video packets stop far short of lost its end, and
    restoring it would write a few frames and call it done. Also a still image under a
    video's name: ffmpeg reads a JPEG as a one-frame video."""
    container = (info.container or "").split(",")[0].strip()
    if container == "image2" or container.endswith("_pipe"):
        kind = container.removesuffix("_pipe").upper() if container.endswith("_pipe") else "an image"
        return f"a still image ({kind}), not a video: restore it with `facefix restore`"
    if not info.duration or not info.packet_times:
        return None
    first, last = info.packet_times[0], info.packet_times[-1]
    step = (last - first) / max(1, len(info.packet_times) - 1)
    covered = last - min(first, 0.0) + step
    if covered < 0.5 * info.duration and info.duration - covered > 1.0:
        return (f"truncated: the container says {info.duration:.2f} s, but its video stops at {covered:.2f} s "
                f"({len(info.packet_times)} frames); the rest of the file is missing")
    return None
