"""Restoring the faces of a video: ffmpeg pipes in and out, face tracks, overlapping stages.

Frames never touch the disk and are never all in memory:

    ffmpeg (decode) ─ bgr24 pipe ─▶ read ─▶ detect + track + align ─▶ restore (batches
    across frames) ─▶ paste back ─ Matroska pipe ─▶ ffmpeg (encode + audio from the input)

Each arrow is a bounded queue between threads, so decoding, the networks and encoding
run at the same time, and memory holds a fixed number of frames whatever the length.

Timing is kept exactly. ffmpeg's ``showinfo`` filter reports every decoded frame's
timestamp (in the stream's own time base) on stderr; frames go to the encoder in a
minimal Matroska stream that carries those timestamps, and mp4/mov outputs get the
input's time base as their track timescale. So constant rates such as 30000/1001,
variable frame rates and the video's start offset against the audio all survive. A raw
pipe would make every frame last ``1/fps``.

ffprobe is not needed: stream information comes from the header ffmpeg prints for
``-i`` and from one demux-only pass (``-c copy -f framecrc``) that lists the packets.
"""

from __future__ import annotations

import collections
import math
import os
import queue
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import cv2
import ffmpeg
import numpy as np
from tqdm import tqdm

from facefix import alignment
from facefix.atomic import atomic_path
from facefix.errors import FacefixError, InputError
from facefix.pipeline import (
    MIN_EYE_DISTANCE,
    AlignedFace,
    PipelineOptions,
    detect,
    paste_faces,
    restore_faces,
    select_faces,
)
from facefix.tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, FaceTracker

FFMPEG_MISSING = "ffmpeg not found: install ffmpeg on PATH, or the imageio-ffmpeg package (pip install imageio-ffmpeg)"

#: Output extension → ffmpeg muxer.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
#: Audio codecs each muxer takes as they are; others are re-encoded to the fallback.
#: Matroska takes everything ffmpeg can demux.
COPYABLE_AUDIO: dict[str, frozenset[str] | None] = {
    "mp4": frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "alac", "opus", "flac"}),
    "mov": frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le",
                      "pcm_s24be", "pcm_s32le", "pcm_f32le", "pcm_u8"}),
    "matroska": None,
    "webm": frozenset({"opus", "vorbis"}),
    "avi": frozenset({"mp3", "mp2", "ac3", "pcm_s16le", "pcm_u8", "aac"}),
}
FALLBACK_AUDIO = {"mp4": "aac", "mov": "aac", "matroska": "aac", "webm": "libopus", "avi": "libmp3lame"}
#: Video encoders a WebM file may hold.
WEBM_VIDEO = frozenset({"libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1", "librav1e", "av1_nvenc"})
#: Constant-quality defaults: visually transparent for x264/x265 (CRF 18 costs the
#: clips in ../shared/videos under 1 dB against their own decode).
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libvpx": 10, "libaom-av1": 24, "libsvtav1": 24}
#: Pixel formats whose chroma is subsampled horizontally / vertically: sizes must be even.
SUBSAMPLED = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "nv12": (2, 2), "yuv420p10le": (2, 2), "yuv422p": (2, 1),
              "yuv422p10le": (2, 1)}
#: Frames waiting between two stages; what bounds memory.
QUEUE_FRAMES = 4


# -- ffmpeg -----------------------------------------------------------------------


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


def _popen(args: list[str], **kwargs: Any) -> subprocess.Popen:
    # Own session: Ctrl-C reaches Python alone, which stops the run and deletes the
    # temporary output. An ffmpeg that got SIGINT itself would end its stream early
    # and cleanly, and a shortened video could pass for a finished one.
    return subprocess.Popen(args, start_new_session=True, **kwargs)


_NOISE = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def ffmpeg_reason(stderr_lines: list[str] | str) -> str:
    """The last meaningful line ffmpeg printed, without its ``[component @ 0x..]`` prefix."""
    lines = stderr_lines.splitlines() if isinstance(stderr_lines, str) else list(stderr_lines)
    cleaned = [_NOISE.sub("", line).strip() for line in lines]
    cleaned = [line for line in cleaned if line and not line.startswith(("frame=", "size=", "Conversion failed"))]
    if not cleaned:
        return "ffmpeg failed without a message"
    last = cleaned[-1]
    if last.startswith("Error opening input files:") or last.startswith("Error opening output files:"):
        last = last.split(":", 1)[1].strip()
    return last


# -- stream information -------------------------------------------------------------


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

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height of the upright frames the decoder delivers."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def frames_between(self, start: float | None, end: float | None) -> int:
        """Estimated frames in ``[start, end)``, from the packet list."""
        low = -math.inf if start is None else start - 1e-6
        high = math.inf if end is None else end - 1e-6
        return sum(1 for t in self.packet_times if low <= t < high)


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
        raise InputError(path, f"not a video file ffmpeg can read ({ffmpeg_reason(lines)})")
    container = header.split(",", 1)[1].rsplit(", from", 1)[0].strip() if "," in header else "?"
    duration = None
    video: dict[str, Any] | None = None
    audio: list[str] = []
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
    return VideoInfo(path=path, container=container, duration=duration, audio=tuple(audio), **video)


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


def probe_args(ffmpeg_exe: str, path: Path) -> list[str]:
    """``ffmpeg -i`` plus a demux-only pass that lists the video packets (no decoding)."""
    stream = ffmpeg.input(str(path))["V:0?"]  # V: video that isn't a cover picture
    out = ffmpeg.output(stream, "pipe:1", format="framecrc", c="copy", an=None, sn=None, dn=None)
    return _with_globals(out.compile(cmd=ffmpeg_exe), "-nostats")


def _with_globals(args: list[str], *extra: str) -> list[str]:
    # ffmpeg-python appends global options last; ffmpeg wants them before the files
    return [args[0], "-hide_banner", "-nostdin", *extra, *args[1:]]


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
    times = []
    for line in result.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            num, den = line.split(":", 1)[1].strip().split("/")
            time_base = Fraction(int(num), int(den))
        elif line and not line.startswith("#") and time_base is not None:
            fields = line.split(",")
            try:
                times.append(float(int(fields[2]) * time_base))
            except (ValueError, IndexError):
                continue
    if not times:
        raise InputError(path, "the video stream has no frames")
    return VideoInfo(**{**info.__dict__, "packet_times": tuple(sorted(times))})


# -- command builders (pure) ---------------------------------------------------------


def parse_time(text: str | float | None) -> float | None:
    """Seconds from ``12.5``, ``1:02.5`` or ``1:02:03.5``; None stays None."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        parts = str(text).strip().split(":")
        if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+(\.\d*)?|\.\d+", p) for p in parts):
            raise ValueError(f"not a time: {text!r} (use seconds, MM:SS or HH:MM:SS, e.g. 12.5 or 1:02.5)")
        value = 0.0
        for part in parts:
            value = value * 60 + float(part)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a time: {text!r}")
    return value


def decode_args(ffmpeg_exe: str, path: Path, start: float | None = None, end: float | None = None) -> list[str]:
    """Decode the first real video stream to upright bgr24 frames on stdout.

    Input ``-ss``/``-to`` seek frame-accurately (frames before ``start`` are decoded and
    dropped); ``fps_mode passthrough`` delivers exactly the decoded frames, never a
    duplicated or dropped one; ``showinfo`` prints each frame's timestamp to stderr.
    """
    options = {key: value for key, value in (("ss", start), ("to", end)) if value is not None}
    stream = ffmpeg.input(str(path), **options)["V:0"].filter("showinfo", checksum=0)
    out = ffmpeg.output(stream, "pipe:1", format="rawvideo", pix_fmt="bgr24", fps_mode="passthrough")
    return _with_globals(out.compile(cmd=ffmpeg_exe), "-nostats", "-loglevel", "info")


def output_container(path: Path) -> str:
    """The ffmpeg muxer for an output file name."""
    container = CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise FacefixError(f"{path}: unsupported output type {path.suffix or '(none)'!r}; "
                           f"use one of {', '.join(sorted(CONTAINERS))}")
    return container


def audio_codecs(container: str, codecs: tuple[str, ...] | list[str]) -> list[str]:
    """Per audio stream: ``copy`` when the container takes the codec, else its fallback encoder."""
    allowed = COPYABLE_AUDIO.get(container)
    return ["copy" if allowed is None or codec in allowed else FALLBACK_AUDIO[container] for codec in codecs]


def video_codec_options(codec: str, crf: float | None, preset: str | None) -> dict[str, Any]:
    """Encoder options for constant-quality encoding with ``codec``."""
    options: dict[str, Any] = {"c:v": codec}
    quality = crf if crf is not None else DEFAULT_CRF.get(codec)
    if quality is not None:
        if codec in ("libx264", "libx265", "libsvtav1"):
            options["crf"] = _number(quality)
        elif codec in ("libvpx", "libvpx-vp9", "libaom-av1"):
            options["crf"] = _number(quality)
            options["b:v"] = 0  # constant quality, not a bitrate cap
        elif codec.endswith(("_nvenc", "_qsv", "_amf")):
            options["rc"] = "vbr"
            options["cq" if codec.endswith("_nvenc") else "global_quality"] = _number(quality)
        else:
            options["q:v"] = _number(quality)
    if preset is not None:
        options["preset"] = preset
    return options


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class EncodeSettings:
    codec: str = "libx264"
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str = "yuv420p"


def check_codec(container: str, codec: str) -> None:
    if container == "webm" and codec not in WEBM_VIDEO:
        raise FacefixError(f"WebM holds VP8, VP9 or AV1 video, not {codec}: choose --codec libvpx-vp9 "
                           f"(or write .mp4/.mkv)")


def output_size(width: int, height: int, upscale: float, pix_fmt: str) -> tuple[int, int]:
    """Frame size written: ``round(size * upscale)``, made even where the pixel format
    subsamples chroma (encoders refuse odd 4:2:0 sizes), by dropping the last row/column."""
    out_w, out_h = max(1, round(width * upscale)), max(1, round(height * upscale))
    step_x, step_y = SUBSAMPLED.get(pix_fmt, (1, 1))
    return max(step_x, out_w - out_w % step_x), max(step_y, out_h - out_h % step_y)


def encode_args(
    ffmpeg_exe: str,
    source: Path,
    target: Path,
    info: VideoInfo,
    settings: EncodeSettings,
    *,
    container: str,
    first_time: float = 0.0,
    time_base: Fraction | None = None,
    start: float | None = None,
    end: float | None = None,
) -> list[str]:
    """Encode the Matroska frame stream on stdin to ``target``, with the input's audio.

    - ``first_time``: the first frame's time (s); the pipe's timestamps start at 0, and
      ``-itsoffset`` puts the video back where it was against the audio.
    - ``time_base``: the input stream's time base; mp4/mov tracks get it as their
      timescale, so every timestamp is written exactly as it was read.
    - ``start``/``end``: the same trim as the decoder, for the audio.
    - The input's rotation goes back as display metadata (frames are stored as in the
      input); its sample aspect ratio and colour tags are kept; global metadata is copied.
    """
    pipe_options: dict[str, Any] = {"format": "matroska"}
    if first_time:
        pipe_options["itsoffset"] = f"{first_time:.6f}"
    if info.rotation:
        # frames arrive in the input's stored orientation; without -noautorotate ffmpeg
        # would turn them upright and drop the rotation instead of writing it
        pipe_options["display_rotation"] = info.rotation
        pipe_options["noautorotate"] = None
    video = ffmpeg.input("pipe:0", **pipe_options)["v:0"]
    if info.sar and info.sar[0] > 0 and info.sar[0] != info.sar[1]:
        video = video.filter("setsar", f"{info.sar[0]}/{info.sar[1]}")
    streams = [video]
    options: dict[str, Any] = {"format": container, "fps_mode": "passthrough", "pix_fmt": settings.pix_fmt}
    options.update(video_codec_options(settings.codec, settings.crf, settings.preset))
    if info.audio:
        trim = {key: value for key, value in (("ss", start), ("to", end)) if value is not None}
        original = ffmpeg.input(str(source), **trim)
        options["map_metadata"] = 1  # title, dates...: only reachable through a mapped input
        for index, codec in enumerate(audio_codecs(container, info.audio)):
            streams.append(original[f"a:{index}"])
            options[f"c:a:{index}"] = codec
    if time_base is not None:
        # without this ffmpeg encodes on a 1/frame-rate grid guessed from the first
        # frames, which moves the frames of a variable-rate video
        options["enc_time_base:v"] = f"{time_base.numerator}/{time_base.denominator}"
    if container in ("mp4", "mov"):
        options["movflags"] = "+faststart"  # index first: playable while downloading
        if time_base is not None and time_base.numerator == 1 and time_base.denominator < 2**31:
            options["video_track_timescale"] = time_base.denominator
    for key, value in (("color_range", info.color_range), ("colorspace", info.color_space),
                       ("color_primaries", info.color_primaries), ("color_trc", info.color_trc)):
        if value:
            options[key] = value
    out = ffmpeg.output(*streams, str(target), **options)
    return _with_globals(out.compile(cmd=ffmpeg_exe, overwrite_output=True), "-nostats", "-loglevel", "error")


# -- Matroska frame stream ------------------------------------------------------------
# The smallest Matroska that ffmpeg reads as timestamped raw video: an EBML header, a
# Segment of unknown size (it is a stream), one V_UNCOMPRESSED BGR24 track, then one
# Cluster per frame holding a Block and its duration. Timestamps are microseconds.


def _ebml_size(size: int) -> bytes:
    for length in range(1, 9):
        if size < (1 << (7 * length)) - 1:  # all-ones is reserved for "unknown"
            return (size | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"EBML element too large: {size} bytes")


def _element(element_id: bytes, payload: bytes) -> bytes:
    return element_id + _ebml_size(len(payload)) + payload


def _uint(element_id: bytes, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _text(element_id: bytes, value: str) -> bytes:
    return _element(element_id, value.encode("utf-8"))


def matroska_header(width: int, height: int) -> bytes:
    """Stream header for ``width`` x ``height`` BGR24 frames with microsecond timestamps."""
    ebml = _element(b"\x1a\x45\xdf\xa3", b"".join([
        _uint(b"\x42\x86", 1), _uint(b"\x42\xf7", 1), _uint(b"\x42\xf2", 4), _uint(b"\x42\xf3", 8),
        _text(b"\x42\x82", "matroska"), _uint(b"\x42\x87", 4), _uint(b"\x42\x85", 2),
    ]))
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"  # unknown size
    info = _element(b"\x15\x49\xa9\x66", _uint(b"\x2a\xd7\xb1", 1000) + _text(b"\x4d\x80", "facefix")
                    + _text(b"\x57\x41", "facefix"))
    video = _element(b"\xe0", _uint(b"\xb0", width) + _uint(b"\xba", height) + _element(b"\x2e\xb5\x24", b"BGR\x18"))
    track = _element(b"\xae", _uint(b"\xd7", 1) + _uint(b"\x73\xc5", 1) + _uint(b"\x83", 1)
                     + _text(b"\x22\xb5\x9c", "und")  # Matroska's default language is English
                     + _text(b"\x86", "V_UNCOMPRESSED") + video)
    return ebml + segment + info + _element(b"\x16\x54\xae\x6b", track)


def matroska_frame(timestamp_us: int, duration_us: int, frame_bytes: int) -> tuple[bytes, bytes]:
    """The bytes that go before and after one frame's pixels: a Cluster at
    ``timestamp_us`` holding a BlockGroup (the Block, then the frame's duration)."""
    block_head = b"\x81" + struct.pack(">h", 0) + b"\x00"  # track 1, no offset, no flags
    block_size = len(block_head) + frame_bytes
    duration = _uint(b"\x9b", max(0, duration_us))
    block = b"\xa1" + _ebml_size(block_size)
    group_size = len(block) + block_size + len(duration)
    timestamp = _uint(b"\xe7", max(0, timestamp_us))
    group = b"\xa0" + _ebml_size(group_size)
    cluster_size = len(timestamp) + len(group) + group_size
    before = b"\x1f\x43\xb6\x75" + _ebml_size(cluster_size) + timestamp + group + block + block_head
    return before, duration


# -- decoder and encoder processes ------------------------------------------------------


@dataclass
class Frame:
    index: int
    pixels: np.ndarray  # upright BGR uint8
    time: float  # presentation time, seconds
    duration: float  # seconds


_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(\S+)\s+pts_time:\S+(?:\s+duration:\s*(\S+))?")
_SHOWINFO_CONFIG = re.compile(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)")


class _StderrReader(threading.Thread):
    """Drains a process's stderr (a full pipe would stall ffmpeg), keeping the last
    lines for error messages and handing ``showinfo`` frame timings to a queue."""

    def __init__(self, stream: IO[bytes], timings: queue.Queue | None = None):
        super().__init__(daemon=True)
        self.stream = stream
        self.timings = timings
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.time_base: Fraction | None = None
        self.frame_rate: Fraction | None = None
        self.configured = threading.Event()

    def run(self) -> None:
        try:
            self._drain()
        except (OSError, ValueError):  # the process was killed under us
            pass
        finally:
            self.configured.set()
            if self.timings is not None:
                self.timings.put(None)
            try:
                self.stream.close()
            except (OSError, ValueError):
                pass

    def _drain(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if self.timings is not None and "showinfo" in line.lower():
                config = _SHOWINFO_CONFIG.search(line)
                if config and self.time_base is None:
                    num, den, rate_num, rate_den = map(int, config.groups())
                    self.time_base = Fraction(num, den) if den else None
                    self.frame_rate = Fraction(rate_num, rate_den) if rate_den and rate_num else None
                    self.configured.set()
                timing = _SHOWINFO.search(line)
                if timing:
                    pts, duration = timing.group(2), timing.group(3)
                    self.timings.put((int(timing.group(1)), _int_or_none(pts), _int_or_none(duration)))
                continue
            if line.strip():
                self.tail.append(line)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None  # NOPTS


class FrameReader:
    """Upright BGR frames of a video, one at a time, from an ffmpeg pipe."""

    def __init__(self, ffmpeg_exe: str, info: VideoInfo, start: float | None = None, end: float | None = None):
        self.info = info
        self.width, self.height = info.display_size
        self.frame_bytes = self.width * self.height * 3
        self._timings: queue.Queue = queue.Queue()
        self.process = _popen(decode_args(ffmpeg_exe, info.path, start, end), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stderr = _StderrReader(self.process.stderr, self._timings)
        self._stderr.start()
        self._timings_done = False

    @property
    def time_base(self) -> Fraction | None:
        self._stderr.configured.wait(timeout=30)
        return self._stderr.time_base

    def _read_exact(self) -> bytearray | None:
        buffer = bytearray(self.frame_bytes)
        view = memoryview(buffer)
        filled = 0
        while filled < self.frame_bytes:
            count = self.process.stdout.readinto(view[filled:])
            if not count:
                break
            filled += count
        if filled == 0:
            return None
        if filled < self.frame_bytes:
            raise FacefixError(f"{self.info.path}: the decoder stopped inside a frame ({self._reason()})")
        return buffer

    def _next_timing(self, index: int) -> tuple[int | None, int | None]:
        while not self._timings_done:
            try:
                item = self._timings.get(timeout=60)
            except queue.Empty:
                break
            if item is None:
                self._timings_done = True
                break
            number, pts, duration = item
            if number == index:
                return pts, duration
        return None, None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        previous_time: float | None = None
        previous_duration = 0.0
        while True:
            buffer = self._read_exact()
            if buffer is None:
                break
            pts, duration = self._next_timing(index)
            time_base = self._stderr.time_base
            rate = self._stderr.frame_rate or Fraction(25)
            step = float(1 / rate)
            if pts is not None and time_base is not None:
                t = float(pts * time_base)
            else:  # no timestamp (raw streams): one nominal frame after the last
                t = 0.0 if previous_time is None else previous_time + (previous_duration or step)
            d = float(duration * time_base) if duration and time_base is not None else step
            pixels = np.frombuffer(buffer, np.uint8).reshape(self.height, self.width, 3)
            yield Frame(index=index, pixels=pixels, time=t, duration=d)
            previous_time, previous_duration = t, d
            index += 1
        self.process.stdout.close()
        code = self.process.wait()
        self._stderr.join(timeout=5)
        if code != 0:
            raise FacefixError(f"{self.info.path}: decoding failed ({self._reason()})")

    def _reason(self) -> str:
        self._stderr.join(timeout=2)
        return ffmpeg_reason(list(self._stderr.tail))

    def close(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen) -> None:
    """Kill and reap. Its output pipes are left to the threads reading them, which see
    end-of-file now (closing a pipe under a reading thread is not safe)."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    if process.stdin is not None:
        try:
            process.stdin.close()
        except (OSError, ValueError):
            pass


class FrameWriter:
    """Feeds timestamped frames to an encoding ffmpeg through a Matroska pipe."""

    def __init__(self, args: list[str], width: int, height: int, target: Path):
        self.width, self.height = width, height
        self.target = target
        self.frames = 0
        self._last_us = -1
        self._last_duration_us = 0
        self.process = _popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._stderr = _StderrReader(self.process.stderr)
        self._stderr.start()
        self._write(matroska_header(width, height))

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self.process.stdin.write(data)
        except (BrokenPipeError, ValueError):
            raise FacefixError(f"{self.target}: encoding failed ({self._reason()})") from None

    def write(self, pixels: np.ndarray, time_us: int, duration_us: int) -> None:
        if pixels.shape != (self.height, self.width, 3) or pixels.dtype != np.uint8:
            raise FacefixError(f"frame of {pixels.shape} {pixels.dtype} for a {self.width}x{self.height} bgr24 stream")
        if time_us <= self._last_us:  # broken input timestamps: keep the output monotonic
            time_us = self._last_us + max(1, self._last_duration_us)
        before, after = matroska_frame(time_us, duration_us, pixels.nbytes)
        self._write(before)
        self._write(memoryview(np.ascontiguousarray(pixels)).cast("B"))
        self._write(after)
        self._last_us, self._last_duration_us = time_us, duration_us
        self.frames += 1

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        code = self.process.wait()
        self._stderr.join(timeout=5)
        if code != 0:
            raise FacefixError(f"{self.target}: encoding failed ({self._reason()})")

    def _reason(self) -> str:
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._stderr.join(timeout=2)
        return ffmpeg_reason(list(self._stderr.tail))

    def abort(self) -> None:
        _stop(self.process)


# -- the restoring run -------------------------------------------------------------


@dataclass
class VideoOptions:
    upscale: float = 1.0
    only_center_face: bool = False
    largest_face: bool = False
    min_face_size: float = 0.0
    batch_size: int = 4
    color_match: bool = False
    detect_every: int = 1
    smoothing: bool = True
    smooth_cutoff: float = DEFAULT_MIN_CUTOFF
    smooth_beta: float = DEFAULT_BETA
    start: float | None = None
    end: float | None = None
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    seed: int = 0
    quiet: bool = False


@dataclass
class VideoSummary:
    output: Path
    frames: int = 0
    faces: int = 0
    tracks: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))

    def line(self) -> str:
        fps = self.frames / self.seconds if self.seconds else 0.0
        tracks = f"{self.tracks} face track{'' if self.tracks == 1 else 's'}"
        return (f"{self.frames} frames, {self.faces} faces restored ({tracks}) in {self.seconds:.1f} s "
                f"({fps:.2f} fps) -> {self.output}")


@dataclass
class _Work:
    frame: Frame
    faces: list[AlignedFace]

    @property
    def ready(self) -> bool:
        return all(face.restored is not None for face in self.faces)


class _Stopped(Exception):
    """Another stage failed or the user interrupted: leave quietly."""


_END = object()


class VideoRestorer:
    """Restores the faces of one video into another file, atomically."""

    def __init__(self, restorer: Any, detector: Any, blender: Any, parser: Any | None = None,
                 options: VideoOptions | None = None, ffmpeg_exe: str | None = None,
                 report: Callable[[str], None] | None = None):
        self.restorer = restorer
        self.detector = detector
        self.blender = blender
        self.parser = parser
        self.options = options or VideoOptions()
        self.ffmpeg = ffmpeg_exe or find_ffmpeg()
        self.report = report or (lambda message: tqdm.write(message, file=sys.stderr))
        needs_parsing = getattr(restorer, "needs_parsing", False) or getattr(blender, "needs_parsing", False)
        if needs_parsing and parser is None:
            raise FacefixError("the chosen restorer or blender needs parsing maps: choose a parser with --parser")
        if self.options.detect_every < 1:
            raise FacefixError("--detect-every must be at least 1")
        self._selection = PipelineOptions(only_center_face=self.options.only_center_face,
                                          largest_face=self.options.largest_face,
                                          min_face_size=self.options.min_face_size)

    # -- stages (each runs in its own thread) --

    def _decode(self, reader: FrameReader, out: queue.Queue) -> None:
        iterator = iter(reader)
        while True:
            started = time.perf_counter()
            frame = next(iterator, None)
            self._add("decode", started)
            if frame is None:
                break
            self._put(out, frame)
        self._put(out, _END)

    def _analyse(self, source: queue.Queue, out: queue.Queue) -> None:
        options = self.options
        tracker = FaceTracker(smoothing=options.smoothing, min_cutoff=options.smooth_cutoff, beta=options.smooth_beta)
        size = self.restorer.input_size
        track_ids: set[int] = set()
        while True:
            frame = self._get(source)
            if frame is _END:
                break
            started = time.perf_counter()
            # a frame is detected on schedule, and whenever no face is being tracked, so
            # a face entering the picture is found without waiting for the next slot
            detections = None
            if frame.index % options.detect_every == 0 or tracker.active == 0:
                found = detect(self.detector, frame.pixels)
                detections = select_faces(found, frame.pixels.shape, self._selection)
            self._add("detect", started)
            started = time.perf_counter()
            gray = cv2.cvtColor(frame.pixels, cv2.COLOR_BGR2GRAY)
            tracked = tracker.update(detections, frame.time, gray)
            self._add("track", started)
            started = time.perf_counter()
            faces = []
            for face in tracked:
                if np.linalg.norm(face.landmarks[1] - face.landmarks[0]) < MIN_EYE_DISTANCE:
                    continue
                affine = alignment.estimate_affine(face.landmarks, size)
                faces.append(AlignedFace(crop=alignment.warp_face(frame.pixels, affine, size), affine=affine))
                track_ids.add(face.track_id)
            self._add("align", started)
            self._put(out, _Work(frame=frame, faces=faces))
        self._summary.tracks = len(track_ids)
        self._put(out, _END)

    def _restore(self, source: queue.Queue, out: queue.Queue) -> None:
        import torch

        batch_size = max(1, self.options.batch_size)
        # frames held while their batch fills; bounded so a run of faceless frames
        # can't pile up behind a partial batch
        limit = batch_size + QUEUE_FRAMES
        pending: collections.deque[_Work] = collections.deque()
        waiting: list[AlignedFace] = []

        def run_batch(faces: list[AlignedFace]) -> None:
            # restorers that draw noise draw the same noise for every batch, so a still
            # face doesn't shimmer from frame to frame
            torch.manual_seed(self.options.seed)
            restore_faces(self.restorer, self.parser, faces, self._timed)

        def flush(everything: bool) -> None:
            while waiting and (everything or len(waiting) >= batch_size or len(pending) >= limit):
                batch, waiting[:] = waiting[:batch_size], waiting[batch_size:]
                run_batch(batch)
            while pending and pending[0].ready:
                self._put(out, pending.popleft())

        while True:
            work = self._get(source)
            if work is _END:
                break
            pending.append(work)
            waiting.extend(work.faces)
            flush(False)
        flush(True)
        self._put(out, _END)

    def _encode(self, source: queue.Queue, reader: FrameReader, info: VideoInfo, source_path: Path,
                temporary: Path, target: Path, container: str, progress: tqdm) -> None:
        settings = self.options.encode
        rotation = info.rotation
        writer: FrameWriter | None = None
        first_time = 0.0
        try:
            while True:
                work = self._get(source)
                if work is _END:
                    break
                frame = work.frame
                started = time.perf_counter()
                pixels = paste_faces(frame.pixels, work.faces, self.restorer, self.blender, self.options.upscale,
                                     self.options.color_match)
                if rotation:  # back to the input's stored orientation; the metadata turns it upright
                    pixels = np.rot90(pixels, -(rotation // 90))
                self._add("blend", started)
                started = time.perf_counter()
                if writer is None:
                    first_time = frame.time
                    width, height = output_size(info.width, info.height, self.options.upscale, settings.pix_fmt)
                    exact = (round(info.width * self.options.upscale), round(info.height * self.options.upscale))
                    if (width, height) != exact and not self.options.quiet:
                        self.report(f"facefix: note: {settings.pix_fmt} needs even sizes; {exact[0]}x{exact[1]} "
                                    f"frames are cropped to {width}x{height}")
                    args = encode_args(self.ffmpeg, source_path, temporary, info, settings, container=container,
                                       first_time=first_time, time_base=reader.time_base,
                                       start=self.options.start, end=self.options.end)
                    writer = FrameWriter(args, width, height, target)
                    self._writer = writer
                pixels = np.ascontiguousarray(pixels[: writer.height, : writer.width])
                writer.write(pixels, round((frame.time - first_time) * 1e6), round(frame.duration * 1e6))
                self._add("encode", started)
                self._summary.frames += 1
                self._summary.faces += len(work.faces)
                progress.update(1)
            if writer is None:
                span = "" if self.options.start is None and self.options.end is None else " between --start and --end"
                raise InputError(source_path, f"no video frames to decode{span}")
            started = time.perf_counter()
            writer.close()
            self._add("encode", started)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    # -- plumbing --

    def _add(self, stage: str, started: float) -> None:
        self._summary.stage_seconds[stage] += time.perf_counter() - started

    def _timed(self, stage: str, function: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self._add(stage, started)

    def _put(self, target: queue.Queue, item: Any) -> None:
        while not self._stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _get(self, source: queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)
            except _Stopped:
                pass
            except BaseException as error:
                with self._lock:
                    if self._error is None:
                        self._error = error
                self._stop.set()

        thread = threading.Thread(target=body, name=f"facefix-{name}", daemon=True)
        thread.start()
        return thread

    def run(self, source: Path, target: Path, info: VideoInfo | None = None) -> VideoSummary:
        """Restore ``source`` into ``target`` (written under a temporary name, then renamed).

        ``info`` is ``probe(source)`` when the caller has it already.
        """
        source, target = Path(source), Path(target)
        if target.resolve() == source.resolve():
            raise FacefixError(f"{target}: the output would overwrite the input; choose another -o")
        container = output_container(target)
        check_codec(container, self.options.encode.codec)
        info = info if info is not None else probe(source, self.ffmpeg)
        start, end = self.options.start, self.options.end
        if start is not None and end is not None and end <= start:
            raise FacefixError(f"--end ({end:g} s) must be after --start ({start:g} s)")
        expected = info.frames_between(start, end)
        if expected == 0 and (start is not None or end is not None):
            raise InputError(source, "no video frames between --start and --end")

        self._summary = VideoSummary(output=target)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._writer: FrameWriter | None = None
        reader = FrameReader(self.ffmpeg, info, start, end)
        progress = tqdm(total=expected, desc="video", unit="frame", disable=self.options.quiet, file=sys.stderr,
                        dynamic_ncols=True)
        decoded, analysed, restored = (queue.Queue(maxsize=QUEUE_FRAMES) for _ in range(3))
        started = time.perf_counter()
        threads = []
        # the cleanup below runs inside the block: the encoder is stopped before its
        # temporary file is removed, so it can't recreate the file afterwards
        with atomic_path(target) as temporary:
            try:
                threads = [
                    self._thread("decode", self._decode, reader, decoded),
                    self._thread("analyse", self._analyse, decoded, analysed),
                    self._thread("restore", self._restore, analysed, restored),
                    self._thread("encode", self._encode, restored, reader, info, source, temporary, target,
                                 container, progress),
                ]
                for thread in threads:
                    while thread.is_alive():  # join with a timeout, so Ctrl-C is seen at once
                        thread.join(timeout=0.2)
                        if self._stop.is_set():
                            break
                    if self._stop.is_set():
                        break
                if self._error is not None:
                    raise self._error
                if self._stop.is_set():
                    raise _Stopped
                self._verify(temporary, target)
            except BaseException as error:
                self._stop.set()
                reader.close()
                if self._writer is not None:
                    self._writer.abort()
                for thread in threads:
                    thread.join(timeout=10)
                if isinstance(error, _Stopped) and self._error is not None:
                    raise self._error from None
                raise
            finally:
                progress.close()
                reader.close()
        self._summary.seconds = time.perf_counter() - started
        return self._summary

    def _verify(self, temporary: Path, target: Path) -> None:
        """The written file must hold every frame: a muxer that dropped some is an error."""
        written = probe(temporary, self.ffmpeg)
        if len(written.packet_times) != self._summary.frames:
            raise FacefixError(f"{target}: the encoder wrote {len(written.packet_times)} frames of "
                               f"{self._summary.frames}")
