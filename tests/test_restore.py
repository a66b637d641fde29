"""`facefix restore` end to end on real photos with real detector weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from facefix.cli import cli
from conftest import file_digest, psnr, read_any, shared_path

GROUP_PHOTO = "insightface_t1.jpg"


def restore(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(cli, ["restore", *map(str, args)], catch_exceptions=False)


def passthrough_args(shared_weights: Path) -> list[str]:
    return ["--restorer", "passthrough", "--model-dir", str(shared_weights), "--detector", "retinaface_mobile0.25"]


def test_finds_the_six_faces_of_the_group_photo(tmp_path, shared_weights):
    photo = shared_path("photos", GROUP_PHOTO)
    result = restore(photo, tmp_path, *passthrough_args(shared_weights), "--save-faces", "--quiet")
    assert result.exit_code == 0, result.output
    assert "1 processed, 0 failed; 6 faces restored" in result.output
    for folder in ("cropped_faces", "restored_faces", "cmp"):
        assert len(list((tmp_path / folder).glob("insightface_t1_*.png"))) == 6
    crop = read_any(tmp_path / "cropped_faces" / "insightface_t1_00.png")
    side_by_side = read_any(tmp_path / "cmp" / "insightface_t1_00.png")
    assert crop.shape == (1024, 1024, 3) and side_by_side.shape == (1024, 2048, 3)


@pytest.fixture(scope="module")
def photos_restored(tmp_path_factory):
    """Every photo through passthrough + soft at upscale 1 and at upscale 2 (one run each)."""
    photos = shared_path("photos")
    weights = shared_path("weights")
    outputs = {}
    for upscale in ("1", "2"):
        out = tmp_path_factory.mktemp(f"upscale{upscale}")
        result = restore(photos, out, *passthrough_args(weights), "--blender", "soft", "--upscale", upscale,
                         "--quiet")
        assert result.exit_code == 0, result.output
        outputs[upscale] = out
    return photos, outputs


def test_passthrough_reproduces_every_photo_at_40_db(photos_restored):
    photos, outputs = photos_restored
    files = sorted(p for p in photos.iterdir() if p.is_file())
    assert len(files) >= 10
    for photo in files:
        original, output = read_any(photo), read_any(outputs["1"] / photo.name)
        assert output.shape == original.shape, photo.name
        assert psnr(original, output) >= 40.0, photo.name


def test_upscale_two_doubles_every_photo_exactly(photos_restored):
    photos, outputs = photos_restored
    for photo in sorted(p for p in photos.iterdir() if p.is_file()):
        original, output = read_any(photo), read_any(outputs["2"] / photo.name)
        assert output.shape[:2] == (2 * original.shape[0], 2 * original.shape[1]), photo.name
        # faces are pasted at the matching scale: the result still looks like the Lanczos enlargement
        enlarged = cv2.resize(original, output.shape[1::-1], interpolation=cv2.INTER_LANCZOS4)
        assert psnr(enlarged, output) > 35, photo.name


def write_jpeg(path: Path, pixels: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])
    path.write_bytes(data.tobytes())


def test_bad_inputs_are_named_the_batch_goes_on_and_inputs_are_untouched(tmp_path, shared_weights):
    source = shared_path("photos")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(source / GROUP_PHOTO, folder / "good.jpg")
    shutil.copy(source / "gfpgan__inputs_cropped_faces_Adele_crop.png", folder / "good2.png")
    gray = cv2.cvtColor(cv2.imread(str(source / "liveportrait__source_s0.jpg")), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / "gray.png"), gray)
    data = (source / GROUP_PHOTO).read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "text.png").write_text("definitely not a png\n" * 20)
    (folder / "empty.jpg").write_bytes(b"")
    before = {p.name: file_digest(p) for p in folder.iterdir()}

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["restore", str(folder), str(out), *passthrough_args(shared_weights), "--quiet"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    for name, reason in (("truncated.jpg", "truncated"), ("text.png", "not an image"), ("empty.jpg", "empty")):
        assert any(name in line and reason in line for line in errors), (name, errors)
    assert "3 processed, 3 failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["good.jpg", "good2.png", "gray.png"]
    gray_out = read_any(out / "gray.png")
    assert gray_out.ndim == 2 and psnr(gray_out, gray) > 40  # processed, still grayscale
    assert {p.name: file_digest(p) for p in folder.iterdir()} == before


def test_same_input_and_options_give_identical_bytes(tmp_path, shared_weights):
    photo = shared_path("photos", GROUP_PHOTO)
    for run in ("a", "b"):
        assert restore(photo, tmp_path / run, *passthrough_args(shared_weights), "--batch-size", "4",
                       "--quiet").exit_code == 0
    assert file_digest(tmp_path / "a" / GROUP_PHOTO) == file_digest(tmp_path / "b" / GROUP_PHOTO)


def test_output_never_overwrites_an_input(tmp_path, shared_weights):
    photo = tmp_path / "face.png"
    shutil.copy(shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png"), photo)
    digest = file_digest(photo)
    result = restore(tmp_path, tmp_path, *passthrough_args(shared_weights), "--quiet")
    assert result.exit_code == 1 and "would overwrite an input" in result.output
    assert file_digest(photo) == digest
    result = restore(tmp_path, tmp_path, *passthrough_args(shared_weights), "--suffix", "_restored", "--quiet")
    assert result.exit_code == 0 and (tmp_path / "face_restored.png").exists()


def test_alpha_and_sixteen_bit_survive_the_pipeline(tmp_path, shared_weights):
    face = cv2.imread(str(shared_path("photos", "gfpgan__inputs_whole_imgs_Blake_Lively.jpg")))
    deep = face.astype(np.uint16) * 257
    alpha = np.full(face.shape[:2], 50000, np.uint16)
    alpha[:20] = 0
    cv2.imwrite(str(tmp_path / "deep.png"), np.dstack([deep, alpha]))
    result = restore(tmp_path / "deep.png", tmp_path / "out", *passthrough_args(shared_weights), "--quiet")
    assert result.exit_code == 0 and "1 processed, 0 failed; 2 faces restored" in result.output
    out = read_any(tmp_path / "out" / "deep.png")
    assert out.dtype == np.uint16 and out.shape == deep.shape[:2] + (4,)
    assert np.array_equal(out[:, :, 3], alpha)
    assert psnr(out[:, :, :3], deep, peak=65535) > 40


def test_exif_rotated_photo_is_processed_upright(tmp_path, shared_weights):
    face = cv2.imread(str(shared_path("photos", "gfpgan__inputs_whole_imgs_Blake_Lively.jpg")))
    sideways = cv2.rotate(face, cv2.ROTATE_90_COUNTERCLOCKWISE)
    exif = PILImage.Exif()
    exif[0x0112] = 6
    PILImage.fromarray(sideways[:, :, ::-1]).save(tmp_path / "rot.jpg", exif=exif, quality=97)
    result = restore(tmp_path / "rot.jpg", tmp_path / "out", *passthrough_args(shared_weights), "--quiet")
    assert "2 faces restored" in result.output  # the detector saw upright faces
    assert read_any(tmp_path / "out" / "rot.jpg").shape == face.shape


def test_face_choice_options(tmp_path, shared_weights):
    photo = shared_path("photos", GROUP_PHOTO)
    for option in ("--only-center-face", "--largest-face"):
        result = restore(photo, tmp_path / option, *passthrough_args(shared_weights), option, "--quiet")
        assert "1 face restored" in result.output, option
    result = restore(photo, tmp_path / "big", *passthrough_args(shared_weights), "--min-face-size", "105", "--quiet")
    restored = int(result.output.split("; ")[1].split()[0])
    assert restored == 3  # boxes of 93-110 px: three are 105 px or more


def test_image_without_faces_is_written_unchanged(tmp_path, shared_weights):
    y, x = np.mgrid[0:200, 0:300]
    plain = np.dstack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "plain.png"), plain)
    result = restore(tmp_path / "plain.png", tmp_path / "out", *passthrough_args(shared_weights))
    assert result.exit_code == 0 and "no face found" in result.output
    assert np.array_equal(read_any(tmp_path / "out" / "plain.png"), plain)


def test_aligned_mode_resizes_to_the_restorer_and_skips_detection(tmp_path):
    face = cv2.imread(str(shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")))
    result = restore(face_path := shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png"),
                     tmp_path, "--aligned", "--restorer", "passthrough", "--quiet")
    assert result.exit_code == 0, result.output
    out = read_any(tmp_path / face_path.name)
    assert out.shape == (1024, 1024, 3)
    assert psnr(cv2.resize(out, (512, 512), interpolation=cv2.INTER_AREA), face) > 35


def test_skip_existing_and_ext(tmp_path, shared_weights):
    photo = shared_path("photos", GROUP_PHOTO)
    first = restore(photo, tmp_path, *passthrough_args(shared_weights), "--ext", "png", "--quiet")
    assert first.exit_code == 0 and (tmp_path / "insightface_t1.png").exists()
    again = restore(photo, tmp_path, *passthrough_args(shared_weights), "--ext", "png", "--skip-existing", "--quiet")
    assert "1 skipped" in again.output and "0 processed" in again.output


def test_missing_weights_is_one_clear_line(tmp_path):
    photo = shared_path("photos", GROUP_PHOTO)
    env = {"FACEFIX_HOME": str(tmp_path / "home"), "FACEFIX_OFFLINE": "1"}
    result = restore(photo, tmp_path / "out", "--detector", "retinaface_resnet50", "--restorer", "passthrough",
                     "--model-dir", str(tmp_path), env=env)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert "detection_Resnet50_Final.pth" in lines[0] and str(tmp_path) in lines[0]


def test_unknown_component_lists_the_choices(tmp_path):
    result = restore(shared_path("photos", GROUP_PHOTO), tmp_path, "--restorer", "nope")
    assert result.exit_code == 1 and "unknown restorer 'nope'" in result.output and "passthrough" in result.output


def test_blenders_and_color_match_through_the_cli(tmp_path, shared_weights):
    photo = shared_path("photos", "gfpgan__inputs_whole_imgs_Blake_Lively.jpg")
    original = read_any(photo)
    for blender in ("soft", "poisson"):
        for extra in ([], ["--color-match"]):
            out = tmp_path / f"{blender}{len(extra)}"
            result = restore(photo, out, *passthrough_args(shared_weights), "--blender", blender, *extra, "--quiet")
            assert result.exit_code == 0, result.output
            assert psnr(read_any(out / photo.name), original) > 35, (blender, extra)


def test_python_dash_m_entry_point_runs():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "facefix", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "facefix" in result.stdout


def test_blend_mixes_each_restored_face_with_its_original(tmp_path, shared_weights):
    face = shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")
    outputs = {}
    for blend in ("1", "0.25", "0"):
        result = CliRunner().invoke(cli, ["restore", str(face), str(tmp_path / blend), "--aligned", "--restorer",
                                          "compact", "--model-dir", str(shared_weights), "--blend", blend, "-q"])
        assert result.exit_code == 0, result.output
        outputs[blend] = read_any(tmp_path / blend / face.name).astype(np.float64)
    size = outputs["1"].shape[0]
    source = read_any(face)[:, :, :3]
    crop = cv2.resize(source, (size, size), interpolation=cv2.INTER_AREA if source.shape[0] > size else cv2.INTER_LINEAR)
    original = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    assert np.array_equal(outputs["0"], original)  # 0: the original face, as the restorer saw it
    expected = np.clip(np.rint(0.25 * outputs["1"] + 0.75 * original), 0, 255)
    # one level at most: the mix takes the colour-matched face before it is rounded to 8 bits
    assert np.abs(outputs["0.25"] - expected).max() <= 1
    assert psnr(outputs["1"], original) < 40  # the restorer did change the face


def test_blend_zero_pastes_the_original_face_back(tmp_path, shared_weights):
    photo = shared_path("photos", "facexlib__assets_test.jpg")
    for blend in ("0", "1"):
        result = CliRunner().invoke(cli, ["restore", str(photo), str(tmp_path / blend), "--restorer", "compact",
                                          "--model-dir", str(shared_weights), "--blend", blend, "--ext", "png", "-q"])
        assert result.exit_code == 0, result.output
    original = read_any(photo)
    unchanged, restored = (read_any(tmp_path / blend / f"{photo.stem}.png") for blend in ("0", "1"))
    assert psnr(unchanged, original) > psnr(restored, original) + 3
