"""The shared degradation model (facefix.training.degradations) and ``facefix degrade``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facefix.training.degradations import (
    BLUR_KINDS,
    PRESETS,
    DegradationConfig,
    DegradationConfigError,
    JpegConfig,
    degrade,
    degrade_for,
    degrade_pair,
    get_preset,
    gaussian_kernel,
    motion_kernel,
    rng_for,
    sample_params,
)
from facefix.cli.degrade import degrade_command

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VAL_FACES = SHARED / "faces" / "val512" / "images"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _face_paths(count: int) -> list[Path]:
    if not VAL_FACES.is_dir():
        pytest.skip(f"../shared material not available: {VAL_FACES}")
    paths = sorted(p for p in VAL_FACES.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:count]
    if len(paths) < count:
        pytest.skip(f"fewer than {count} faces in {VAL_FACES}")
    return paths


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    return [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in _face_paths(10)]


@pytest.fixture
def synthetic() -> np.ndarray:
    """A detailed 128 px image that needs no shared material: smooth shapes plus texture."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:128, 0:128].astype(np.float32)
    base = np.stack([128 + 60 * np.sin(x / 9), 128 + 60 * np.cos(y / 7), 128 + 50 * np.sin((x + y) / 11)], axis=2)
    texture = rng.normal(0, 25, (128, 128, 3))
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def _only(**section: dict) -> DegradationConfig:
    """Every stage off except the ones given."""
    return DegradationConfig.identity().with_overrides(section)


def _high_frequency(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean())


# -- determinism ----------------------------------------------------------------------


def test_same_seed_and_index_give_identical_output(synthetic):
    for config in PRESETS.values():
        first = degrade_for(synthetic, config, seed=3, index=5)
        assert np.array_equal(first, degrade_for(synthetic, config, seed=3, index=5))
        # the generator of (seed, index) alone decides: no hidden global state
        np.random.seed(123)
        cv2.setRNGSeed(99)
        assert np.array_equal(first, degrade(synthetic, config, rng_for(3, 5)))


def test_other_index_or_seed_give_other_output(synthetic):
    config = PRESETS["mmrb"]  # every stage always on: outputs always differ
    base = degrade_for(synthetic, config, seed=0, index=0)
    assert not np.array_equal(base, degrade_for(synthetic, config, seed=0, index=1))
    assert not np.array_equal(base, degrade_for(synthetic, config, seed=1, index=0))
    params = [sample_params(config, rng_for(0, i), 128, 128).to_dict() for i in range(5)]
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 5


def test_turning_one_stage_off_keeps_the_others_draws():
    config = PRESETS["gfpgan"]
    with_jpeg = sample_params(config, rng_for(0, 4), 512, 512)
    without = sample_params(config.with_overrides({"jpeg": {"probability": 0}}), rng_for(0, 4), 512, 512)
    assert without.jpeg_quality is None and with_jpeg.jpeg_quality is not None
    assert without.blur == with_jpeg.blur and without.lq_size == with_jpeg.lq_size
    assert without.noise_sigma == with_jpeg.noise_sigma


def test_rng_for_rejects_negative_seeds():
    with pytest.raises(ValueError):
        rng_for(-1, 0)


# -- presets on real faces -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_keeps_shape_and_dtype(name, synthetic):
    config = get_preset(name)
    for index in range(4):
        lq = degrade_for(synthetic, config, 0, index)
        assert lq.shape == synthetic.shape and lq.dtype == np.uint8
    as_float = synthetic.astype(np.float32) / 255
    lq = degrade_for(as_float, config, 0, 0)
    assert lq.shape == as_float.shape and lq.dtype == np.float32
    assert 0.0 <= lq.min() and lq.max() <= 1.0
    # float and uint8 inputs get the same degradation (up to 8-bit rounding)
    assert np.abs(lq * 255 - degrade_for(synthetic, config, 0, 0).astype(np.float32)).mean() < 2.0


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"none"}))
def test_preset_psnr_on_real_faces(name, faces):
    config = PRESETS[name]
    values = [_psnr(face, degrade_for(face, config, 0, index)) for index, face in enumerate(faces)]
    mean = float(np.mean(values))
    print(f"{name}: mean PSNR {mean:.2f} dB over {len(values)} faces (min {min(values):.2f}, max {max(values):.2f})")
    assert all(np.isfinite(values))
    assert mean < 35.0, "the recipe hardly degrades"
    assert mean > 15.0, "the recipe destroys the faces"
    if name == "gfpgan":
        # GFP-GAN reports 25.35 dB for its synthetic CelebA-Test inputs; on 10 faces
        # this recipe gives about 24 dB.
        assert 20.0 < mean < 30.0


def test_the_none_preset_changes_nothing(faces):
    for index, face in enumerate(faces[:3]):
        assert np.array_equal(degrade_for(face, PRESETS["none"], 0, index), face)


def test_unknown_preset_is_named():
    with pytest.raises(DegradationConfigError, match="unknown degradation preset 'nope'"):
        get_preset("nope")


def test_preset_numbers():
    gfpgan, psfrgan, mmrb = PRESETS["gfpgan"], PRESETS["psfrgan"], PRESETS["mmrb"]
    assert gfpgan.blur.kernel_size == (41, 41) and gfpgan.blur.sigma == (0.1, 10.0)
    assert gfpgan.blur.kinds == {"iso": 0.5, "aniso": 0.5}
    assert gfpgan.scale.factor == (0.8, 8.0) and gfpgan.noise.sigma == (0.0, 20.0)
    assert gfpgan.jpeg.quality == (60, 100)
    assert (gfpgan.color_jitter.probability, gfpgan.color_jitter.shift) == (0.3, 20.0)
    assert gfpgan.gray.probability == 0.01
    assert psfrgan.blur.probability == 0.5 and set(psfrgan.blur.kinds) == {"iso", "average", "median", "motion"}
    assert psfrgan.scale.size == (32, 255) and psfrgan.scale.factor is None
    assert (psfrgan.noise.probability, psfrgan.noise.sigma) == (0.2, (0.0, 25.5))
    assert psfrgan.jpeg.probability == 0.7 and psfrgan.gray.probability == 0.3
    assert mmrb.scale.factor == (0.4, 8.0) and mmrb.noise.sigma == (0.0, 25.0) and mmrb.jpeg.quality == (5, 50)
    assert set(mmrb.blur.kinds) == {"iso", "aniso", "motion"}


def test_psfrgan_resizes_to_32_to_255_pixels():
    sizes = {sample_params(PRESETS["psfrgan"], rng_for(0, i), 512, 512).lq_size for i in range(200)}
    sides = {width for width, height in sizes}
    assert all(width == height for width, height in sizes)
    assert min(sides) >= 32 and max(sides) <= 255 and len(sides) > 50


# -- single stages ----------------------------------------------------------------------


def test_identity_config_returns_the_input(synthetic):
    assert np.array_equal(degrade_for(synthetic, DegradationConfig.identity(), 0, 0), synthetic)


@pytest.mark.parametrize("kind", BLUR_KINDS)
def test_each_blur_kind_blurs(kind, synthetic):
    config = _only(blur={
        "probability": 1.0, "kinds": {kind: 1.0}, "sigma": [3.0, 4.0], "kernel_size": [21, 21],
        "box_size": [7, 7], "motion_length": [11, 15],
    })
    params = sample_params(config, rng_for(0, 0), *synthetic.shape[:2])
    assert params.blur["kind"] == kind and params.lq_size is None and params.jpeg_quality is None
    lq = degrade_for(synthetic, config, 0, 0)
    assert lq.shape == synthetic.shape and lq.dtype == synthetic.dtype
    assert _high_frequency(lq) < 0.5 * _high_frequency(synthetic)
    # the mean colour is kept (kernels sum to 1; median keeps it near enough)
    assert abs(float(lq.mean()) - float(synthetic.mean())) < 3.0


def test_kernels_sum_to_one():
    for kernel in (gaussian_kernel(41, 3.0, 1.0, 30.0), gaussian_kernel(41, 0.1, 0.1), motion_kernel(25, 37.0),
                   motion_kernel(6, 90.0)):
        assert kernel.shape[0] % 2 == 1 and kernel.shape[0] == kernel.shape[1]
        assert abs(float(kernel.sum()) - 1.0) < 1e-5 and kernel.min() >= 0


def test_jpeg_quality_10_makes_8x8_blocks(faces):
    face = faces[0]
    lq = degrade_for(face, _only(jpeg={"probability": 1.0, "quality": [10, 10]}), 0, 0)
    assert not np.array_equal(lq, face)
    gray = cv2.cvtColor(lq, cv2.COLOR_BGR2GRAY).astype(np.float32)
    steps = np.abs(np.diff(gray, axis=1)).mean(axis=0)  # steps[i]: between columns i and i+1
    at_block_edges = steps[7::8].mean()
    inside = np.delete(steps, np.arange(7, steps.size, 8)).mean()
    assert at_block_edges > 1.5 * inside


def test_noise_alone_has_the_asked_std():
    flat = np.full((256, 256, 3), 128, np.uint8)
    lq = degrade_for(flat, _only(noise={"probability": 1.0, "sigma": [10.0, 10.0]}), 0, 0)
    residual = lq.astype(np.float32) - 128
    assert abs(float(residual.std()) - 10.0) < 0.5 and abs(float(residual.mean())) < 0.5
    # per channel by default: the channels differ
    assert not np.array_equal(lq[:, :, 0], lq[:, :, 1])
    gray_noise = degrade_for(flat, _only(noise={"probability": 1.0, "sigma": [10.0, 10.0], "gray_probability": 1.0}), 0, 0)
    assert np.array_equal(gray_noise[:, :, 0], gray_noise[:, :, 2])
    flat_float = np.full((256, 256, 3), 0.5, np.float32)
    as_float = degrade_for(flat_float, _only(noise={"probability": 1.0, "sigma": [10.0, 10.0]}), 0, 0)
    assert abs(float(as_float.std()) * 255 - 10.0) < 0.5


def test_gray_gives_equal_channels_and_gray_target(synthetic):
    config = _only(gray={"probability": 1.0})
    lq = degrade_for(synthetic, config, 0, 0)
    assert np.array_equal(lq[:, :, 0], lq[:, :, 1]) and np.array_equal(lq[:, :, 1], lq[:, :, 2])
    target, lq2 = degrade_pair(synthetic, config, rng_for(0, 0))
    assert np.array_equal(lq, lq2) and np.array_equal(target[:, :, 0], target[:, :, 2])
    target, _ = degrade_pair(synthetic, config.with_overrides({"gray": {"also_target": False}}), rng_for(0, 0))
    assert target is synthetic


def test_color_jitter_shifts_channels(synthetic):
    synthetic = np.clip(synthetic, 30, 225)  # away from 0 and 255, where shifts clip
    config = _only(color_jitter={"probability": 1.0, "shift": 20.0})
    params = sample_params(config, rng_for(0, 2), *synthetic.shape[:2])
    lq = degrade_for(synthetic, config, 0, 2)
    shift = lq.astype(np.float32).mean(axis=(0, 1)) - synthetic.astype(np.float32).mean(axis=(0, 1))
    assert np.allclose(shift, params.color_shift, atol=2.0) and np.abs(shift).max() <= 21


def test_downsample_alone_loses_detail_but_keeps_size(synthetic):
    lq = degrade_for(synthetic, _only(scale={"probability": 1.0, "factor": [4.0, 4.0]}), 0, 0)
    assert lq.shape == synthetic.shape
    assert _high_frequency(lq) < 0.5 * _high_frequency(synthetic)


def test_bad_inputs_are_refused(synthetic):
    with pytest.raises(ValueError, match="H x W x 3"):
        degrade_for(synthetic[:, :, 0], PRESETS["gfpgan"], 0, 0)
    with pytest.raises(ValueError, match="uint8"):
        degrade_for(synthetic.astype(np.int32), PRESETS["gfpgan"], 0, 0)


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trip(name):
    config = PRESETS[name]
    as_json = json.dumps(config.to_dict())
    assert DegradationConfig.from_dict(json.loads(as_json)) == config
    assert DegradationConfig.from_dict(config.to_dict(), base=DegradationConfig.identity()) == config


def test_override_of_one_range_from_json():
    base = PRESETS["gfpgan"]
    config = DegradationConfig.from_dict(json.loads('{"jpeg": {"quality": [30, 40]}}'), base=base)
    assert config.jpeg == JpegConfig(probability=1.0, quality=(30, 40))
    assert config.blur == base.blur and config.noise == base.noise and config.scale == base.scale
    assert base.jpeg.quality == (60, 100)  # presets are not changed
    qualities = {sample_params(config, rng_for(0, i), 64, 64).jpeg_quality for i in range(50)}
    assert qualities <= set(range(30, 41)) and len(qualities) > 3
    # scale: naming size drops factor
    resized = base.with_overrides({"scale": {"size": [64, 64]}})
    assert resized.scale.factor is None and resized.scale.size == (64, 64)
    assert sample_params(resized, rng_for(0, 0), 512, 256).lq_size == (32, 64)  # (width, height)


@pytest.mark.parametrize("overrides, message", [
    ({"jpg": {}}, "unknown section"),
    ({"jpeg": {"qualty": [1, 2]}}, "unknown key 'qualty'"),
    ({"jpeg": {"quality": [70, 60]}}, "jpeg.quality"),
    ({"jpeg": {"quality": [0, 101]}}, "jpeg.quality"),
    ({"noise": {"probability": 1.5}}, "noise.probability"),
    ({"blur": {"kinds": {"box": 1}}}, "unknown blur kind 'box'"),
    ({"blur": {"box_size": [4, 4]}}, "no odd number"),
    ({"scale": {"factor": [2, 4], "size": [32, 64]}}, "exactly one of factor"),
    ({"scale": {"down_interpolation": ["spline"]}}, "unknown interpolation"),
])
def test_bad_config_names_the_key(overrides, message):
    with pytest.raises(DegradationConfigError, match=message):
        PRESETS["gfpgan"].with_overrides(overrides)


def test_configs_are_frozen():
    with pytest.raises(AttributeError):
        PRESETS["gfpgan"].jpeg.quality = (1, 2)  # type: ignore[misc]


# -- facefix degrade --------------------------------------------------------------------


@pytest.fixture
def face_folder(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in _face_paths(3):
        shutil.copy(path, folder / path.name)  # copied into tmp_path only, never into the repository
    (folder / "broken.jpg").write_text("this is not an image\n")
    return folder


def _run(*args: str):
    return CliRunner().invoke(degrade_command, [*args])


def test_cli_degrades_a_folder_reproducibly(face_folder, tmp_path):
    out = tmp_path / "out"
    result = _run(str(face_folder), str(out), "--preset", "psfrgan", "--seed", "5", "--size", "256", "--quiet")
    assert result.exit_code == 1, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "broken.jpg" in error_lines[0]
    assert result.stderr.strip().splitlines()[-1] == "3 degraded, 1 failed"
    written = sorted(path.name for path in out.glob("*.png"))
    assert written == sorted(path.with_suffix(".png").name for path in face_folder.glob("*.jpg")
                             if path.name != "broken.jpg")
    for name in written:
        assert cv2.imread(str(out / name)).shape == (256, 256, 3)

    record = json.loads((out / "degradation.json").read_text())
    assert record["preset"] == "psfrgan" and record["seed"] == 5 and record["size"] == 256
    assert DegradationConfig.from_dict(record["config"]) == PRESETS["psfrgan"]
    assert [entry["index"] for entry in record["files"]] == [0, 1, 2, 3]
    assert sum("error" in entry for entry in record["files"]) == 1

    # the same folder and seed again: byte-identical files (elsewhere, and in place)
    again = tmp_path / "again"
    assert _run(str(face_folder), str(again), "--preset", "psfrgan", "--seed", "5", "--size", "256", "-q").exit_code == 1
    assert _run(str(face_folder), str(out), "--preset", "psfrgan", "--seed", "5", "--size", "256", "-q").exit_code == 1
    for name in [*written, "degradation.json"]:
        assert (again / name).read_bytes() == (out / name).read_bytes()
    # the i-th file is degrade_for(hq, config, seed, i)
    first = sorted(face_folder.glob("*.jpg"))[0]
    assert first.name != "broken.jpg"
    hq = cv2.resize(cv2.imread(str(first)), (256, 256), interpolation=cv2.INTER_AREA)
    expected = degrade_for(hq, PRESETS["psfrgan"], 5, 0)
    assert np.array_equal(cv2.imread(str(out / first.with_suffix(".png").name)), expected)

    # another seed: other outputs
    other = tmp_path / "other"
    _run(str(face_folder), str(other), "--preset", "psfrgan", "--seed", "6", "--size", "256", "-q")
    assert any((other / name).read_bytes() != (out / name).read_bytes() for name in written)


def test_cli_config_file_and_hq_copies(face_folder, tmp_path):
    overrides = tmp_path / "recipe.json"
    overrides.write_text(json.dumps({"degradation": {"gray": {"probability": 1.0}, "jpeg": {"quality": [20, 20]}}}))
    out, hq = tmp_path / "out", tmp_path / "hq"
    face = sorted(path for path in face_folder.glob("*.jpg") if path.name != "broken.jpg")[0]
    result = _run(str(face), str(out),
                  "--config", str(overrides), "--size", "64", "--save-hq", str(hq), "--ext", "bmp")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1] == "1 degraded, 0 failed"
    (lq_path,) = out.glob("*.bmp")
    lq, target = cv2.imread(str(lq_path)), cv2.imread(str(hq / lq_path.name))
    assert lq.shape == target.shape == (64, 64, 3)
    assert np.array_equal(lq[:, :, 0], lq[:, :, 2]) and np.array_equal(target[:, :, 0], target[:, :, 2])
    record = json.loads((out / "degradation.json").read_text())
    assert record["config"]["jpeg"]["quality"] == [20, 20] and record["files"][0]["params"]["jpeg_quality"] == 20

    # the written record reproduces the run
    again = tmp_path / "again"
    _run(str(face_folder), str(again), "--config", str(out / "degradation.json"), "-q")
    assert json.loads((again / "degradation.json").read_text())["config"] == record["config"]


def test_cli_never_overwrites_inputs(tmp_path, synthetic):
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), synthetic)
    before = (folder / "a.png").read_bytes()
    result = _run(str(folder), str(folder), "-q")
    assert result.exit_code == 1
    assert "would overwrite an input" in result.stderr and "0 degraded, 1 failed" in result.stderr
    assert (folder / "a.png").read_bytes() == before


def test_cli_bad_config_is_one_line(tmp_path, synthetic):
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), synthetic)
    bad = tmp_path / "bad.json"
    bad.write_text('{"jpeg": {"quality": [90, 10]}}')
    result = _run(str(folder), str(tmp_path / "out"), "--config", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "jpeg.quality" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run(str(empty), str(tmp_path / "out2"))
    assert result.exit_code == 1 and "no images found" in result.stderr
