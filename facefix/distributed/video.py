"""``facefix video --engine ray``: a clip cut into segments (:mod:`facefix.video.segments`),
each restored by the local engine's own :class:`~facefix.video.restorer.VideoRestorer` in
a Ray actor that loads the networks once, then joined without re-encoding.

Segments come back to the driver as encoded bytes, so workers need no shared disk for
their output; they do need to read the input at the path given (a shared file system on a
cluster of several machines).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from facefix.atomic import atomic_path
from facefix.compose import ComponentSelection, rebuild
from facefix.distributed import EngineOptions, connected
from facefix.errors import FacefixError
from facefix.video.commands import output_container
from facefix.video.ffmpeg import find_ffmpeg, probe, start_ffmpeg
from facefix.video.info import VideoInfo, run_times
from facefix.video.restorer import VideoOptions, VideoRestorer, VideoSummary
from facefix.video.segments import Segment, concat_list, join_args, keyframe_plan, plan_segments


class SegmentWorker:
    """All the networks of a video run, loaded once; restores one segment per call."""

    def __init__(self, selection: ComponentSelection, names: dict[str, str], options: VideoOptions):
        self.components = rebuild(selection, names, ("restorer", "detector", "blender", "parser", "upsampler"))
        self.options = options
        self.ffmpeg = find_ffmpeg()

    def restore(self, source: str, info: VideoInfo, segment: Segment, keyframes: tuple[int, ...],
                suffix: str) -> dict:
        options = replace(self.options, keyframes=keyframes, start=segment.decode_start, end=segment.decode_end,
                          warmup_frames=segment.warmup, first_index=segment.first_frame - segment.warmup,
                          segment=True, max_frames=segment.warmup + segment.frames,
                          seek_absolute=segment.first_frame - segment.warmup > 0, quiet=True)
        runner = VideoRestorer(restorer=self.components["restorer"], detector=self.components["detector"],
                               blender=self.components["blender"], parser=self.components.get("parser"),
                               options=options, ffmpeg_exe=self.ffmpeg, upsampler=self.components.get("upsampler"))
        with tempfile.TemporaryDirectory(prefix="facefix-segment-") as folder:
            target = Path(folder) / f"segment{suffix}"
            summary = runner.run(Path(source), target, info=info)
            return {"index": segment.index, "frames": summary.frames, "faces": summary.faces,
                    "tracks": summary.tracks, "stage_seconds": dict(summary.stage_seconds),
                    "data": target.read_bytes()}


def restore_video(source: Path, target: Path, info: VideoInfo, selection: ComponentSelection,
                  names: dict[str, str], options: VideoOptions, engine: EngineOptions,
                  segment_seconds: float, overlap: int) -> VideoSummary:
    """Restore ``source`` into ``target`` segment by segment on Ray; written atomically."""
    ffmpeg_exe = find_ffmpeg()
    container = output_container(target)
    times = run_times(info, options.start, options.end)
    if not times:
        raise FacefixError(f"{source}: no video frames to decode")
    segments = plan_segments(times, list(info.keyframe_times), segment_seconds, overlap,
                             run_start=options.start, run_end=options.end)
    if not options.quiet:
        cuts = ", ".join(f"{times[segment.first_frame]:.2f}" for segment in segments[1:]) or "none"
        tqdm.write(f"facefix: ray: {len(segments)} segment{'s' if len(segments) != 1 else ''} "
                   f"(cut at {cuts} s), {min(engine.actors, len(segments))} actor(s)", file=sys.stderr)
    summary = VideoSummary(output=target, stage_seconds=defaultdict(float))
    started = time.perf_counter()
    progress = tqdm(total=len(times), desc=f"video (ray, {len(segments)} segments)", unit="frame",
                    disable=options.quiet, file=sys.stderr, dynamic_ncols=True)
    try:
        with connected(engine) as ray, tempfile.TemporaryDirectory(prefix=".facefix-segments-",
                                                                    dir=target.parent) as folder:
            from ray.util import ActorPool

            remote = ray.remote(num_cpus=engine.num_cpus, num_gpus=engine.num_gpus or None)(SegmentWorker)
            actors = [remote.remote(selection, names, options) for _ in range(min(engine.actors, len(segments)))]
            pool = ActorPool(actors)
            files = [Path(folder) / f"segment{segment.index:05d}{target.suffix}" for segment in segments]
            plan = keyframe_plan(times, list(info.keyframe_times))

            def keyframes(segment: Segment) -> tuple[int, ...]:  # the run's plan, numbered from the segment
                return tuple(index - segment.first_frame for index in plan
                             if segment.first_frame <= index < segment.first_frame + segment.frames)

            results = pool.map_unordered(
                lambda actor, segment: actor.restore.remote(str(source), info, segment, keyframes(segment),
                                                            target.suffix), segments)
            for result in results:
                segment = segments[result["index"]]
                if result["frames"] != segment.frames:
                    raise FacefixError(f"{source}: segment {segment.index} gave {result['frames']} frames of "
                                       f"{segment.frames}")
                files[segment.index].write_bytes(result["data"])
                summary.frames += result["frames"]
                summary.faces += result["faces"]
                summary.tracks += result["tracks"]
                for stage, seconds in result["stage_seconds"].items():
                    summary.stage_seconds[stage] += seconds
                progress.update(result["frames"])
            script = Path(folder) / "segments.ffconcat"
            script.write_text(concat_list(files, segments))
            with atomic_path(target) as temporary:
                join_started = time.perf_counter()
                first_time = times[0] - (options.start or 0.0)
                args = join_args(ffmpeg_exe, script, source, temporary, info, container=container,
                                 first_time=first_time, time_base=info.time_base, start=options.start, end=options.end)
                process = start_ffmpeg(args, stdout=tempfile.TemporaryFile(), stderr=-1)
                _, stderr = process.communicate()
                if process.returncode != 0:
                    reason = " ".join(stderr.decode("utf-8", "replace").split()[-30:])
                    raise FacefixError(f"{target}: joining the segments failed ({reason})")
                written = probe(temporary, ffmpeg_exe)
                if len(written.packet_times) != summary.frames:
                    raise FacefixError(f"{target}: the join wrote {len(written.packet_times)} frames of "
                                       f"{summary.frames}")
                summary.stage_seconds["join"] += time.perf_counter() - join_started
    except Exception as error:
        cause = getattr(error, "cause", None)  # a worker's own error, unwrapped from Ray's
        if isinstance(cause, FacefixError):
            raise cause from None
        raise
    finally:
        progress.close()
    summary.seconds = time.perf_counter() - started
    return summary
