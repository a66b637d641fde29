"""The two engines side by side: `facefix restore` and `facefix video` with `--engine local`
and `--engine ray`, on ../shared/photos and ../shared/videos, on this machine.

    python benchmarks/ray.py [--photos DIR] [--videos DIR] [--actors N] [--segment-seconds S]

Both engines run the same components (the default restorer, detector and blender) through
the library calls the CLI makes. Ray's local cluster is started once (its start-up is
reported apart); each figure is one run after a warm-up image. Per-stage seconds are
summed over the workers, so on Ray they can add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this file is named ray.py: without its folder on the path, `import ray` finds the real one
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]


def _machine() -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("facefix_benchmark_pipeline", HERE / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine()


from facefix import compose  # noqa: E402
from facefix.compose import ComponentSelection  # noqa: E402
from facefix.distributed import EngineOptions  # noqa: E402
from facefix.image_io import find_images  # noqa: E402
from facefix.pipeline import Pipeline, PipelineOptions  # noqa: E402
from facefix.video.ffmpeg import find_ffmpeg, probe  # noqa: E402
from facefix.video.restorer import VideoOptions, VideoRestorer  # noqa: E402

SHARED = HERE.parent.parent / "shared"
IMAGE_STAGES = ("decode", "detect", "align", "restore", "blend", "encode")
VIDEO_STAGES = ("decode", "detect", "track", "align", "restore", "blend", "encode", "join")


def stages(seconds: dict[str, float], names: tuple[str, ...], count: int, unit: str) -> str:
    return ", ".join(f"{name} {seconds.get(name, 0.0) / count * 1000:.0f}" for name in names) + f" ms/{unit}"


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def images(photos: Path, out: Path, engine: EngineOptions) -> None:
    from facefix.distributed.images import restore_images

    files = find_images([photos], recursive=False)
    selection = ComponentSelection()
    options = PipelineOptions(quiet=True)
    assembly = compose.assemble(selection, quiet=True)
    pipeline = Pipeline(restorer=assembly.get("restorer"), blender=assembly.get("blender"),
                        detector=assembly.get("detector"), options=options)
    pipeline.run(files[:1], out / "warmup")
    pipeline.summary = type(pipeline.summary)()
    start = time.perf_counter()
    local = pipeline.run(files, out / "local")
    local_wall = time.perf_counter() - start
    sizes = (pipeline.restorer.input_size, pipeline.restorer.output_size)
    restore_images(files[:1], out / "ray-warmup", selection, assembly.names, sizes, options, engine)
    start = time.perf_counter()
    distributed = restore_images(files, out / "ray", selection, assembly.names, sizes, options, engine)
    ray_wall = time.perf_counter() - start
    same = all((out / "local" / path.name).read_bytes() == (out / "ray" / path.name).read_bytes()
               for path in (out / "local").iterdir())
    print(f"\nphotos: {len(files)} images, {local.faces} faces; outputs byte-identical: {same}")
    for name, summary, wall in (("local", local, local_wall), (f"ray, {engine.actors} restorer actor(s)",
                                                                  distributed, ray_wall)):
        print(f"  {name}: {wall:.1f} s wall, {len(files) / wall:.2f} images/s, {summary.faces / wall:.2f} faces/s")
        print(f"    per image: {stages(summary.stage_seconds, IMAGE_STAGES, len(files), 'image')}")


def keyed_copy(video: Path, folder: Path) -> Path:
    """The clip re-encoded with a keyframe every second, so it can be cut into segments."""
    target = folder / f"{video.stem}_keyed.mp4"
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-i", str(video), "-c:v", "libx264", "-preset", "veryfast",
                    "-fps_mode", "passthrough", "-force_key_frames", "expr:gte(t,n_forced)", "-c:a", "copy",
                    str(target)], check=True)
    return target


def videos(clips: list[Path], out: Path, engine: EngineOptions, segment_seconds: float) -> None:
    from facefix.distributed.video import restore_video

    ffmpeg_exe = find_ffmpeg()
    selection = ComponentSelection()
    assembly = compose.assemble(selection, quiet=True)
    options = VideoOptions(quiet=True)
    runner = VideoRestorer(restorer=assembly.get("restorer"), detector=assembly.get("detector"),
                           blender=assembly.get("blender"), options=options, ffmpeg_exe=ffmpeg_exe)
    for clip in clips:
        info = probe(clip, ffmpeg_exe)
        local = runner.run(clip, out / f"{clip.stem}_local.mp4", info=info)
        distributed = restore_video(clip, out / f"{clip.stem}_ray.mp4", info, selection, assembly.names, options,
                                    engine, segment_seconds, overlap=25)
        from facefix.video.segments import plan_segments
        from facefix.video.info import run_times

        count = len(plan_segments(run_times(info, None, None), list(info.keyframe_times), segment_seconds, 25))
        print(f"\n{clip.name}: {local.frames} frames, {info.display_size[0]}x{info.display_size[1]}, "
              f"{len(info.keyframe_times)} keyframes -> {count} segment(s)")
        for name, summary in (("local", local), (f"ray, {engine.actors} actor(s)", distributed)):
            print(f"  {name}: {summary.seconds:.1f} s, {summary.frames / summary.seconds:.2f} fps")
            print(f"    per frame: {stages(summary.stage_seconds, VIDEO_STAGES, summary.frames, 'frame')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--videos", type=Path, default=SHARED / "videos")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--skip-images", action="store_true")
    parser.add_argument("--skip-videos", action="store_true")
    args = parser.parse_args()

    import ray

    print(f"machine: {_machine()}")
    start = time.perf_counter()
    ray.init(num_cpus=None, include_dashboard=False, log_to_driver=False)
    print(f"ray {ray.__version__}: local cluster of {ray.cluster_resources().get('CPU', 0):.0f} CPUs started in "
          f"{time.perf_counter() - start:.1f} s")
    engine = EngineOptions(engine="ray", actors=args.actors, num_cpus=0.5 if args.actors > 1 else 1.0)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        if not args.skip_images:
            images(args.photos, out, engine)
        if not args.skip_videos:
            clips = sorted(args.videos.glob("*.mp4"))
            clips.append(keyed_copy(clips[0], out))
            videos(clips, out, engine, args.segment_seconds)
    print(f"\npeak RSS of one process: {peak_rss_mb():.0f} MB")
    ray.shutdown()
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
