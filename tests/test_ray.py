"""``--engine ray``: the local engine's outputs from a real Ray cluster started by the tests
(one node with 2 CPUs, and two nodes on this machine). Skipped when ray isn't installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facefix.cli import cli
from facefix.distributed import RAY_MISSING
from facefix.video.ffmpeg import find_ffmpeg, probe
from conftest import file_digest, psnr, shared_path

PHOTOS = ("insightface_t1.jpg", "facexlib__assets_test.jpg", "gfpgan__inputs_cropped_faces_Adele_crop.png")


def restore(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["restore", *map(str, args), "--quiet"])
    return result.exit_code, result.output


def digests(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): file_digest(path) for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def inputs(tmp_path) -> Path:
    """Three real photos (8 faces) and one file that isn't an image."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(shared_path("photos", name), folder / name)
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    return folder


@pytest.fixture
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=400 * 2**20)
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_two_nodes():
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 300 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=300 * 2**20)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield ray
    ray.shutdown()
    cluster.shutdown()


def test_without_the_extra_engine_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    code, output = restore(tmp_path, tmp_path / "out", "--engine", "ray")
    assert code != 0 and RAY_MISSING in output and len(output.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["video", str(tmp_path / "x.mp4"), "--engine", "ray"])
    assert result.exit_code != 0 and RAY_MISSING in result.output


def test_ray_restores_byte_identical_to_local_and_a_bad_file_fails_alone(inputs, tmp_path, ray_local):
    code, local_output = restore(inputs, tmp_path / "local")
    assert code == 1
    code, ray_output = restore(inputs, tmp_path / "ray", "--engine", "ray", "--batch-size", "2")
    assert code == 1
    local, distributed = digests(tmp_path / "local"), digests(tmp_path / "ray")
    assert len(local) == 3 and local == distributed
    error = [line for line in ray_output.splitlines() if line.startswith("error:")]
    assert error == [f"error: {inputs / 'broken.jpg'}: not an image file (unrecognised format)"]
    assert "3 processed, 1 failed; 8 faces restored" in ray_output
    assert ray_output.splitlines()[-1] == local_output.splitlines()[-1]

    # a job killed half-way resumes with --skip-existing: only the missing output is made again
    missing = tmp_path / "ray" / PHOTOS[0]
    missing.unlink()
    code, output = restore(inputs, tmp_path / "ray", "--engine", "ray", "--skip-existing")
    assert code == 1 and "1 processed, 1 failed" in output and "2 skipped (already done)" in output
    assert digests(tmp_path / "ray") == local
    assert sorted(path.name for path in inputs.iterdir()) == sorted([*PHOTOS, "broken.jpg"])  # inputs untouched


def test_inputs_from_an_fsspec_uri_give_the_same_files(inputs, tmp_path, ray_local):
    (inputs / "broken.jpg").unlink()
    uri = f"file://{inputs}"
    code, _ = restore(inputs, tmp_path / "local")
    assert code == 0
    code, output = restore(uri, tmp_path / "uri", "--engine", "ray")
    assert code == 0, output
    assert digests(tmp_path / "uri") == digests(tmp_path / "local")


def test_two_node_cluster_restores_byte_identical_to_local(inputs, tmp_path, ray_two_nodes):
    ray = ray_two_nodes
    assert len([node for node in ray.nodes() if node["Alive"]]) == 2
    restore(inputs, tmp_path / "local")
    code, output = restore(inputs, tmp_path / "ray", "--engine", "ray", "--num-cpus", "0.5", "--actors", "2")
    assert code == 1 and "3 processed, 1 failed" in output
    assert digests(tmp_path / "ray") == digests(tmp_path / "local")


@pytest.fixture
def keyed_clip(tmp_path) -> Path:
    """3.6 s of a real talking-face video with its audio, re-encoded with a keyframe a second."""
    source = shared_path("videos", "videoretalking__face_1.mp4")
    clip = tmp_path / "clip.mp4"
    subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(source), "-t", "3.6", "-vf", "scale=352:352",
                    "-c:v", "libx264", "-preset", "veryfast", "-force_key_frames", "expr:gte(t,n_forced)",
                    "-c:a", "aac", str(clip)], check=True)
    return clip


def frames(path: Path) -> np.ndarray:
    info = probe(path, find_ffmpeg())
    raw = subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


def test_video_in_segments_keeps_frames_timing_and_audio_without_seams(keyed_clip, tmp_path, ray_local):
    local, distributed = tmp_path / "local.mp4", tmp_path / "ray.mp4"
    result = CliRunner().invoke(cli, ["video", str(keyed_clip), "-o", str(local), "--quiet"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["video", str(keyed_clip), "-o", str(distributed), "--engine", "ray",
                                      "--segment-seconds", "1", "--segment-overlap", "12", "--actors", "2"])
    assert result.exit_code == 0, result.output
    segments = re.search(r"facefix: ray: (\d+) segments", result.output)
    assert segments and int(segments.group(1)) >= 3, result.output
    ffmpeg_exe = find_ffmpeg()
    original, one, joined = (probe(path, ffmpeg_exe) for path in (keyed_clip, local, distributed))
    assert len(joined.packet_times) == len(original.packet_times) == len(one.packet_times)
    assert joined.packet_times == one.packet_times and joined.fps == one.fps
    assert joined.audio == one.audio == ("aac",)
    assert abs(joined.duration - one.duration) < 0.05
    # every frame, the ones around each cut included, within the encoder's tolerance of one run
    worst = min(psnr(a, b) for a, b in zip(frames(local), frames(distributed)))
    assert worst >= 40.0, worst
    assert [t for t in joined.keyframe_times] == [t for t in one.keyframe_times]  # each segment starts a GOP


def test_the_background_upsampler_runs_in_the_write_actors(tmp_path, ray_local):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("photos", "facexlib__assets_test2.jpg"), folder / "photo.jpg")
    options = ["--bg-upsampler", "realesr-animevideov3", "--upscale", "2", "--model-dir", shared_path("weights")]
    code, output = restore(folder, tmp_path / "local", *options)
    assert code == 0, output
    code, output = restore(folder, tmp_path / "ray", *options, "--engine", "ray")
    assert code == 0, output
    code, output = restore(folder, tmp_path / "lanczos", "--upscale", "2")
    assert code == 0, output
    import cv2

    local, distributed, lanczos = (cv2.imread(str(tmp_path / run / "photo.jpg")).astype(np.float64)
                                   for run in ("local", "ray", "lanczos"))
    # the upsampler ran in the write actors: the same result up to onnxruntime's summation
    # order, which follows the thread count (an actor gets one thread: OMP_NUM_THREADS=1
    # locally gives its result bit for bit), and far from a Lanczos background
    assert psnr(distributed, local) >= 45.0
    assert psnr(lanczos, local) < psnr(distributed, local) - 10.0
