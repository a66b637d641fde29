"""Speed and memory of `facefix video` on the real clips in ../shared/videos.

    python benchmarks/video.py [--videos DIR] [--weights DIR] [--device cpu]
        [--gfpgan-clip NAME] [--gfpgan-seconds S] [--memory-clip NAME] [--skip gfpgan,memory]

1. passthrough on every clip: frames per second of each stage and overall, and the
   end-to-end time over the restorer-only time (the restorer run alone, in batches of
   the same size, on the same number of real aligned faces); then each output against
   its input: frame count, fps, duration, audio, and the PSNR of every frame.
2. GFP-GAN v1.4 on the first S seconds of one clip. No official weights can be
   downloaded here: a full-size network in the official layout with random weights
   (as tests/test_gfpgan.py builds it) is saved to a temporary file and passed as
   --weights. Speed doesn't depend on the weight values. Backend: the default (auto,
   onnxruntime on CPU; its one-time export happens before the timed run).
3. Peak memory (VmHWM of the Python process, and of the largest ffmpeg child) for a clip
   and for the same clip concatenated 4x with ffmpeg's concat demuxer (stream copy,
   into a temporary folder), each in a fresh process.

Stage times are the busy (or waiting) time of each stage's thread: the stages overlap, so
they add up to more than the wall time. "decode" is the wait for the next decoded frame;
"encode" the writes into the encoder's pipe (they block while x264 is behind) and its
final flush.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
STAGES = ("decode", "detect", "track", "align", "restore", "blend", "encode")


def machine() -> str:
    import torch

    cpu = platform.processor() or "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def build(restorer: str, weights: Path, device: str, weights_path: Path | None = None):
    from facefix import compose

    selection = compose.ComponentSelection(detector="retinaface_mobile0.25", restorer=restorer, blender="soft",
                                           device=device, model_dir=weights, weights=weights_path)
    assembly = compose.assemble(selection, quiet=True, note=lambda message: None)
    return assembly.components, assembly.chosen


def aligned_faces(clip: Path, built: dict, count: int = 4):
    """Real aligned crops from the clip's first frames, for the restorer-only timing."""
    import numpy as np

    from facefix import alignment
    from facefix.pipeline import detect
    from facefix.video.ffmpeg import find_ffmpeg, probe
    from facefix.video.pipes import FrameReader

    ffmpeg = find_ffmpeg()
    reader = FrameReader(ffmpeg, probe(clip, ffmpeg))
    size = built["restorer"].input_size
    crops = []
    try:
        for frame in reader:
            for face in detect(built["detector"], frame.pixels):
                affine = alignment.estimate_affine(face.landmarks, size)
                crops.append(alignment.warp_face(frame.pixels, affine, size))
            if len(crops) >= count:
                break
    finally:
        reader.close()
    return np.stack(crops[:count])


def restorer_only_seconds(restorer, crops, faces: int, batch_size: int) -> float:
    """The restorer alone on ``faces`` faces in batches of ``batch_size`` (after a warm-up batch)."""
    import numpy as np
    import torch

    batch = np.stack([crops[i % len(crops)] for i in range(batch_size)])
    restorer.restore(batch[:1])
    total = 0.0
    done = 0
    while done < faces:
        count = min(batch_size, faces - done)
        torch.manual_seed(0)
        started = time.perf_counter()
        restorer.restore(batch[:count])
        total += time.perf_counter() - started
        done += count
    return total


def timed_run(clip: Path, built: dict, out: Path, end: float | None = None, batch_size: int = 4) -> dict:
    from facefix.pipeline import FaceOptions
    from facefix.video.restorer import VideoOptions, VideoRestorer

    options = VideoOptions(faces=FaceOptions(batch_size=batch_size), end=end, quiet=True)
    runner = VideoRestorer(restorer=built["restorer"], detector=built["detector"], blender=built["blender"],
                           options=options)
    summary = runner.run(clip, out)
    crops = aligned_faces(clip, built)
    alone = restorer_only_seconds(built["restorer"], crops, summary.faces, batch_size)
    return {
        "clip": clip.name, "frames": summary.frames, "faces": summary.faces, "wall": summary.seconds,
        "stages": dict(summary.stage_seconds), "restorer_only": alone,
    }


def fidelity(source: Path, output: Path) -> dict:
    """What the issue checks: frames, fps, duration and audio kept, PSNR of every frame."""
    import numpy as np

    from facefix.video.ffmpeg import find_ffmpeg, probe
    from facefix.video.pipes import FrameReader

    ffmpeg = find_ffmpeg()
    before, after = probe(source, ffmpeg), probe(output, ffmpeg)
    psnrs = []
    for a, b in zip(FrameReader(ffmpeg, before), FrameReader(ffmpeg, after)):
        mse = float(np.mean((a.pixels.astype(np.float64) - b.pixels.astype(np.float64)) ** 2))
        psnrs.append(10 * np.log10(255.0**2 / mse) if mse else float("inf"))
    return {"clip": source.name, "frames": (len(before.packet_times), len(after.packet_times)),
            "fps": (before.fps, after.fps), "duration": (before.duration, after.duration),
            "audio": (before.audio, after.audio), "psnr_min": min(psnrs), "psnr_mean": float(np.mean(psnrs)),
            "compared": len(psnrs)}


def print_fidelity(rows: list[dict]) -> None:
    print("\n### Passthrough output against its input\n")
    print("| clip | frames in → out | fps in → out | duration in → out | audio out | PSNR min / mean |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['clip']} | {row['frames'][0]} → {row['frames'][1]} | {row['fps'][0]} → {row['fps'][1]} | "
              f"{row['duration'][0]:.2f} → {row['duration'][1]:.2f} s | {', '.join(row['audio'][1]) or 'none'} | "
              f"{row['psnr_min']:.2f} / {row['psnr_mean']:.2f} dB ({row['compared']} frames) |")


def print_runs(title: str, runs: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| stage | " + " | ".join(run["clip"] for run in runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for stage in STAGES:
        cells = []
        for run in runs:
            seconds = run["stages"].get(stage, 0.0)
            cells.append(f"{run['frames'] / seconds:.1f} fps ({seconds:.1f} s)" if seconds > 0 else "–")
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| **overall** | " + " | ".join(f"**{r['frames'] / r['wall']:.2f} fps** ({r['frames']} frames, "
                                         f"{r['wall']:.1f} s)" for r in runs) + " |")
    print("| restorer alone | " + " | ".join(f"{r['restorer_only']:.2f} s for {r['faces']} faces"
                                           for r in runs) + " |")
    print("| end-to-end / restorer alone | " + " | ".join(f"{r['wall'] / r['restorer_only']:.2f}×"
                                                        for r in runs) + " |")


def _peak_kib(pid: int | str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:  # already gone
        pass
    return 0


def memory_child(clip: Path, out: Path, weights: Path, device: str) -> None:
    """Run one `facefix video` in this process and report peak memory as JSON: this
    process's, and each ffmpeg's (sampled from /proc while it runs; getrusage's figure
    for children would include the Python memory they were forked from)."""
    import threading

    from facefix.video import pipes
    from facefix.cli import cli

    processes = []
    peaks: dict[int, int] = {}
    spawn = pipes.start_ffmpeg

    def recording_popen(args, **kwargs):
        process = spawn(args, **kwargs)
        processes.append(process)
        return process

    pipes.start_ffmpeg = recording_popen
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for process in list(processes):
                if process.poll() is None:
                    peaks[process.pid] = max(peaks.get(process.pid, 0), _peak_kib(process.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    cli(["video", str(clip), "-o", str(out), "--restorer", "passthrough", "--detector", "retinaface_mobile0.25",
         "--model-dir", str(weights), "--device", device, "--quiet"], standalone_mode=False)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    print(json.dumps({"python_peak_mib": _peak_kib("self") / 1024,
                      "ffmpeg_peak_mib": max(peaks.values(), default=0) / 1024, "seconds": seconds}))


def measure_memory(clip: Path, weights: Path, device: str, folder: Path) -> None:
    from facefix.video.ffmpeg import find_ffmpeg, probe

    ffmpeg = find_ffmpeg()
    listing = folder / "concat.txt"
    listing.write_text("".join(f"file '{clip}'\n" for _ in range(4)))
    longer = folder / f"{clip.stem}_x4{clip.suffix}"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                    str(longer)], check=True)
    rows = []
    for source in (clip, longer):
        frames = len(probe(source, ffmpeg).packet_times)
        result = subprocess.run([sys.executable, __file__, "--memory-child", str(source), str(folder / "out.mp4"),
                                 "--weights", str(weights), "--device", device],
                                capture_output=True, text=True, check=True)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append((source.name, frames, report))
    print("\n### Peak memory, passthrough\n")
    print("| input | frames | Python process peak (VmHWM) | largest ffmpeg peak (VmHWM) | wall |")
    print("|---|---:|---:|---:|---:|")
    for name, frames, report in rows:
        print(f"| {name} | {frames} | {report['python_peak_mib']:.0f} MiB | {report['ffmpeg_peak_mib']:.0f} MiB | "
              f"{report['seconds']:.1f} s |")
    growth = rows[1][2]["python_peak_mib"] / rows[0][2]["python_peak_mib"] - 1
    print(f"\nGrowth for 4x the frames: {growth * 100:+.1f}% (Python process)")


def gfpgan_weights(folder: Path) -> Path:
    import torch

    from facefix_plugins.gfpgan.arch import official_gfpgan

    torch.manual_seed(0)
    network = official_gfpgan("clean")
    path = folder / "GFPGANv1.4-random.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, default=SHARED / "videos")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gfpgan-clip", default="liveportrait__source_s13.mp4")
    parser.add_argument("--gfpgan-seconds", type=float, default=1.0)
    parser.add_argument("--memory-clip", default="liveportrait__source_s13.mp4")
    parser.add_argument("--skip", default="", help="comma-separated: passthrough, gfpgan, memory")
    parser.add_argument("--memory-child", nargs=2, type=Path, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child, args.weights, args.device)
        return

    skip = set(filter(None, args.skip.split(",")))
    clips = sorted(args.videos.glob("*.mp4"))
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        os.environ["FACEFIX_HOME"] = str(folder / "home")  # ONNX exports of the random network stay here
        if "passthrough" not in skip:
            built, chosen = build("passthrough", args.weights, args.device)
            print(f"components: {', '.join(chosen)}")
            runs = [timed_run(clip, built, folder / f"out_{clip.name}") for clip in clips]
            print_runs("passthrough, whole clips, batch 4", runs)
            print_fidelity([fidelity(clip, folder / f"out_{clip.name}") for clip in clips])
        if "gfpgan" not in skip:
            weights_file = gfpgan_weights(folder)
            started = time.perf_counter()
            built, chosen = build("gfpgan", args.weights, args.device, weights_path=weights_file)
            print(f"\ncomponents: {', '.join(chosen)} (built in {time.perf_counter() - started:.0f} s, "
                  "including the ONNX export)")
            clip = args.videos / args.gfpgan_clip
            run = timed_run(clip, built, folder / "out_gfpgan.mp4", end=args.gfpgan_seconds)
            print_runs(f"GFP-GAN v1.4 (random weights), first {args.gfpgan_seconds:g} s, batch 4", [run])
        if "memory" not in skip:
            measure_memory(args.videos / args.memory_clip, args.weights, args.device, folder)


if __name__ == "__main__":
    main()
