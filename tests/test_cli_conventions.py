"""What a GFPGAN, CodeFormer or facefusion user types first: their flags, a file as the
output, names in any case, and component names where weights names are expected."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
from click.testing import CliRunner

from conftest import shared_path
from facefix.cli import cli

PHOTO = "facexlib__assets_test2.jpg"


def run(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


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
