"""``facefix video``: restore every face of a video, keeping its timing, audio and metadata."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from facefix.cli.common import fail, raise_interrupt, unwritable
from facefix.cli.options import component_options, engine_options
from facefix.cli.types import FiniteFloat
from facefix.compose import ComponentSelection
from facefix.distributed import EngineOptions, require_ray
from facefix.atomic import refuse_unreplaceable, remove_stale_temporaries, same_file
from facefix.errors import FacefixError, brief
from facefix.sources import not_a_regular_file
from facefix.video.segments import DEFAULT_OVERLAP_FRAMES, DEFAULT_SEGMENT_SECONDS
from facefix.video.tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

#: Appended to the input's name when no ``-o`` is given.
DEFAULT_SUFFIX = "_restored"


def default_output(source: Path) -> Path:
    """``clip.mp4`` → ``clip_restored.mp4`` beside it (``.mp4`` for types facefix can't write)."""
    from facefix.video.commands import CONTAINERS

    suffix = source.suffix if source.suffix.lower() in CONTAINERS else ".mp4"
    return source.with_name(f"{source.stem}{DEFAULT_SUFFIX}{suffix}")


def _time_option(value: str | None, name: str) -> float | None:
    from facefix.video.commands import parse_time

    try:
        return parse_time(value)
    except ValueError as error:
        fail(f"{name}: {error}")
    return None


#: the largest frame side H.264/H.265/VP9/AV1 encoders take
MAX_VIDEO_SIDE = 16384


@click.command(name="video")
@click.argument("source", metavar="IN", type=click.Path(path_type=Path))
@click.argument("output_argument", metavar="[OUT]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Output video (default: IN's name with {DEFAULT_SUFFIX!r} added, beside it). "
                   "Its extension picks the container: .mp4, .mov, .mkv, .webm, .avi.")
@component_options
@engine_options
@click.option("--segment-seconds", type=FiniteFloat(min=0.1), default=DEFAULT_SEGMENT_SECONDS,
              show_default=True, help="--engine ray: restore the clip in segments of about this length, in parallel.")
@click.option("--segment-overlap", type=click.IntRange(min=0), default=DEFAULT_OVERLAP_FRAMES, show_default=True,
              help="--engine ray: frames decoded before each segment so its face tracks start settled.")
@click.option("--crf", "--quality", "crf", type=FiniteFloat(0, 63), default=None,
              help="Constant quality: lower is better and bigger (default: 18 for libx264, 20 for libx265).")
@click.option("--codec", default="libx264", show_default=True,
              help="ffmpeg video encoder: libx264, libx265, libvpx-vp9, libsvtav1, h264_nvenc, ...")
@click.option("--preset", default=None, help="Encoder speed preset (libx264: ultrafast ... veryslow; default medium).")
@click.option("--pix-fmt", default="yuv420p", show_default=True,
              help="Output pixel format (yuv420p plays everywhere).")
@click.option("--start", default=None, help="Start here (seconds, MM:SS or HH:MM:SS); audio is cut to match.")
@click.option("--end", default=None, help="Stop here (same forms as --start).")
@click.option("--detect-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run the detector on every Nth frame; faces are followed by optical flow in between.")
@click.option("--smoothing/--no-smoothing", default=True, show_default=True,
              help="Smooth each face track's landmarks (One-Euro filter) so aligned crops don't jitter.")
@click.option("--smooth-cutoff", type=FiniteFloat(min=0.01), default=DEFAULT_MIN_CUTOFF, show_default=True,
              help="One-Euro minimum cutoff (Hz): lower smooths a still face more.")
@click.option("--smooth-beta", type=FiniteFloat(min=0), default=DEFAULT_BETA, show_default=True,
              help="One-Euro speed coefficient: higher follows fast motion with less lag.")
def video_command(source: Path, output_argument: Path | None, output: Path | None, selection: ComponentSelection, faces, quiet: bool,
                  engine: EngineOptions, segment_seconds: float, segment_overlap: int, crf: float | None, codec: str, preset: str | None, pix_fmt: str, start: str | None, end: str | None,
                  detect_every: int, smoothing: bool, smooth_cutoff: float, smooth_beta: float) -> None:
    """Restore every face in the video IN into OUT (or -o OUT).

    Frames stream through ffmpeg pipes (never to disk, never all in memory); faces are
    tracked across frames and their landmarks smoothed; frame count, timestamps, frame
    rate, rotation and every audio stream are kept. The output appears under its final
    name only when it is complete.
    """
    from facefix import compose
    from facefix.video.commands import EncodeSettings, check_codec, output_container
    from facefix.video.ffmpeg import MIN_FFMPEG_MAJOR, ffmpeg_version, find_ffmpeg, missing_video, probe
    from facefix.video.restorer import VideoOptions, VideoRestorer

    if output is not None and output_argument is not None and output != output_argument:
        fail(f"two outputs: {output_argument} and -o {output}; give one")
    output = output or output_argument
    start_s, end_s = _time_option(start, "--start"), _time_option(end, "--end")
    if engine.distributed:
        try:
            require_ray()
        except FacefixError as error:
            fail(str(error))
    target = output if output is not None else default_output(source)
    try:
        special = not_a_regular_file(source)
        if special:  # ffmpeg would wait on a FIFO for ever, and read a device without end
            raise FacefixError(f"{source}: {special}")
        if same_file(target, source):
            raise FacefixError(f"{target}: the output would overwrite the input; choose another -o")
        refuse_unreplaceable(target)  # a device or a folder named as OUTPUT
        folder = target.resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FacefixError(f"{target}: can't create its folder ({error.strerror or error})") from None
        problem = unwritable(folder)
        if problem:  # before any network loads, naming OUTPUT (not the input)
            raise FacefixError(f"{target}: can't be written ({problem})")
        remove_stale_temporaries(folder)  # a killed run's half-encoded video
        ffmpeg_exe = find_ffmpeg()
        check_codec(output_container(target), codec)
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise FacefixError(f"--end ({end}) must be after --start ({start})")
        info = probe(source, ffmpeg_exe)  # a bad input fails before any network loads
        shortfall = missing_video(info)
        if shortfall:
            raise FacefixError(f"{source}: {shortfall}")
        out_width, out_height = (round(side * faces.upscale) for side in info.display_size)
        if max(out_width, out_height) > MAX_VIDEO_SIDE:  # said now, not after the networks load and frames run
            raise FacefixError(f"{source}: --upscale {faces.upscale:g} would make {out_width}x{out_height} frames; "
                               f"video encoders take at most {MAX_VIDEO_SIDE} px a side")
        version = ffmpeg_version(ffmpeg_exe)
        if info.rotation and version is not None and version[0] < MIN_FFMPEG_MAJOR:
            raise FacefixError(f"{source}: keeping this video's rotation needs ffmpeg {MIN_FFMPEG_MAJOR} or later; "
                               f"{ffmpeg_exe} is {'.'.join(map(str, version))} (pip install imageio-ffmpeg "
                               "brings a recent one)")
        assembly = compose.assemble(selection, quiet=quiet, note=lambda message: click.echo(message, err=True))
        names = assembly.names
        options = VideoOptions(
            faces=faces, detect_every=detect_every, smoothing=smoothing, smooth_cutoff=smooth_cutoff,
            smooth_beta=smooth_beta, start=start_s, end=end_s,
            encode=EncodeSettings(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt), quiet=quiet,
        )
        runner = VideoRestorer(
            restorer=assembly.get("restorer"), detector=assembly.get("detector"), blender=assembly.get("blender"),
            parser=assembly.get("parser"), options=options, ffmpeg_exe=ffmpeg_exe,
            upsampler=assembly.get("upsampler"),
        )
        if not quiet:
            width, height = info.display_size
            audio = ", ".join(info.audio) if info.audio else "none"
            click.echo(assembly.describe(), err=True)
            click.echo(f"facefix: {source}: {width}x{height}, {info.fps or '?'} fps, "
                       f"{info.frames_between(start_s, end_s)} frames, audio: {audio}; ffmpeg "
                       f"{'.'.join(map(str, version)) if version else '(unversioned build)'}: {ffmpeg_exe}", err=True)
            if info.subtitles:
                click.echo(f"facefix: note: {source}'s {info.subtitles} subtitle stream(s) are not kept in {target}",
                           err=True)
        # `kill` (SIGTERM) cleans up as Ctrl-C does: the temporary file goes too
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
        try:
            if engine.distributed:
                from facefix.distributed.video import restore_video

                del runner, assembly  # the actors load their own
                summary = restore_video(source, target, info, selection, names, options, engine,
                                        segment_seconds, segment_overlap)
            else:
                summary = runner.run(source, target, info=info)
        finally:
            signal.signal(signal.SIGTERM, previous)
    except FacefixError as error:
        fail(str(error))
    except KeyboardInterrupt:
        click.echo(f"Error: {source}: interrupted; {target} was not written", err=True)
        sys.exit(130)
    except Exception as error:  # a crash still gets one line, and the output is never left half-written
        fail(f"{source}: {type(error).__name__}: {brief(error)}")
    click.echo(summary.line(), err=True)
