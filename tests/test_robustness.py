"""Hostile inputs from docs/robustness.md, generated here (nothing hostile is committed):
each gets one line naming the file and the reason, the batch goes on, exit codes are honest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import PROJECT, copy_faces, file_digest, shared_path
from facefix.atomic import temporary_name
from facefix.cli import cli

PHOTO = "facexlib__assets_test2.jpg"


def facefix(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real ``facefix`` process: a hang shows up as a timeout instead of a stuck suite."""
    return subprocess.run([sys.executable, "-m", "facefix", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def restore(*args: object):
    return CliRunner().invoke(cli, ["restore", *map(str, args), "--restorer", "passthrough", "--quiet"],
                              catch_exceptions=False)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.lower().startswith("error")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_among_the_inputs_is_refused_in_one_line_and_the_batch_goes_on(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("photos", PHOTO), folder / "photo.jpg")
    os.mkfifo(folder / "pipe.jpg")
    started = time.monotonic()
    result = facefix("restore", folder, tmp_path / "out", "--restorer", "passthrough", "--quiet")
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "pipe.jpg" in lines[0] and "FIFO" in lines[0], result.stderr
    assert "1 processed, 1 failed" in result.stderr
    assert (tmp_path / "out" / "photo.jpg").is_file() and not (tmp_path / "out" / "pipe.jpg").exists()
    # named directly, and a character device
    result = facefix("restore", folder / "pipe.jpg", "/dev/zero", tmp_path / "out2", "--restorer", "passthrough")
    assert result.returncode == 1
    assert any("pipe.jpg" in line and "FIFO" in line for line in error_lines(result.stderr))
    assert any("/dev/zero" in line and "character device" in line for line in error_lines(result.stderr))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_given_to_video_is_refused_in_one_line(tmp_path):
    os.mkfifo(tmp_path / "clip.mp4")
    result = facefix("video", tmp_path / "clip.mp4", "-o", tmp_path / "out.mp4", "--quiet", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path / 'clip.mp4'}: not a regular file (a FIFO); refused"]
    assert not (tmp_path / "out.mp4").exists()


def test_a_suffix_with_a_path_in_it_is_refused_and_nothing_is_written_outside(tmp_path):
    folder = tmp_path / "deep" / "in"
    folder.mkdir(parents=True)
    shutil.copy(shared_path("photos", PHOTO), folder / "photo.jpg")
    before = sorted(tmp_path.rglob("*"))
    for suffix in ("/../../X", "\\..\\X", "a/b"):
        result = restore(folder, tmp_path / "deep" / "out", "--suffix", suffix)
        assert result.exit_code == 2 and "--suffix" in result.output
    assert sorted(tmp_path.rglob("*")) == before  # not even the output folder
    result = restore(folder, tmp_path / "deep" / "out", "--suffix", "..fixed")  # dots alone are a name
    assert result.exit_code == 0 and (tmp_path / "deep" / "out" / "photo..fixed.jpg").is_file()


def test_skip_existing_skips_jpeg_inputs_and_redoes_empty_or_cut_outputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("photos", PHOTO), folder / "a.jpeg")
    shutil.copy(shared_path("photos", PHOTO), folder / "b.jpeg")
    out = tmp_path / "out"
    assert restore(folder, out).exit_code == 0
    assert sorted(path.name for path in out.iterdir()) == ["a.jpg", "b.jpg"]
    stamps = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    again = restore(folder, out, "--skip-existing")
    assert again.exit_code == 0 and "2 skipped" in again.output
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == stamps
    (out / "a.jpg").write_bytes(b"")  # a 0-byte output, as a full disk leaves
    whole = (out / "b.jpg").read_bytes()
    (out / "b.jpg").write_bytes(whole[: len(whole) // 2])  # cut off, as a killed writer leaves
    third = restore(folder, out, "--skip-existing")
    assert third.exit_code == 0 and "2 processed" in third.output and "skipped" not in third.output
    assert (out / "b.jpg").read_bytes() == whole


def test_an_output_folder_inside_the_input_is_never_read_back(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("photos", PHOTO), folder / "photo.jpg")
    out = folder / "out"
    for _ in range(2):
        result = restore(folder, out, "--recursive")
        assert result.exit_code == 0 and "1 processed" in result.output
    assert sorted(str(path.relative_to(out)) for path in out.rglob("*")) == ["photo.jpg"]  # no out/out/...


def test_an_output_folder_that_cannot_be_made_is_one_line_before_anything_loads(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = facefix("restore", shared_path("photos", PHOTO), tmp_path / "file" / "out", "--restorer", "gfpgan")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'file' / 'out'}: can't create the output folder (Not a directory)"]


def test_training_on_an_empty_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = facefix("train", "compact", "--data", tmp_path / "empty", "--out", tmp_path / "run", "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'empty'}: no training images found (.jpg, .png, .webp, ... in it or its sub-folders)"]


def test_a_diverging_resumed_run_leaves_the_good_last_checkpoint_as_it_was(tmp_path):
    faces = copy_faces(tmp_path / "faces", 6)
    run = tmp_path / "run"
    common = ["train", "compact", "--data", str(faces / "images"), "--out", str(run), "--size", "64", "--crop", "0",
              "--batch-size", "2", "--workers", "0", "--val-every", "0", "--quiet"]
    good = CliRunner().invoke(cli, [*common, "--iters", "2"], catch_exceptions=False)
    assert good.exit_code == 0, good.output
    digest = file_digest(run / "last.pth")
    bad = CliRunner().invoke(cli, [*common, "--iters", "40", "--lr", "1e12", "--checkpoint-every", "1000",
                                   "--resume"], catch_exceptions=False)
    assert bad.exit_code == 1 and "diverged" in bad.output and len(bad.output.strip().splitlines()) == 1
    assert file_digest(run / "last.pth") == digest


def test_an_extreme_strip_is_written_unchanged_without_a_crash(tmp_path):
    import cv2
    import numpy as np

    folder = tmp_path / "in"
    folder.mkdir()
    strip = np.random.default_rng(0).integers(0, 256, (8, 100000, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "strip.png"), strip)
    cv2.imwrite(str(folder / "tall.png"), np.ascontiguousarray(strip[:, :30000].transpose(1, 0, 2)))
    result = restore(folder, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "strip.png")), strip)


def test_an_onnx_file_declaring_a_huge_input_is_refused_before_anything_is_allocated(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "bomb",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 60000, 60000])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 60000, 60000])])
    bomb = tmp_path / "bomb.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime of the last years reads
    onnx.save(model, str(bomb))
    assert bomb.stat().st_size < 1000
    result = facefix("restore", shared_path("photos", PHOTO), tmp_path / "out", "--restorer", "onnx", "--onnx", bomb,
                     "--quiet")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {bomb}: declares a 60000 px input; a face restorer takes 8 to 4096 px")


def test_a_checkpoint_whose_config_asks_for_huge_layers_is_refused_by_its_layout(tmp_path):
    import torch

    state = torch.load(PROJECT / "weights" / "facefix_compact_v1.pth", weights_only=True)
    state["config"] = {**state["config"], "channels": [40000, *state["config"]["channels"][1:]]}
    crafted = tmp_path / "crafted.pth"
    torch.save(state, crafted)
    result = facefix("restore", shared_path("photos", PHOTO), tmp_path / "out", "--restorer", "compact", "--weights",
                     crafted, "--quiet")
    assert result.returncode == 1
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {crafted}: does not fit the compact restorer; keys of another shape")


def test_a_zip_bomb_weights_file_is_refused_by_its_declared_size(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(300):  # 300 MiB of zeros, deflated to ~300 KB
                member.write(block)
    assert bomb.stat().st_size < 2 << 20
    result = facefix("restore", shared_path("photos", PHOTO), tmp_path / "out", "--restorer", "compact", "--weights",
                     bomb, "--quiet")
    assert result.returncode == 1
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {bomb}: refused to load: its 0.3 MiB unpack to 300 MiB")


def test_animations_and_multi_page_files_are_refused_in_one_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    frames = [Image.new("RGB", (64, 64), (40 * index, 80, 120)) for index in range(3)]
    frames[0].save(folder / "moving.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    shutil.copy(shared_path("photos", PHOTO), folder / "photo.jpg")
    result = restore(folder / "moving.gif", folder / "pages.tif", folder / "photo.jpg", tmp_path / "out")
    assert result.exit_code == 1
    lines = error_lines(result.output)
    assert len(lines) == 2 and all("holds 3 frames" in line for line in lines), result.output
    assert (tmp_path / "out" / "photo.jpg").is_file()


def test_max_pixels_bounds_the_output_and_reaches_past_pils_own_limit(tmp_path):
    from PIL import Image

    from facefix.image_io import read_image

    # 411 x 512 px: 1 MP under a limit of 10 MP, 54 MP once enlarged 16 times
    result = restore(shared_path("photos", PHOTO), tmp_path / "out", "--upscale", "16", "--max-pixels", "10000000")
    assert result.exit_code == 1
    assert ("the output would be 6576x8192 = 53870592 pixels at --upscale 16, over the limit of 10000000 (raise it "
            "with --max-pixels)") in result.output
    assert not list((tmp_path / "out").iterdir())
    large = tmp_path / "large.png"
    Image.new("L", (13500, 13500), 128).save(large)  # 182 MP: past PIL's 179 MP bomb guard
    assert read_image(large, max_pixels=200_000_000).pixels.shape == (13500, 13500)


def test_a_network_that_returns_nan_fails_its_image_in_one_line_instead_of_pasting_black(tmp_path):
    import numpy as np
    import torch

    from facefix import plugins
    from facefix.hookspecs import hookimpl
    from facefix.restorers import TorchRestorer

    class NotANumber(torch.nn.Module):
        def forward(self, batch):
            return batch * float("nan")

    class NanPlugin:
        @hookimpl
        def register_restorers(self, register):
            register("nan-test", lambda context: TorchRestorer(NotANumber(), input_size=64, output_size=64))

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        import cv2

        cv2.imwrite(str(folder / name), np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    plugins.load_plugins()
    plugins.pm.register(NanPlugin(), name="nan-test-plugin")
    try:
        result = CliRunner().invoke(cli, ["restore", str(folder), str(tmp_path / "out"), "--aligned", "--restorer",
                                          "nan-test", "--backend", "torch", "--quiet"], catch_exceptions=False)
    finally:
        plugins.pm.unregister(name="nan-test-plugin")
    assert result.exit_code == 1
    lines = error_lines(result.output)
    assert len(lines) == 2 and all("not finite (NaN or inf)" in line for line in lines), result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_restore_prints_its_summary_exits_130_and_leaves_no_temporaries(tmp_path, signal_name):
    import signal

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(40):
        shutil.copy(shared_path("photos", PHOTO), folder / f"photo{index:02d}.jpg")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "facefix", "restore", str(folder), str(out), "--restorer",
                                "passthrough", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and any(out.glob("*.jpg"))):
        time.sleep(0.05)
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    written = sorted(out.glob("*.jpg"))
    assert 0 < len(written) < 40
    import re

    counted = re.search(r"Error: interrupted; (\d+) processed, 0 failed", stderr)
    assert counted, stderr
    # the file being finished when the signal came may be written but not yet counted
    assert int(counted.group(1)) in (len(written), len(written) - 1)
    assert not [path for path in out.iterdir() if not path.name.endswith(".jpg")]  # no .part files


def test_temporaries_a_killed_run_left_are_removed_by_the_next_and_a_live_runs_are_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that was facefix's and is gone
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / temporary_name("photo.jpg", dead.pid, "0badc0de"),
             out / "sub" / temporary_name("other.png", dead.pid, "abcdef01")]
    live = out / temporary_name("photo.jpg", os.getpid(), "12345678")  # this process is alive: a concurrent run's
    foreign = [out / ".notes.txt.part",  # not facefix's naming
               out / "album" / ".chapter.2023-final.part",  # a user's file that looks like an old temporary
               out / f".photo.jpg.{dead.pid}-0badc0de-00000000.part"]  # the pattern without facefix's digest
    foreign[1].parent.mkdir()
    for path in (*stale, live, *foreign):
        path.write_bytes(b"half")
    result = facefix("restore", shared_path("photos", PHOTO), out, "--restorer", "passthrough")
    assert result.returncode == 0, result.stderr
    assert f"removed 2 temporary file(s) an interrupted run left in {out}" in result.stderr
    assert not any(path.exists() for path in stale) and live.exists() and all(path.exists() for path in foreign)


def test_training_skips_a_bad_image_with_a_warning_and_a_corrupt_resume_is_one_line(tmp_path):
    faces = copy_faces(tmp_path / "faces", 4)
    (faces / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run = tmp_path / "run"
    common = ["train", "compact", "--data", faces / "images", "--out", run, "--size", "64", "--crop", "0",
              "--batch-size", "2", "--val-every", "0", "--quiet"]
    result = facefix(*common, "--iters", "3", "--workers", "2", timeout=300)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "skipping a training image" in line]
    assert warnings and all("broken.png" in line for line in warnings) and "Traceback" not in result.stderr
    assert (run / "final.pth").is_file()
    (run / "last.pth").write_bytes(b"")
    resumed = facefix(*common, "--iters", "4", "--workers", "0", "--resume", timeout=300)
    assert resumed.returncode == 1
    line, = resumed.stderr.strip().splitlines()
    assert line.startswith(f"Error: {run / 'last.pth'}: not a readable PyTorch weights file")


def test_training_the_parser_without_its_masks_is_one_line(tmp_path):
    faces = copy_faces(tmp_path / "faces", 2)
    shutil.rmtree(faces / "masks")
    (faces / "masks").mkdir()
    result = facefix("train", "psfrgan-parse", "--data", faces / "images", "--masks", faces / "masks", "--out",
                     tmp_path / "run", "--iters", "1", "--batch-size", "1", "--workers", "0", "--val-every", "0",
                     "--quiet", timeout=300)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "none of the training images could be read" in errors[0] or "no parsing mask" in errors[0]


def _ffmpeg_reporting(folder: Path, version: str, real: str) -> Path:
    """An ``ffmpeg`` for PATH that says it is ``version`` and runs ``real`` for everything else."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "ffmpeg"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-version" ]; then echo "ffmpeg version {version} Copyright"; exit 0; fi\n'
                    f'exec "{real}" "$@"\n')
    fake.chmod(0o755)
    return fake


def test_an_ffmpeg_older_than_6_on_path_gives_way_to_the_bundled_one_or_says_why(tmp_path, monkeypatch):
    import facefix.video.ffmpeg as ffmpeg_module

    bundled = ffmpeg_module._bundled_ffmpeg()
    if bundled is None:
        pytest.skip("imageio-ffmpeg's binary is not installed")
    old = _ffmpeg_reporting(tmp_path / "bin", "5.1.9-0+deb12u1", bundled)
    monkeypatch.setenv("PATH", f"{old.parent}{os.pathsep}{os.environ['PATH']}")
    ffmpeg_module._VERSIONS.clear()
    assert ffmpeg_module.ffmpeg_version(str(old)) == (5, 1, 9)
    assert ffmpeg_module.find_ffmpeg() == bundled  # 5.1 can't write a rotation: the bundled one runs
    recent = _ffmpeg_reporting(tmp_path / "bin7", "7.1.1", bundled)
    monkeypatch.setenv("PATH", f"{recent.parent}{os.pathsep}{os.environ['PATH']}")
    assert ffmpeg_module.find_ffmpeg() == str(recent)  # a recent one on PATH is the user's choice
    # only the old one: a rotated video is refused in one line, before any network loads
    monkeypatch.setenv("PATH", f"{old.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(ffmpeg_module, "_bundled_ffmpeg", lambda: None)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([bundled, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp_path / "plain.mp4")], check=True)
    subprocess.run([bundled, "-v", "error", "-display_rotation", "90", "-i", str(tmp_path / "plain.mp4"), "-c", "copy",
                    str(rotated)], check=True)
    result = CliRunner().invoke(cli, ["video", str(rotated), "-o", str(tmp_path / "out.mp4"), "--quiet",
                                      "--restorer", "passthrough"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {rotated}: keeping this video's rotation needs ffmpeg 6 or later; {old} is 5.1.9 (pip install "
        "imageio-ffmpeg brings a recent one)"]


def test_a_truncated_faststart_mp4_is_reported_not_restored_in_part(tmp_path):
    import facefix.video.ffmpeg as ffmpeg_module

    exe = ffmpeg_module.find_ffmpeg()
    whole = tmp_path / "whole.mp4"
    subprocess.run([exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(whole)], check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 8])  # the header whole, most frames gone
    result = CliRunner().invoke(cli, ["video", str(cut), "-o", str(tmp_path / "out.mp4"), "--quiet",
                                      "--restorer", "passthrough"])
    assert result.exit_code == 1
    line, = result.output.strip().splitlines()
    assert line.startswith(f"Error: {cut}: truncated: the container says 2.00 s, but its video stops at")
    assert not (tmp_path / "out.mp4").exists()
    whole_run = CliRunner().invoke(cli, ["video", str(whole), "-o", str(tmp_path / "ok.mp4"), "--quiet",
                                         "--restorer", "passthrough"])
    assert whole_run.exit_code == 0, whole_run.output


def test_a_damaged_cached_export_is_exported_again_and_a_named_onnx_that_fails_is_an_error(tmp_path, capsys):
    import torch

    from facefix.backends import apply_backend, parser_backend
    from facefix.errors import FacefixError
    from facefix.onnx import OnnxParser
    from facefix.restorers import TorchRestorer
    from unet_parser_plugin import UNetParser

    weights = shared_path("weights", "parsing_unet_lightweight.pth")
    parser_backend(UNetParser(weights), "auto", "cpu", tmp_path)
    graph, = tmp_path.glob("*.onnx")
    graph.write_bytes(b"damaged")
    capsys.readouterr()
    runner, how = parser_backend(UNetParser(weights), "auto", "cpu", tmp_path)
    assert isinstance(runner, OnnxParser) and how == "onnxruntime"  # not a fallback to PyTorch
    assert f"the cached export {graph} does not load" in capsys.readouterr().err
    assert graph.stat().st_size > 1000
    broken = tmp_path / "mine.onnx"
    broken.write_bytes(b"not a model")
    restorer = TorchRestorer(torch.nn.Identity(), input_size=32, output_size=32, name="identity")
    with pytest.raises(FacefixError, match=f"--onnx {broken}: .*onnxruntime cannot load this model"):
        apply_backend(restorer, "auto", "fp32", "cpu", broken, tmp_path)


def test_a_file_name_with_a_newline_keeps_its_error_on_one_line(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad\nname.jpg").write_bytes(b"not an image at all")
    shutil.copy(shared_path("photos", PHOTO), folder / "photo.jpg")
    result = restore(folder, tmp_path / "out")
    assert result.exit_code == 1
    lines = error_lines(result.output)
    assert len(lines) == 1 and "bad\\nname.jpg" in lines[0], result.output
    assert "1 processed, 1 failed" in result.output


@pytest.mark.parametrize("layout", ["google", "samsung"])
def test_a_motion_photo_is_restored_with_its_video_kept_after_the_picture(tmp_path, layout):
    import facefix.video.ffmpeg as ffmpeg_module

    exe = ffmpeg_module.find_ffmpeg()
    clip = tmp_path / "clip.mp4"
    subprocess.run([exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    video = (b"MotionPhoto_Data" if layout == "samsung" else b"") + clip.read_bytes()
    folder = tmp_path / "in"
    folder.mkdir()
    picture = shared_path("photos", PHOTO).read_bytes()
    (folder / "motion.jpg").write_bytes(picture + video)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["restore", str(folder), str(out), "--restorer", "passthrough"])
    assert result.exit_code == 0, result.output
    assert f"{folder / 'motion.jpg'}: a motion photo: its video" in result.output
    assert "is kept after the restored picture" in result.output
    written = (out / "motion.jpg").read_bytes()
    assert written.endswith(video)
    from facefix.image_io import read_image

    again = read_image(out / "motion.jpg")  # the output reads as a motion photo too
    assert again.trailer == video and again.pixels.shape[:2] == (512, 411)


def test_decoder_warnings_from_c_libraries_do_not_leak_a_second_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 64), (100, 50, 20)).save(folder / "icc.png", icc_profile=b"not a profile" * 10)
    result = facefix("restore", folder, tmp_path / "out", "--restorer", "passthrough", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "libpng" not in result.stderr and "warning" not in result.stderr.lower(), result.stderr
    assert (tmp_path / "out" / "icc.png").is_file()
    (folder / "broken.png").write_bytes((folder / "icc.png").read_bytes()[:120])  # cut inside the profile
    result = facefix("restore", folder / "broken.png", tmp_path / "out2", "--restorer", "passthrough", "--quiet")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 2  # its error line and the summary


def test_a_full_disk_while_encoding_a_video_is_named_as_such(tmp_path):
    import facefix.video.ffmpeg as ffmpeg_module

    exe = ffmpeg_module.find_ffmpeg()
    clip = tmp_path / "clip.mp4"
    subprocess.run([exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("a small filesystem can't be mounted here (needs root)")
    try:
        result = CliRunner().invoke(cli, ["video", str(clip), "-o", str(small / "out.mp4"), "--quiet",
                                          "--restorer", "passthrough"])
        assert result.exit_code == 1
        line, = result.output.strip().splitlines()
        assert line.startswith(f"Error: {small / 'out.mp4'}: encoding failed") and "No space left on device" in line
        assert not list(small.iterdir())  # no half-written video, no temporary
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def _ffmpeg_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"ffmpeg" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir() or shutil.which("setpriv") is None,
                    reason="needs Linux's /proc and util-linux's setpriv")
def test_a_killed_video_run_takes_its_ffmpeg_processes_with_it(tmp_path):
    import signal

    import facefix.video.ffmpeg as ffmpeg_module

    exe = ffmpeg_module.find_ffmpeg()
    clip = tmp_path / "long.mp4"
    subprocess.run([exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=30:duration=30", "-c:v",
                    "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
    process = subprocess.Popen([sys.executable, "-m", "facefix", "video", str(clip), "-o", str(tmp_path / "out.mp4"),
                                "--restorer", "passthrough", "--quiet"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    children: list[int] = []

    def encoding() -> bool:  # frames are reaching the temporary output
        return any(path.stat().st_size > 50_000 for path in tmp_path.glob(".out.mp4.*.part"))

    while time.monotonic() < deadline and (len(children) < 2 or not encoding()):  # the decoder and the encoder
        time.sleep(0.1)
        children = _ffmpeg_children(process.pid)
    assert len(children) >= 2 and encoding()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{child}").exists() for child in children):
        time.sleep(0.1)
    survivors = [child for child in children if Path(f"/proc/{child}/stat").exists()
                 and (Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]
    assert not survivors
    assert not (tmp_path / "out.mp4").exists()
    # killed, the encoder never finalised the temporary into a playable, shortened video
    # (an orphan reading EOF on its input would have); the next run removes it
    from facefix.errors import InputError

    leftovers = list(tmp_path.glob(".out.mp4.*.part"))
    assert leftovers
    for leftover in leftovers:
        with pytest.raises(InputError):
            ffmpeg_module.probe(leftover, exe)
    again = facefix("video", clip, "-o", tmp_path / "out.mp4", "--restorer", "passthrough", "--quiet",
                    "--end", "0.5")
    assert again.returncode == 0, again.stderr
    assert not list(tmp_path.glob(".out.mp4.*.part"))


@pytest.mark.parametrize("network, fixture", [("gfpgan", "gfpgan/clean_main.pth"),
                                              ("psfrgan", "psfrgan/generator_main.pth")])
def test_a_checkpoint_with_a_crafted_config_is_one_line(tmp_path, network, fixture):
    import torch

    state = torch.load(PROJECT / "tests" / "fixtures" / fixture, weights_only=True)
    state["config"] = {"arch": "nope", "bogus_key": 3}
    crafted = tmp_path / "crafted.pth"
    torch.save(state, crafted)
    result = facefix("restore", shared_path("photos", PHOTO), tmp_path / "out", "--restorer", network, "--weights",
                     crafted, "--quiet")
    assert result.returncode == 1
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {crafted}: does not fit the ") and "bad config" in line


# -- the second sweep (issue 33): each case fails without its fix ----------------------------


def test_export_never_replaces_a_device_or_its_own_weights(tmp_path):
    """`export -o /dev/null` as root put a regular file in place of the device; `-o w.pth
    --weights w.pth` overwrote the trained checkpoint with ONNX and exited 0."""
    weights = tmp_path / "w.pth"
    shutil.copy(PROJECT / "weights" / "facefix_compact_v1.pth", weights)
    digest = file_digest(weights)
    result = facefix("export", "compact", "--weights", weights, "-o", "/dev/null")
    assert result.returncode == 1 and "character device" in result.stderr
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    for output in (weights, tmp_path / "." / "w.pth"):
        result = facefix("export", "compact", "--weights", weights, "-o", output)
        assert result.returncode == 1 and "--weights input" in result.stderr, result.stderr
        assert len(error_lines(result.stderr)) == 1
    assert file_digest(weights) == digest


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifos_given_as_onnx_or_config_are_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "model.onnx")
    os.mkfifo(tmp_path / "config.json")
    for args in (("restore", shared_path("photos", PHOTO), tmp_path / "out", "--onnx", tmp_path / "model.onnx",
                  "--backend", "onnx"),
                 ("train", "compact", "--data", tmp_path, "--config", tmp_path / "config.json")):
        result = facefix(*args, timeout=60)
        assert result.returncode == 2 and "not a regular file (a FIFO)" in result.stderr


def test_training_on_fewer_faces_than_a_batch_is_one_line_not_a_hang(tmp_path):
    faces = copy_faces(tmp_path / "faces", 3)
    result = facefix("train", "compact", "--data", faces / "images", "--out", tmp_path / "run", "--batch-size", "4",
                     "--quiet", timeout=120)
    assert result.returncode == 1 and len(error_lines(result.stderr)) == 1
    assert "fewer than the batch size 4" in result.stderr


def test_resuming_another_networks_checkpoint_and_bad_numbers_are_one_line(tmp_path):
    faces = copy_faces(tmp_path / "faces", 6)
    common = ["train", "compact", "--data", faces / "images", "--size", "64", "--crop", "0", "--batch-size", "2",
              "--workers", "0", "--val-every", "0", "--iters", "1", "--quiet"]
    run = tmp_path / "run"
    run.mkdir()
    torch = pytest.importorskip("torch")
    torch.save({"step": 3, "config": {"network": "gfpgan"}, "models": {"generator": {"x": torch.zeros(1)}},
                "ema": {}, "optimizers": {}}, run / "last.pth")
    resumed = facefix(*common, "--out", run, "--resume")
    assert resumed.returncode == 1 and "can't continue this compact run" in resumed.stderr
    assert len(resumed.stderr.strip().splitlines()) == 1
    for flag, value, code in (("--lr", "nan", 2), ("--lr", "-1", 1), ("--size", "0", 2)):
        result = facefix(*common, "--out", tmp_path / "other", flag, value)
        assert result.returncode == code and "Traceback" not in result.stderr, (flag, value, result.stderr)
        assert flag in result.stderr


@pytest.mark.parametrize("option", ["--blend", "--upscale", "--fidelity", "--min-face-size", "--max-face-size",
                                    "--detection-threshold"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_float_options_refuse_nan_and_infinity(tmp_path, option, value):
    """`--blend nan` pasted a black face and exited 0."""
    result = restore(shared_path("photos", PHOTO), tmp_path / "out", option, value)
    assert result.exit_code == 2 and "Invalid value" in result.output
    assert not (tmp_path / "out").exists()


def test_a_jpeg_padded_after_its_end_and_a_folder_with_a_symlink_loop(tmp_path):
    """Padding after the end marker (cameras, messengers) was "truncated"; a link loop in a
    folder aborted the batch with a traceback."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "padded.jpg").write_bytes(shared_path("photos", PHOTO).read_bytes() + b"\0" * 4096)
    shutil.copy(shared_path("photos", PHOTO), folder / "plain.jpg")
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "dangling.jpg").symlink_to("gone.jpg")
    result = facefix("restore", folder, tmp_path / "out", "--restorer", "passthrough", "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 2
    assert any("loop.jpg" in line and "symbolic link loop" in line for line in lines)
    # the link's own name, not its target's
    assert any(f"{folder / 'dangling.jpg'}: a symbolic link to gone.jpg" in line for line in lines)
    assert "2 processed, 2 failed" in result.stderr
    assert (tmp_path / "out" / "padded.jpg").is_file() and (tmp_path / "out" / "plain.jpg").is_file()
    direct = facefix("restore", folder / "loop.jpg", tmp_path / "out2", "--quiet")
    assert direct.returncode == 1 and "symbolic link loop" in direct.stderr and "not found" not in direct.stderr


def test_unsupported_uris_a_too_deep_tree_and_long_names(tmp_path):
    result = facefix("restore", "zip://x::file:///etc/passwd", tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "unsupported location" in result.stderr and "Traceback" not in result.stderr
    # a folder past PATH_MAX: named in one line, the rest of the batch restored
    root = tmp_path / "deep"
    root.mkdir()
    shutil.copy(shared_path("photos", PHOTO), root / "top.jpg")
    here = os.getcwd()
    try:
        os.chdir(root)
        for _ in range(25):
            os.mkdir("d" * 200)
            os.chdir("d" * 200)
        shutil.copy(shared_path("photos", PHOTO), "deep.jpg")
    finally:
        os.chdir(here)
    result = facefix("restore", root, tmp_path / "deep_out", "--recursive", "--restorer", "passthrough", "--quiet")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1 and "1 processed, 1 failed" in result.stderr
    # names of 235-255 bytes: their temporaries stay within the limit too
    long = tmp_path / "long"
    long.mkdir()
    name = "é" * 121 + ".jpg"  # 246 bytes
    shutil.copy(shared_path("photos", PHOTO), long / name)
    result = facefix("restore", long, tmp_path / "long_out", "--restorer", "passthrough", "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "long_out" / name).is_file()


def test_aligned_jpegs_stay_jpegs_and_transparency_is_flattened_with_a_note(tmp_path):
    face = shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")
    jpeg = tmp_path / "face.jpg"
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(jpeg), cv2.imread(str(face)), [cv2.IMWRITE_JPEG_QUALITY, 95])
    result = restore(jpeg, tmp_path / "aligned", "--aligned")
    assert result.exit_code == 0 and (tmp_path / "aligned" / "face.jpg").is_file()
    rgba = cv2.cvtColor(cv2.imread(str(shared_path("photos", PHOTO))), cv2.COLOR_BGR2BGRA)
    rgba[:100, :, 3] = 0  # a transparent band
    cv2.imwrite(str(tmp_path / "clear.png"), rgba)
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "clear.png"), str(tmp_path / "flat"), "--restorer",
                                      "passthrough", "--ext", "jpg"])
    assert result.exit_code == 0
    assert "transparency" in result.stderr and "flattened onto white" in result.stderr
    assert cv2.imread(str(tmp_path / "flat" / "clear.jpg"))[:90].min() > 240  # white, not what was under


def test_videos_among_images_are_named_and_a_video_given_to_restore_points_to_video(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("photos", PHOTO), folder / "photo.jpg")
    shutil.copy(shared_path("videos", "videoretalking__face_1.mp4"), folder / "clip.mp4")
    (folder / "anim.gif").write_bytes(b"GIF89a")
    result = CliRunner().invoke(cli, ["restore", str(folder), str(tmp_path / "out"), "--restorer", "passthrough"])
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if "skipped, a video or animation" in line]
    assert len(notes) == 2 and "facefix video" in notes[0]
    direct = restore(folder / "clip.mp4", tmp_path / "out2")
    assert direct.exit_code == 1 and "a video, not an image: restore it with `facefix video`" in direct.output
    # and the other way round: a JPEG named .mp4 is no one-frame video
    shutil.copy(shared_path("photos", PHOTO), tmp_path / "still.mp4")
    video = facefix("video", tmp_path / "still.mp4", tmp_path / "out.mp4", "--quiet")
    assert video.returncode == 1 and "a still image (JPEG), not a video" in video.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_too_many_threads_too_small_tiles_and_a_sparse_giant_jpeg(tmp_path):
    import time as clock

    result = restore(shared_path("photos", PHOTO), tmp_path / "out", "--threads", "100000")
    assert result.exit_code == 0 and "--threads 100000 is more than the" in result.stderr
    tiny = restore(shared_path("photos", PHOTO), tmp_path / "out2", "--bg-upsampler", "realesr-animevideov3",
                   "--bg-tile", "1", "--upscale", "2")
    assert tiny.exit_code == 2 and "too small" in tiny.output
    sparse = tmp_path / "huge.jpg"
    with sparse.open("wb") as stream:
        stream.write(shared_path("photos", PHOTO).read_bytes())
        stream.truncate(10 << 30)  # 10 GB, nearly all a hole
    started = clock.monotonic()
    result = restore(sparse, tmp_path / "out3")
    assert result.exit_code == 1 and "larger than an image of its size can be" in result.output
    assert clock.monotonic() - started < 30


def test_saved_faces_of_inputs_sharing_a_stem_are_all_kept(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_path("photos", "insightface_t1.jpg"), folder / "group.jpg")
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(folder / "group.png"), cv2.imread(str(shared_path("photos", "insightface_t1.jpg"))))
    result = restore(folder, tmp_path / "out", "--save-faces")
    assert result.exit_code == 0, result.output
    saved = sorted(path.name for path in (tmp_path / "out" / "restored_faces").iterdir())
    assert len(saved) == 12 and "group.jpg_00.png" in saved and "group.png_00.png" in saved


def test_a_bidirectional_override_in_a_name_is_escaped(tmp_path):
    name = "photo\u202egpj.exe.jpg"
    (tmp_path / name).write_bytes(b"not an image")
    result = facefix("restore", tmp_path / name, tmp_path / "out", "--quiet")
    assert result.returncode == 1 and "\u202e" not in result.stderr and "\\u202e" in result.stderr
