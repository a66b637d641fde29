"""Cutting a video into segments that are restored apart and joined without re-encoding.

Pure functions (no process is started here): the plan, the concat list, the join command.

A segment is a run of frames that starts, where the video allows, at a keyframe, so
its decoder starts cleanly. Its worker decodes ``warmup`` frames before the first one it
writes: face tracks and landmark smoothing start settled, as they are at that frame in one
long run. Segments are encoded video-only with the local engine's settings; the join
copies their packets into one file, adds the input's audio (cut to the same span) and
the rotation, and puts the video back at its first frame's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from facefix.video.commands import _with_globals, add_audio, add_track_timing
from facefix.video.info import VideoInfo

#: Frames a segment decodes before its first written one (two seconds at 25 fps): the
#: One-Euro smoothing at its default 0.5 Hz cutoff forgets 90% of its start in ~20 frames.
DEFAULT_OVERLAP_FRAMES = 50
DEFAULT_SEGMENT_SECONDS = 10.0


@dataclass(frozen=True)
class Segment:
    index: int
    first_frame: int  # the first written frame's number in the run
    frames: int  # frames written
    warmup: int  # frames decoded before it, for the face tracks only
    # where the decoder starts: the run's own --start for the first segment, else a
    # timestamp just before the first warm-up frame; a segment stops after its frames
    decode_start: float | None
    decode_end: float | None  # -to for the decoder: a little after the segment's last frame
    duration: float | None  # from its first frame to the next segment's (None for the last)


#: Output keyframes follow the input's, thinned to at most one per this many seconds (an
#: all-intra input would otherwise make every output frame a keyframe).
MIN_KEYFRAME_GAP = 1.0


def keyframe_plan(times: list[float], keyframes: list[float], min_gap: float = MIN_KEYFRAME_GAP) -> list[int]:
    """Which of the run's frames (``times``, sorted) are encoded as keyframes: the first, and
    those where the input has a keyframe at least ``min_gap`` after the last one kept.

    Both engines encode keyframes here, and segments are cut only here, so a segment's
    encoder starts where the one-run encoder starts a new group of pictures too."""
    if not times:
        return []
    positions = {time: index for index, time in enumerate(times)}
    plan = [0]
    for time in sorted(keyframes):
        index = positions.get(time)
        if index is not None and index > 0 and time - times[plan[-1]] >= min_gap - 1e-9:
            plan.append(index)
    return plan


def _midpoint(times: list[float], index: int) -> float:
    """A seek position that keeps frame ``index`` and drops the one before it."""
    return (times[index - 1] + times[index]) / 2


def plan_segments(times: list[float], keyframes: list[float], segment_seconds: float,
                  overlap: int = DEFAULT_OVERLAP_FRAMES, run_start: float | None = None,
                  run_end: float | None = None) -> list[Segment]:
    """Segments of at least ``segment_seconds`` over the frames at ``times`` (sorted
    presentation times of the run's frames), each starting at a planned keyframe
    (:func:`keyframe_plan`). A clip with fewer keyframes gets fewer segments.

    ``run_start``/``run_end`` are the run's own --start/--end: the first segment decodes from
    ``run_start``, the last to ``run_end``.
    """
    count = len(times)
    if count == 0:
        return []
    cuts = [0]
    for index in keyframe_plan(times, keyframes)[1:]:
        if times[index] - times[cuts[-1]] >= segment_seconds - 1e-9 and times[-1] - times[index] >= segment_seconds / 2:
            cuts.append(index)
    cuts.append(count)
    segments = []
    for index, (first, stop) in enumerate(zip(cuts, cuts[1:])):
        begin = max(0, first - overlap)
        segments.append(Segment(
            index=index, first_frame=first, frames=stop - first, warmup=first - begin,
            decode_start=run_start if begin == 0 else _midpoint(times, begin),
            decode_end=run_end if stop == count else times[stop] + (times[stop] - times[stop - 1]),
            duration=None if stop == count else times[stop] - times[first],
        ))
    return segments


def concat_list(files: list[Path], segments: list[Segment]) -> str:
    """The concat demuxer's script: each file, and how long it lasts up to the next one."""
    lines = ["ffconcat version 1.0"]
    for path, segment in zip(files, segments):
        quoted = str(path.resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
        if segment.duration is not None:
            lines.append(f"duration {segment.duration:.6f}")
    return "\n".join(lines) + "\n"


def join_args(ffmpeg_exe: str, concat_file: Path, source: Path, target: Path, info: VideoInfo, *,
              container: str, first_time: float = 0.0, time_base: Fraction | None = None,
              start: float | None = None, end: float | None = None) -> list[str]:
    """Copy the segments' video packets into ``target`` with the input's audio, rotation and
    metadata: what :func:`~facefix.video.commands.encode_args` gives one long run, without
    encoding the video again."""
    concat_options: dict[str, Any] = {"format": "concat", "safe": 0}
    if first_time:
        concat_options["itsoffset"] = f"{first_time:.6f}"
    if info.rotation:
        concat_options["display_rotation"] = info.rotation
    streams = [ffmpeg.input(str(concat_file), **concat_options)["v:0"]]
    options: dict[str, Any] = {"format": container, "c:v": "copy", "fps_mode": "passthrough"}
    add_audio(streams, options, source, info, container, start, end)
    add_track_timing(options, container, time_base)
    out = ffmpeg.output(*streams, str(target), **options)
    return _with_globals(out.compile(cmd=ffmpeg_exe, overwrite_output=True), "-nostats", "-loglevel", "error")
