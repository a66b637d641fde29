"""Background upsamplers: Real-ESRGAN's networks against the reference implementation, the
tiling, the real released animevideov3 file, ``facefix upscale`` and ``--bg-upsampler``.

Golden files (``tests/fixtures/realesrgan``, made by ``make_golden.py`` from realesrgan
0.3.0 / basicsr 1.4.2 on seeded random weights) hold the reference's state dicts, inputs
and outputs; ``keys.json`` the key names and shapes of the four released files.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import psnr, read_any
from facefix import compose, plugins
from facefix.cli import cli
from facefix.errors import WeightsError
from facefix.networks import load_network
from facefix.upsamplers import run_tiled, tile_spans, upscale_pixels
from facefix.weights import WeightsResolver

FIXTURES = Path(__file__).parent / "fixtures" / "realesrgan"
GOLDEN = ("rrdb_x4", "rrdb_x2", "rrdb_x1", "srvgg_x4", "srvgg_x2_relu")
RELEASED_CARDS = {"RealESRGAN_x4plus.pth": "realesrgan", "RealESRGAN_x2plus.pth": "realesrgan",
                  "realesr-general-x4v3.pth": "realesr-compact", "realesr-animevideov3.pth": "realesr-compact"}


def card(name: str):
    return next(card for card in plugins.cards("upsampler") if card.name == name)


def card_for(golden: str):
    return card("realesrgan" if golden.startswith("rrdb") else "realesr-compact")


@pytest.mark.parametrize("name", GOLDEN)
def test_outputs_match_the_reference_implementation(name):
    data = torch.load(FIXTURES / f"{name}.pth", weights_only=True)
    network = load_network(card_for(name), FIXTURES / f"{name}.pth")
    assert network.config == data["config"]
    with torch.no_grad():
        output = network.module(data["input"].clone())
    assert output.shape == data["output"].shape
    torch.testing.assert_close(output, data["output"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [name for name in GOLDEN if "relu" not in name])
def test_the_configuration_is_read_off_a_bare_state_dict(name, tmp_path):
    data = torch.load(FIXTURES / f"{name}.pth", weights_only=True)
    torch.save({"params": data["params"]}, tmp_path / "bare.pth")  # as the released files are: no config
    assert load_network(card_for(name), tmp_path / "bare.pth").config == data["config"]


def test_a_bare_relu_file_is_refused_in_one_line(tmp_path):
    data = torch.load(FIXTURES / "srvgg_x2_relu.pth", weights_only=True)
    torch.save({"params": data["params"]}, tmp_path / "relu.pth")
    with pytest.raises(WeightsError, match="relu.pth: .*must store its 'config'") as caught:
        load_network(card("realesr-compact"), tmp_path / "relu.pth")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("filename", sorted(RELEASED_CARDS))
def test_the_released_architectures_have_the_reference_keys_and_shapes(filename):
    expected = json.loads((FIXTURES / "keys.json").read_text())[filename]
    state = {key: torch.empty(shape, device="meta") for key, shape in expected}
    upsampler = card(RELEASED_CARDS[filename])
    assert upsampler.recognise(state)
    config = upsampler.infer_config(state)
    with torch.device("meta"):
        module = upsampler.architecture(config)
    assert [[key, list(value.shape)] for key, value in module.state_dict().items()] == expected


def test_the_released_files_are_registered_under_their_official_names():
    from facefix.weights import get_entry

    for filename in RELEASED_CARDS:
        entry = get_entry(Path(filename).stem.replace("RealESRGAN_", "realesrgan-"))
        assert entry.filename == filename
        assert entry.urls[0].startswith("https://github.com/xinntao/Real-ESRGAN/releases/download/")
        assert entry.urls[0].endswith("/" + filename) and "BSD-3" in entry.license
    assert get_entry("realesr-animevideov3").pinned  # the one released file we have, and its digest


def test_tile_spans_cover_the_axis_once_with_context():
    spans = tile_spans(1000, 400, 18)
    assert [(start, end) for start, end, _, _ in spans] == [(0, 400), (400, 800), (800, 1000)]
    assert [(low, high) for _, _, low, high in spans] == [(0, 418), (382, 818), (782, 1000)]
    assert tile_spans(300, 400, 18) == [(0, 300, 0, 300)] and tile_spans(300, 0, 18) == [(0, 300, 0, 300)]


def test_tiles_with_the_receptive_radius_as_overlap_equal_the_whole_image():
    torch.manual_seed(0)
    layers = torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, 1, 1) for _ in range(5)], torch.nn.PixelShuffle(1))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.nn.functional.interpolate(layers(torch.from_numpy(batch)), scale_factor=2).numpy()

    batch = np.random.default_rng(0).random((1, 3, 50, 37), dtype=np.float32)
    whole = run(batch)
    assert np.abs(run_tiled(run, batch, 2, 16, 5) - whole).max() < 1e-5  # 5 convs: radius 5
    assert np.abs(run_tiled(run, batch, 2, 16, 1) - whole).max() > 1e-3  # too little context shows
    padded = run_tiled(run, batch, 2, 16, 6, multiple=4)  # odd sizes padded to 4 and cut back
    assert padded.shape == whole.shape


def test_layouts_and_depths_keep_their_form():
    def nearest(batch: np.ndarray, convert) -> np.ndarray:
        return run_tiled(lambda part: part.repeat(2, axis=2).repeat(2, axis=3), batch, 2, 3, 1, convert=convert)

    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (5, 7, 3), np.uint8)
    assert np.array_equal(upscale_pixels(colour, nearest, 2), colour.repeat(2, 0).repeat(2, 1))
    gray = rng.integers(0, 256, (5, 7), np.uint8)
    assert np.abs(upscale_pixels(gray, nearest, 2).astype(int) - gray.repeat(2, 0).repeat(2, 1)).max() <= 1
    deep = rng.integers(0, 65536, (5, 7, 3), np.uint16)
    assert np.array_equal(upscale_pixels(deep, nearest, 2), deep.repeat(2, 0).repeat(2, 1))
    with_alpha = np.dstack([colour, np.full((5, 7), 200, np.uint8)])
    enlarged = upscale_pixels(with_alpha, nearest, 2)
    assert enlarged.shape == (10, 14, 4) and np.all(enlarged[:, :, 3] == 200)


def test_the_released_animevideov3_file_loads_strict_and_upscales_a_real_photo(shared_weights, photos):
    path = shared_weights / "realesr-animevideov3.pth"
    network = load_network(card("realesr-compact"), path)  # strict: every key used, none missing
    assert network.config == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": 4,
                              "act_type": "prelu"}
    upsampler = compose.build(plugins.get_component("upsampler", "realesr-animevideov3"), device="cpu",
                              resolver=WeightsResolver(model_dir=shared_weights, allow_download=False))
    photo = cv2.imread(str(photos / "gfpgan__inputs_whole_imgs_Blake_Lively.jpg"))[100:228, 200:360]
    enlarged = upsampler.upscale(photo)
    assert enlarged.shape == (512, 640, 3)
    # shrunk back, the 4x image is the photo again, and sharper than Lanczos at 4x
    back = cv2.resize(enlarged, (160, 128), interpolation=cv2.INTER_AREA)
    assert psnr(back, photo) > 27  # 29.4 dB: the anime model flattens JPEG noise
    lanczos = cv2.resize(photo, (640, 512), interpolation=cv2.INTER_LANCZOS4)
    sharpness = [cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
                 for image in (enlarged, lanczos)]
    assert sharpness[0] > 1.2 * sharpness[1]


def test_upscale_command_tiled_equals_untiled_and_the_export_runs(shared_weights, photos, tmp_path):
    photo = photos / "facexlib__assets_test2.jpg"
    runner = CliRunner()
    outputs = {}
    for tile, backend in ((0, "torch"), (96, "torch"), (96, "onnx")):
        out = tmp_path / f"out-{tile}-{backend}"
        result = runner.invoke(cli, ["upscale", str(photo), str(out), "--upsampler", "realesr-animevideov3",
                                     "--model-dir", str(shared_weights), "--tile", str(tile), "--backend", backend,
                                     "--ext", "png", "--quiet"])
        assert result.exit_code == 0, result.output
        outputs[tile, backend] = read_any(out / "facexlib__assets_test2.png").astype(int)
    height, width = cv2.imread(str(photo)).shape[:2]
    assert outputs[0, "torch"].shape == (height * 4, width * 4, 3)
    assert np.abs(outputs[96, "torch"] - outputs[0, "torch"]).max() <= 1
    assert np.abs(outputs[96, "onnx"] - outputs[0, "torch"]).max() <= 1

    halved = runner.invoke(cli, ["upscale", str(photo), str(tmp_path / "x2"), "--upsampler", "realesr-animevideov3",
                                 "--model-dir", str(shared_weights), "--scale", "2", "--quiet"])
    assert halved.exit_code == 0 and read_any(tmp_path / "x2" / photo.name).shape == (height * 2, width * 2, 3)

    exported = runner.invoke(cli, ["export", "realesr-compact", "--variant", "animevideov3", "--model-dir",
                                   str(shared_weights), "-o", str(tmp_path / "anime.onnx")])
    assert exported.exit_code == 0 and "any height and width" in exported.output, exported.output
    difference = float(exported.output.split("max |onnxruntime - torch| = ")[1].split()[0])
    assert difference < 1 / 255


def test_upscale_defaults_to_a_photo_model_even_with_only_the_anime_one_on_disk(shared_weights, photos, tmp_path):
    """The anime model enlarged photos because its file was on disk; it runs only when named."""
    photo = photos / "facexlib__assets_test2.jpg"
    result = CliRunner(env={"FACEFIX_OFFLINE": "1", "FACEFIX_HOME": str(tmp_path / "home")}).invoke(
        cli, ["upscale", str(photo), str(tmp_path / "out"), "--model-dir", str(shared_weights)])
    assert result.exit_code == 1 and "RealESRGAN_x4plus.pth" in result.output, result.output
    assert "animevideov3" not in result.output


def test_upscale_goes_on_past_a_bad_file_and_exits_non_zero(shared_weights, photos, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    small = cv2.imread(str(photos / "facexlib__assets_test2.jpg"))[:64, :64]
    cv2.imwrite(str(inputs / "small.png"), small)
    result = CliRunner().invoke(cli, ["upscale", str(inputs), str(tmp_path / "out"), "--upsampler",
                                      "realesr-animevideov3", "--model-dir", str(shared_weights), "--quiet"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert "1 upscaled, 1 failed" in result.output
    assert read_any(tmp_path / "out" / "small.png").shape == (256, 256, 3)


def test_restore_with_a_background_upsampler(shared_weights, photos, tmp_path):
    photo = photos / "gfpgan__inputs_whole_imgs_Blake_Lively.jpg"
    common = ["restore", str(photo), "--restorer", "passthrough", "--model-dir", str(shared_weights),
              "--upscale", "2", "--ext", "png", "--quiet"]
    runner = CliRunner()
    plain = runner.invoke(cli, [*common[:2], str(tmp_path / "plain"), *common[2:]])
    upsampled = runner.invoke(cli, [*common[:2], str(tmp_path / "bg"), *common[2:],
                                    "--bg-upsampler", "realesr-animevideov3", "--bg-tile", "200"])
    assert plain.exit_code == 0 and upsampled.exit_code == 0, upsampled.output
    name = "gfpgan__inputs_whole_imgs_Blake_Lively.png"
    lanczos, network = read_any(tmp_path / "plain" / name), read_any(tmp_path / "bg" / name)
    height, width = cv2.imread(str(photo)).shape[:2]
    assert network.shape == lanczos.shape == (height * 2, width * 2, 3)
    # the upsampler's background at 2x: its own 4x output shrunk by area, not Lanczos
    upsampler = compose.build(plugins.get_component("upsampler", "realesr-animevideov3"), device="cpu",
                              resolver=WeightsResolver(model_dir=shared_weights, allow_download=False))
    expected = cv2.resize(upsampler.upscale(cv2.imread(str(photo))), (width * 2, height * 2),
                          interpolation=cv2.INTER_AREA)
    corner = (slice(0, 120), slice(0, 160))  # background, away from the faces
    assert np.abs(network[corner].astype(int) - expected[corner].astype(int)).max() <= 1
    assert np.abs(lanczos[corner].astype(int) - expected[corner].astype(int)).max() > 8


def test_plugins_lists_the_upsamplers_with_licence_and_weights_status(shared_weights):
    result = CliRunner().invoke(cli, ["plugins", "--json", "--model-dir", str(shared_weights)])
    listing = json.loads(result.output)
    upsamplers = {item["name"]: item for item in listing["components"]["upsampler"]}
    assert set(upsamplers) >= {"realesrgan-x4plus", "realesrgan-x2plus", "realesr-general-x4v3",
                               "realesr-animevideov3"}
    assert upsamplers["realesr-animevideov3"]["weights_status"] == "available"
    assert upsamplers["realesrgan-x4plus"]["weights_status"] == "downloadable"
    assert all("BSD-3" in item["licenses"][0] for item in upsamplers.values())
