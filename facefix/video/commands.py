"""The ffmpeg command lines facefix runs, built by pure functions (tested as such).

Muxers, the audio codecs each takes as they are, constant-quality defaults and the
pixel formats whose sizes must be even live here too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from facefix.errors import FacefixError
from facefix.video.info import VideoInfo

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


def probe_args(ffmpeg_exe: str, path: Path) -> list[str]:
    """``ffmpeg -i`` plus a demux-only pass that lists the video packets (no decoding)."""
    stream = ffmpeg.input(str(path))["V:0?"]  # V: video that isn't a cover picture
    out = ffmpeg.output(stream, "pipe:1", format="framecrc", c="copy", an=None, sn=None, dn=None)
    return _with_globals(out.compile(cmd=ffmpeg_exe), "-nostats")


def _with_globals(args: list[str], *extra: str) -> list[str]:
    # ffmpeg-python appends global options last; ffmpeg wants them before the files
    return [args[0], "-hide_banner", "-nostdin", *extra, *args[1:]]


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


def decode_args(ffmpeg_exe: str, path: Path, start: float | None = None, end: float | None = None,
                absolute: bool = False) -> list[str]:
    """Decode the first real video stream to upright bgr24 frames on stdout.

    Input ``-ss``/``-to`` seek frame-accurately (frames before ``start`` are decoded and
    dropped); ``fps_mode passthrough`` delivers exactly the decoded frames, never a
    duplicated or dropped one; ``showinfo`` prints each frame's timestamp to stderr.
    """
    options: dict[str, Any] = {key: value for key, value in (("ss", start), ("to", end)) if value is not None}
    if absolute and start is not None:  # ``start`` is a timestamp, not a time after the file's start
        options["seek_timestamp"] = 1
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


def add_audio(streams: list[Any], options: dict[str, Any], source: Path, info: VideoInfo, container: str,
              start: float | None, end: float | None) -> None:
    """Every audio stream of ``source``, cut to ``[start, end)`` as the decoder cuts the video,
    copied where the container takes it; and the input's global metadata."""
    if not info.audio:
        return
    trim = {key: value for key, value in (("ss", start), ("to", end)) if value is not None}
    original = ffmpeg.input(str(source), **trim)
    options["map_metadata"] = 1  # title, dates...: only reachable through a mapped input
    for index, codec in enumerate(audio_codecs(container, info.audio)):
        streams.append(original[f"a:{index}"])
        options[f"c:a:{index}"] = codec


def add_track_timing(options: dict[str, Any], container: str, time_base: Fraction | None) -> None:
    """mp4/mov: the index first (playable while downloading) and the input's time base as
    the track timescale, so every timestamp is written exactly as it was read."""
    if container in ("mp4", "mov"):
        options["movflags"] = "+faststart"
        if time_base is not None and time_base.numerator == 1 and time_base.denominator < 2**31:
            options["video_track_timescale"] = time_base.denominator


def is_rgb_format(pix_fmt: str | None) -> bool:
    """Whether frames of ``pix_fmt`` are stored as RGB (PNG-in-MOV, FFV1 bgr0, x264rgb, RGBA
    ProRes 4444 ...), not as YUV."""
    name = (pix_fmt or "").lower()
    return name.startswith(("gbr", "rgb", "bgr", "argb", "abgr", "rgba", "bgra", "0rgb", "0bgr", "x2rgb", "x2bgr",
                            "pal8", "gray", "ya"))


def colour_tags(info: VideoInfo, output_pix_fmt: str) -> dict[str, str]:
    """The input's colour tags the output keeps: primaries and transfer always; the matrix and
    range only between YUV formats. An RGB input's "gbr" matrix and full range describe RGB
    samples, and on a YUV output they are wrong ("encoding failed (Invalid argument)")."""
    tags = {"color_primaries": info.color_primaries, "color_trc": info.color_trc}
    if not is_rgb_format(info.pix_fmt) and not is_rgb_format(output_pix_fmt) and info.color_space != "gbr":
        tags.update({"color_range": info.color_range, "colorspace": info.color_space})
    return {key: value for key, value in tags.items() if value}


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
    keyframes: list[int] | tuple[int, ...] = (),
) -> list[str]:
    """Encode the Matroska frame stream on stdin to ``target``, with the input's audio.

    - ``keyframes``: frame numbers (from 0, the first frame written) encoded as keyframes,
      besides the encoder's own choices.
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
    tags = colour_tags(info, settings.pix_fmt)
    # primaries and transfer ride on the frames too: recent ffmpeg writes the frames' own
    # (unknown, from the pipe) over -color_primaries / -color_trc
    frame_tags = {key: tags[key] for key in ("color_primaries", "color_trc") if key in tags}
    if frame_tags:
        video = video.filter("setparams", **frame_tags)
    streams = [video]
    options: dict[str, Any] = {"format": container, "fps_mode": "passthrough", "pix_fmt": settings.pix_fmt}
    options.update(video_codec_options(settings.codec, settings.crf, settings.preset))
    forced = [number for number in keyframes if number > 0]
    if forced:
        options["force_key_frames"] = "expr:" + "+".join(f"eq(n,{number})" for number in forced)
    add_audio(streams, options, source, info, container, start, end)
    if time_base is not None:
        # without this ffmpeg encodes on a 1/frame-rate grid guessed from the first
        # frames, which moves the frames of a variable-rate video
        options["enc_time_base:v"] = f"{time_base.numerator}/{time_base.denominator}"
    add_track_timing(options, container, time_base)
    options.update(tags)
    out = ffmpeg.output(*streams, str(target), **options)
    return _with_globals(out.compile(cmd=ffmpeg_exe, overwrite_output=True), "-nostats", "-loglevel", "error")
