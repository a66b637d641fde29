"""What a GFPGAN, CodeFormer or facefusion user types first: their flags, a file as the
output, names in any case, and component names where weights names are expected."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import PROJECT, shared_path
from facefix.cli import cli

PHOTO = "facexlib__assets_test2.jpg"


def run(*args: object, env: dict[str, str] | None = None):
    return CliRunner(env=env).invoke(cli, [*map(str, args)], catch_exceptions=False)


def test_an_image_as_the_output_is_written_as_that_file(tmp_path):
    source = tmp_path / "a.jpg"
    shutil.copy(shared_path("photos", PHOTO), source)
    result = run("restore", source, tmp_path / "out.png", "--restorer", "passthrough", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.png").is_file() and cv2.imread(str(tmp_path / "out.png")) is not None
    folder = tmp_path / "many"
    folder.mkdir()
    for name in ("one.jpg", "two.jpg"):
        shutil.copy(source, folder / name)
    result = run("restore", folder, tmp_path / "both.jpg", "--restorer", "passthrough", "--quiet")
    assert result.exit_code == 1 and "an output file takes one input image, and 2 were found" in result.output
    assert not (tmp_path / "both.jpg").exists()


def test_gfpgans_short_flags_work(tmp_path):
    source = tmp_path / "a.jpg"
    shutil.copy(shared_path("photos", PHOTO), source)
    result = run("restore", "-i", source, "-o", tmp_path / "out", "-s", "2", "--restorer", "passthrough", "--quiet")
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(tmp_path / "out" / "a.jpg"))
    assert written.shape[:2] == (1024, 822)  # -s 2: twice 512 x 411
    result = run("restore", "-i", source, "-o", tmp_path / "w", "-w", "0.5", "--restorer", "passthrough", "--quiet")
    assert result.exit_code == 0, result.output


def test_a_forgotten_output_says_so(tmp_path):
    result = run("restore", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: missing OUTPUT: where should the results of {tmp_path} go? "
                                     "facefix restore INPUTS... OUTPUT (or -o OUTPUT)")


def test_component_names_in_any_case_and_a_did_you_mean(tmp_path):
    from facefix.errors import ComponentError
    from facefix.plugins import get_component

    assert get_component("restorer", "GFPGAN").name == "gfpgan"
    assert get_component("restorer", "PassThrough").name == "passthrough"
    try:
        get_component("restorer", "gfpgn")
    except ComponentError as error:
        assert "did you mean 'gfpgan'?" in str(error)
    else:
        raise AssertionError("an unknown restorer was accepted")


def test_weights_download_takes_a_restorers_name(tmp_path, monkeypatch):
    from facefix.cli.weights import entry_for

    assert entry_for("gfpgan").name == "gfpgan-v1.4"
    assert entry_for("GFPGAN").name == "gfpgan-v1.4"
    assert entry_for("gfpgan-v1.3").name == "gfpgan-v1.3"  # weights names still come first
    monkeypatch.setenv("FACEFIX_OFFLINE", "1")
    result = run("weights", "download", "gfpgan")
    assert "unknown weights" not in result.output and "GFPGANv1.4.pth" in result.output


def test_video_takes_its_output_as_a_second_argument(tmp_path):
    from facefix.video.ffmpeg import find_ffmpeg

    import subprocess

    clip = tmp_path / "clip.mp4"
    subprocess.run([find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    result = run("video", clip, tmp_path / "out.mp4", "--restorer", "passthrough", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.mp4").is_file()
    result = run("video", clip, tmp_path / "a.mp4", "-o", tmp_path / "b.mp4", "--quiet")
    assert result.exit_code == 1 and "two outputs" in result.output


def test_a_gray_photo_stored_as_rgb_comes_out_gray(tmp_path):
    photo = cv2.imread(str(shared_path("photos", "gfpgan__inputs_whole_imgs_Blake_Lively.jpg")))
    gray = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    result = run("restore", tmp_path / "gray.png", tmp_path / "out", "--quiet")  # the default restorer
    assert result.exit_code == 0, result.output
    out = cv2.imread(str(tmp_path / "out" / "gray.png")).astype(np.int16)
    lab = cv2.cvtColor(out.astype(np.uint8), cv2.COLOR_BGR2LAB).astype(np.int16)
    chroma = np.hypot(lab[:, :, 1] - 128, lab[:, :, 2] - 128)
    assert chroma.max() <= 2, chroma.max()
    assert np.abs(out - gray.astype(np.int16)).max() > 10  # the faces were restored, not passed through


def test_a_clean_large_face_keeps_its_sharpness(tmp_path):
    """liveportrait s2 is a clean 2048 px portrait whose face is larger than compact's 512 px
    crop: the network alone smooths its brows, lashes and skin; with the face's own detail
    kept (the default) its sharpness stays at passthrough's."""
    from facefix import compose

    photo = shared_path("photos", "liveportrait__source_s2.jpg")
    image = cv2.imread(str(photo))
    detector = compose.assemble(compose.ComponentSelection(restorer="passthrough", blender="soft"),
                                quiet=True).get("detector")
    x0, y0, x1, y1 = (int(value) for value in detector.detect(image)[0].box)

    def sharpness(folder) -> float:
        gray = cv2.cvtColor(cv2.imread(str(folder / photo.name)), cv2.COLOR_BGR2GRAY)[y0:y1, x0:x1]
        return float(cv2.Laplacian(gray, cv2.CV_64F).var())

    for name, extra in (("passthrough", ["--restorer", "passthrough"]), ("compact", ["--restorer", "compact"]),
                        ("smoothed", ["--restorer", "compact", "--no-keep-detail"])):
        result = run("restore", photo, tmp_path / name, *extra, "--quiet")
        assert result.exit_code == 0, result.output
    reference = sharpness(tmp_path / "passthrough")
    assert abs(sharpness(tmp_path / "compact") - reference) <= 0.1 * reference  # neither smoothed nor over-sharpened
    assert sharpness(tmp_path / "smoothed") < 0.6 * reference  # what the network alone does to it


def test_an_encoder_that_cannot_start_says_why_in_one_line():
    from facefix.video.info import ffmpeg_reason

    # what ffmpeg prints for -c:v h264_nvenc on a machine without an NVIDIA driver
    printed = """[h264_nvenc @ 0x564b2b06bac0] Cannot load libcuda.so.1
[vost#0:0/h264_nvenc @ 0x564b2afe1bc0] [enc:h264_nvenc @ 0x564b2afe2580] Error while opening encoder - maybe incorrect parameters such as bit_rate, rate, width or height.
[vf#0:0 @ 0x564b2b06c040] Error sending frames to consumers: Operation not permitted
[vost#0:0/h264_nvenc @ 0x564b2afe1bc0] [enc:h264_nvenc @ 0x564b2afe2580] Could not open encoder before EOF
[out#0/mp4 @ 0x564b2afe0980] Nothing was written into output file, because at least one of its streams received no packets."""
    assert ffmpeg_reason(printed) == "the encoder could not start: Cannot load libcuda.so.1"


def test_fidelity_given_to_a_restorer_without_one_gets_a_note(tmp_path):
    from conftest import PROJECT
    from facefix import compose

    notes: list[str] = []
    compose.assemble(compose.ComponentSelection(restorer="compact", fidelity=0.5, blender="soft"), quiet=True,
                     note=notes.append)
    assert "facefix: note: compact has no fidelity setting: --fidelity 0.5 is ignored" in notes
    notes.clear()
    compose.assemble(compose.ComponentSelection(restorer="gfpgan", fidelity=0.5, blender="soft", backend="torch",
                                                weights=PROJECT / "tests" / "fixtures" / "gfpgan" / "clean_main.pth"),
                     quiet=True, note=notes.append)
    assert not any("fidelity" in note for note in notes)  # GFP-GAN honours it


def test_a_run_with_non_commercial_weights_says_so_first(tmp_path):
    from facefix import compose

    notes: list[str] = []
    # the default restorer: compact, since no GFP-GAN weights are in this test's FACEFIX_HOME
    assembly = compose.assemble(compose.ComponentSelection(blender="soft"), note=notes.append)
    assert assembly.names["restorer"] == "compact"
    assert notes[0].startswith("facefix: note: compact's weights are licensed") and "non-commercial" in notes[0]
    assert "so compact restores" in notes[1]  # then why it was the one that ran


def test_the_licence_note_belongs_to_the_released_file_and_survives_quiet(tmp_path):
    """A user's own trained compact file got the release's non-commercial note; -q hid the
    note the README says every run prints first."""
    import torch

    from facefix import compose

    shipped = PROJECT / "weights" / "facefix_compact_v1.pth"
    state = torch.load(shipped, weights_only=True)
    own = tmp_path / "my_compact.pth"
    key = next(key for key, value in state["params_ema"].items() if value.is_floating_point())
    state["params_ema"][key] = state["params_ema"][key] + 0.01  # trained further: another file
    torch.save(state, own)
    for weights, expected in ((shipped, True), (own, False)):
        notes: list[str] = []
        compose.assemble(compose.ComponentSelection(blender="soft", weights=weights), note=notes.append)
        assert any("licensed" in note for note in notes) == expected, (weights, notes)
    result = run("restore", shared_path("photos", "facexlib__assets_test2.jpg"), tmp_path / "out", "-q")
    assert result.exit_code == 0
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("facefix: note: compact's weights are licensed")
    assert not any("so compact restores" in line or "exporting" in line for line in lines)


def test_gfpgan_spellings_and_weights_by_component_name(tmp_path):
    result = run("restore", shared_path("photos", "facexlib__assets_test2.jpg"), tmp_path / "out", "-v", "1.3",
                 "--bg_upsampler", "realesrgan-x2plus", "--model-dir", tmp_path, env={"FACEFIX_OFFLINE": "1"})
    # GFPGAN's -v 1.3 is the v1.3 release, which needs its download: one line naming it
    assert result.exit_code == 1 and "GFPGANv1.3.pth" in result.stderr
    conflict = run("restore", "x.jpg", tmp_path / "o", "-v", "1.4", "--restorer", "compact")
    assert conflict.exit_code == 2 and "-v 1.4 is --restorer gfpgan" in conflict.output
    shipped = run("weights", "download", "compact")
    assert shipped.exit_code == 0 and "ships with facefix" in shipped.stderr
    assert shipped.stdout.strip().endswith("facefix_compact_v1.pth")
    located = run("weights", "path", "compact")
    assert located.exit_code == 0 and located.stdout.strip().endswith("facefix_compact_v1.pth")


def face_box(image: np.ndarray) -> tuple[slice, slice]:
    from facefix import compose

    detector = compose.assemble(compose.ComponentSelection(restorer="passthrough", blender="soft"),
                                quiet=True).get("detector")
    x0, y0, x1, y1 = (int(value) for value in detector.detect(image)[0].box)
    return slice(y0, y1), slice(x0, x1)


def test_a_tinted_scan_keeps_its_cast_in_the_face(tmp_path):
    """The network restores faces toward natural skin: without colour matching a green
    scan's face loses its green and the paste square shows against the hair."""
    photo = cv2.imread(str(shared_path("photos", "gfpgan__inputs_whole_imgs_Blake_Lively.jpg")))
    green = np.clip(photo.astype(np.float32) * np.array([0.9, 1.12, 0.9], np.float32), 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "green.png"), green)
    box = face_box(green)
    lost = {}
    for name, extra in (("matched", []), ("unmatched", ["--no-color-match"])):
        result = run("restore", tmp_path / "green.png", tmp_path / name, "--restorer", "compact", *extra, "--quiet")
        assert result.exit_code == 0, result.output
        out = cv2.imread(str(tmp_path / name / "green.png")).astype(np.float64)
        excess_green = lambda pixels: (pixels[..., 1] - (pixels[..., 0] + pixels[..., 2]) / 2)[box].mean()  # noqa: E731
        lost[name] = excess_green(green.astype(np.float64)) - excess_green(out)
    assert abs(lost["matched"]) < 2.0, lost
    assert lost["unmatched"] > 4.0, lost  # what the network alone does to the cast


def test_the_parse_blender_without_a_parser_on_disk_falls_back_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFIX_OFFLINE", "1")
    monkeypatch.setenv("FACEFIX_HOME", str(tmp_path / "home"))
    source = tmp_path / "a.jpg"
    shutil.copy(shared_path("photos", PHOTO), source)
    result = run("restore", source, tmp_path / "out", "--restorer", "passthrough", "--blender", "parse")
    assert result.exit_code == 0, result.output
    said = result.output  # stdout and stderr
    assert "facefix: note: the parse blender needs a face parser, and none is on disk: pasting with soft instead" in said
    assert "blender soft" in said and (tmp_path / "out" / "a.jpg").is_file()
    result = run("restore", source, tmp_path / "named", "--restorer", "passthrough", "--blender", "parse",
                 "--parser", "parsenet", "--quiet")
    assert result.exit_code == 1 and "downloads are off" in result.output  # a parser asked for by name


def test_cache_list_and_clear_show_and_free_what_exports_take(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFIX_HOME", str(tmp_path))
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "gfpgan-0123.onnx").write_bytes(b"g" * 1000)
    (tmp_path / "onnx" / "gfpgan-0123.onnx.89abcdef.data").write_bytes(b"d" * 3 * 1024 * 1024)
    (tmp_path / "landmarks").mkdir()
    (tmp_path / "landmarks" / "512px.json").write_text("{}")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "GFPGANv1.4.pth").write_bytes(b"w" * 2048)
    (tmp_path / "weights" / ".verified.json").write_text("{}")
    listed = run("cache", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    export = next(line for line in lines if "gfpgan-0123.onnx" in line)
    assert "3.0 MiB" in export and ".data" not in listed.output  # the graph and its weights: one entry
    assert ".verified.json" not in listed.output
    assert lines[-1].startswith(f"{tmp_path}: 3 entries, 3.0 MiB (onnx 3.0 MiB, compiled 0 B, landmarks 2 B, "
                                "weights 2.0 KiB)")
    cleared = run("cache", "clear")
    assert cleared.exit_code == 0 and cleared.output.startswith("removed 2 entries, 3.0 MiB")
    assert not any((tmp_path / "onnx").iterdir()) and not any((tmp_path / "landmarks").iterdir())
    assert (tmp_path / "weights" / "GFPGANv1.4.pth").exists()  # downloads stay unless named
    assert run("cache", "clear", "weights").exit_code == 0
    assert not (tmp_path / "weights" / "GFPGANv1.4.pth").exists()


def test_threads_default_to_the_cpus_the_process_may_use_and_reach_every_library(tmp_path):
    import subprocess
    import sys

    script = """
import os
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from facefix.threads import available_cpus, use_threads
print(available_cpus())
import torch, cv2
use_threads(0)
print(torch.get_num_threads(), cv2.getNumThreads())
"""
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert printed.stdout.split() == ["1", "1", "1"]  # one CPU allowed: one thread, not the machine's count

    from facefix import compose
    from facefix.threads import use_threads

    before = use_threads(0)
    try:
        assembly = compose.assemble(compose.ComponentSelection(restorer="compact", blender="soft", threads=1),
                                    quiet=True)
        import torch

        assert torch.get_num_threads() == 1
        session = assembly.get("restorer").session  # compact runs on onnxruntime on a CPU
        assert session.get_session_options().intra_op_num_threads == 1
    finally:
        use_threads(before)
    result = run("restore", shared_path("photos", PHOTO), tmp_path / "out", "--threads", "1", "--quiet")
    assert result.exit_code == 0, result.output


def test_max_face_size_leaves_large_faces_as_they_are(tmp_path):
    photo = shared_path("photos", "insightface_t1.jpg")  # six faces of 91-110 px
    result = run("restore", photo, tmp_path / "some", "--restorer", "compact", "--max-face-size", 100)
    assert result.exit_code == 0, result.output
    assert "1 processed, 0 failed; 3 faces restored" in result.output  # the three of 100 px or less
    result = run("restore", photo, tmp_path / "none", "--restorer", "compact", "--max-face-size", 80, "--quiet")
    assert result.exit_code == 0, result.output
    original = cv2.imread(str(photo)).astype(int)
    untouched = cv2.imread(str(tmp_path / "none" / photo.name)).astype(int)
    assert np.abs(untouched - original).mean() < 1.5  # only re-encoded


def test_an_unreadable_input_reads_the_same_from_ffmpeg_5_and_7(tmp_path):
    from facefix.errors import InputError
    from facefix.video.info import parse_input_header

    path = tmp_path / "notes.mp4"
    for printed in (f"{path}: Invalid data found when processing input",  # Debian's 5.1
                    f"[in#0 @ 0x55d0] Error opening input: Invalid data found when processing input\n"
                    f"Error opening input file {path}.\nError opening input files: Invalid data found when "
                    "processing input"):  # 7.x
        with pytest.raises(InputError) as raised:
            parse_input_header(printed, path)
        assert str(raised.value) == f"{path}: not a video file ffmpeg can read (Invalid data found when processing input)"


def test_the_top_octave_comes_from_the_original_only_as_far_as_it_holds_detail():
    from facefix.pipeline import octave_band, with_clean_top_octave

    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64, 3)).astype(np.float32), (0, 0), 4)
    textured = smooth + rng.normal(0, 16, smooth.shape).astype(np.float32)
    restored = smooth + rng.normal(0, 12, smooth.shape).astype(np.float32)  # the network's own texture
    sharp = with_clean_top_octave(restored, textured)  # a clean original: its own texture, all of it
    np.testing.assert_allclose(sharp, restored - octave_band(restored) + octave_band(textured), atol=1e-3)
    assert np.abs(sharp - textured).mean() < 0.5 * np.abs(restored - textured).mean()
    blurred = with_clean_top_octave(restored, smooth)  # a blurred original: the restoration stays
    assert np.var(octave_band(blurred)) > 0.8 * np.var(octave_band(restored))


def test_every_option_of_every_command_has_help():
    import click

    def commands(command: click.Command, path: str):
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                yield from commands(command.get_command(context, name), f"{path} {name}")
        else:
            yield path, command

    seen = 0
    for path, command in commands(cli, "facefix"):
        for option in command.params:
            if isinstance(option, click.Option) and not option.hidden:
                seen += 1
                assert (option.help or "").strip(), f"{path} {option.opts[0]} has no help text"
    assert seen > 100  # restore, video, eval, export, upscale, every train NAME...
