"""What facefix knows about a video stream, read from the header ffmpeg prints for ``-i``.

Pure parsing: no process is started here (:mod:`facefix.video.ffmpeg` runs ffmpeg).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facefix.errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    """What facefix needs to know about an input, read from ffmpeg's own output."""

    path: Path
    container: str  # demuxer names, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str
    width: int  # stored frame size (before rotation)
    height: int
    pix_fmt: str | None = None
    fps: str | None = None  # as ffmpeg prints it ("29.97")
    rotation: int = 0  # display rotation, degrees counter-clockwise: 0, 90, 180 or 270
    sar: tuple[int, int] | None = None
    color_range: str | None = None  # "tv" / "pc"
    color_space: str | None = None
    color_primaries: str | None = None
    color_trc: str | None = None
    duration: float | None = None  # seconds, of the whole file
    audio: tuple[str, ...] = ()  # codec of each audio stream, in order
    packet_times: tuple[float, ...] = ()  # presentation times (s) of the video packets, sorted
    keyframe_times: tuple[float, ...] = ()  # presentation times (s) of the key packets, sorted
    time_base: Fraction | None = None  # the video stream's
    subtitles: int = 0  # subtitle streams, which the output does not carry

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height of the upright frames the decoder delivers."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def frames_between(self, start: float | None, end: float | None) -> int:
        """Estimated frames in ``[start, end)``, from the packet list."""
        return len(run_times(self, start, end))


def run_times(info: VideoInfo, start: float | None, end: float | None) -> list[float]:
    """The presentation times of the frames a run over ``[start, end)`` restores, as
    :meth:`VideoInfo.frames_between` counts them."""
    low = -math.inf if start is None else start - 1e-6
    high = math.inf if end is None else end - 1e-6
    return [t for t in info.packet_times if low <= t < high]


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if current:
        parts.append("".join(current).strip())
    return parts


_STREAM = re.compile(r"^\s*Stream #0:(\d+)[^:]*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_ROTATION = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_SIZE = re.compile(r"^(\d+)x(\d+)(?:\s*\[SAR (\d+):(\d+) DAR \d+:\d+\])?")
_PIXFMT = re.compile(r"^([a-z0-9_]+)(?:\((.*)\))?$")
_COLOR_SPACES = {"bt709", "bt470bg", "smpte170m", "smpte240m", "bt2020nc", "bt2020c", "fcc", "ycgco", "gbr"}


def parse_input_header(stderr: str, path: Path) -> VideoInfo:
    """Read the ``Input #0`` block that ``ffmpeg -i`` prints (a pure function).

    Raises :class:`InputError` for a file ffmpeg can't open or one with no video stream
    (an audio file's cover picture doesn't count).
    """
    lines = stderr.splitlines()
    header = next((line for line in lines if line.startswith("Input #0")), None)
    if header is None:
        raise InputError(path, f"not a video file ffmpeg can read ({ffmpeg_reason(lines, path)})")
    container = header.split(",", 1)[1].rsplit(", from", 1)[0].strip() if "," in header else "?"
    duration = None
    video: dict[str, Any] | None = None
    audio: list[str] = []
    subtitles = 0
    current: str | None = None
    for line in lines:
        match = _DURATION.search(line)
        if match and duration is None:
            hours, minutes, seconds = match.groups()
            duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        stream = _STREAM.match(line)
        if stream:
            kind, description = stream.group(2), stream.group(3)
            current = None
            if kind == "Audio":
                audio.append(description.split()[0].rstrip(","))
            elif kind == "Subtitle":
                subtitles += 1
            elif kind == "Video" and video is None and "(attached pic)" not in description:
                video = _parse_video_description(description)
                current = "video"
            continue
        rotation = _ROTATION.search(line)
        if rotation and current == "video" and video is not None:
            video["rotation"] = int(round(float(rotation.group(1)))) % 360
    if video is None:
        what = "audio only" if audio else "no streams"
        raise InputError(path, f"no video stream ({what})")
    if video.get("rotation", 0) % 90:
        video["rotation"] = 0  # odd angles: ffmpeg's autorotate ignores them too
    return VideoInfo(path=path, container=container, duration=duration, audio=tuple(audio), subtitles=subtitles,
                     **video)


def _parse_video_description(description: str) -> dict[str, Any]:
    parts = _split_top_level(description)
    info: dict[str, Any] = {"codec": parts[0].split()[0], "width": 0, "height": 0}
    for part in parts[1:]:
        size = _SIZE.match(part)
        if size and not info["width"]:
            info["width"], info["height"] = int(size.group(1)), int(size.group(2))
            if size.group(3):
                info["sar"] = (int(size.group(3)), int(size.group(4)))
            continue
        if part.endswith(" fps"):
            info["fps"] = part[:-4].strip()
            continue
        pixfmt = _PIXFMT.match(part)
        if pixfmt and "pix_fmt" not in info and not part.endswith(("tbr", "tbn", "kb/s")):
            info["pix_fmt"] = pixfmt.group(1)
            for token in (pixfmt.group(2) or "").split(","):
                token = token.strip()
                if token in ("tv", "pc"):
                    info["color_range"] = token
                elif "/" in token:
                    space, primaries, trc = (token.split("/") + ["", ""])[:3]
                    info["color_space"], info["color_primaries"], info["color_trc"] = (
                        value if value not in ("", "unknown", "reserved") else None
                        for value in (space, primaries, trc)
                    )
                elif token in _COLOR_SPACES:
                    info["color_space"] = info["color_primaries"] = info["color_trc"] = token
    return info


_NOISE = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def ffmpeg_reason(stderr_lines: list[str] | str, path: Path | str | None = None) -> str:
    """The last meaningful line ffmpeg printed, without its ``[component @ 0x..]`` prefix, nor
    the ``PATH: `` that ffmpeg before 6 puts before an input's error (the caller names it)."""
    lines = stderr_lines.splitlines() if isinstance(stderr_lines, str) else list(stderr_lines)
    cleaned = [_NOISE.sub("", line).strip() for line in lines]
    cleaned = [line for line in cleaned if line and not line.startswith(("frame=", "size=", "Conversion failed"))]
    if not cleaned:
        return "ffmpeg failed without a message"
    opening = next((index for index, line in enumerate(cleaned)
                    if "Error while opening encoder" in line or "Could not open encoder" in line), None)
    if opening is not None:  # the lines after it only follow from it; the one before says why
        cause = cleaned[opening - 1] if opening > 0 else cleaned[opening].split(" - ")[0]
        return f"the encoder could not start: {cause}"
    last = cleaned[-1]
    if last.startswith("Error opening input files:") or last.startswith("Error opening output files:"):
        last = last.split(":", 1)[1].strip()
    if path is not None and last.startswith(f"{path}: "):
        last = last[len(f"{path}: "):]
    return last
