"""The gfpgan restorer plugin: official files, --weights of any supported layout,
fidelity, ONNX export and backend, whole-image restoration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix.cli import cli
from facefix.errors import WeightsError
from facefix.weights import get_entry
from facefix.networks import load_network
from facefix_plugins.gfpgan import CARD
from facefix_plugins.gfpgan.network import detect_architecture
from facefix_plugins.gfpgan.arch import official_gfpgan
from conftest import PROJECT, psnr, read_any, shared_path

FIXTURES = PROJECT / "tests" / "fixtures" / "gfpgan"
ADELE = "gfpgan__inputs_cropped_faces_Adele_crop.png"


def load_gfpgan(path):
    network = load_network(CARD, path)
    return network.module, network.config


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """Full-size networks (random weights) saved exactly as the released files are:
    ``{"params_ema": state_dict}`` at 512 px, v1 (original ops) and v1.4 (clean)."""
    folder = tmp_path_factory.mktemp("official")
    files = {}
    for arch, name in (("original", "GFPGANv1.pth"), ("clean", "GFPGANv1.4.pth")):
        torch.manual_seed(0)
        network = official_gfpgan(arch)
        torch.save({"params_ema": network.state_dict()}, folder / name)
        files[arch] = folder / name
        del network
    return files


@pytest.mark.parametrize("arch", ["original", "clean"])
def test_aligned_restore_runs_with_official_layout_files(arch, official_files, tmp_path):
    face = shared_path("photos", ADELE)
    result = invoke("restore", face, tmp_path, "--aligned", "--restorer", "gfpgan", "--weights",
                    official_files[arch], "--quiet")
    assert result.exit_code == 0, result.output
    out = read_any(tmp_path / ADELE)
    assert out.shape == (512, 512, 3)
    assert not np.array_equal(out, read_any(face))  # the network really ran
    network, config = load_gfpgan(official_files[arch])
    assert config["arch"] == arch and config["out_size"] == 512
    assert config["channel_multiplier"] == (1 if arch == "original" else 2)


def test_weights_alone_run_gfpgan_for_an_official_v14_file(official_files, tmp_path):
    """No --restorer: the card that recognises the file runs it, as --restorer gfpgan would."""
    face = shared_path("photos", ADELE)
    detected = invoke("restore", face, tmp_path / "detected", "--aligned", "--weights", official_files["clean"],
                      "--backend", "torch")
    named = invoke("restore", face, tmp_path / "named", "--aligned", "--restorer", "gfpgan", "--weights",
                   official_files["clean"], "--backend", "torch")
    assert detected.exit_code == 0 and named.exit_code == 0, detected.output + named.output
    assert "restorer gfpgan [detected from GFPGANv1.4.pth] (torch fp32)" in detected.output
    assert (tmp_path / "detected" / ADELE).read_bytes() == (tmp_path / "named" / ADELE).read_bytes()


@pytest.mark.parametrize("case", ["original_main", "clean_main"])
def test_config_inferred_from_keys_reproduces_the_golden_output(case, tmp_path):
    """Official files carry no config: strip it from the golden file and let the plugin
    read the architecture from keys and shapes; the output must still be the reference's."""
    golden = torch.load(FIXTURES / f"{case}.pth", weights_only=True)
    bare = tmp_path / "bare.pth"
    torch.save({"params_ema": golden["params_ema"]}, bare)
    network, config = load_gfpgan(bare)
    assert config["arch"] == golden["config"]["arch"]
    with torch.inference_mode():
        output = network(golden["input"], return_rgb=False)[0]
    assert (output - golden["output"]).abs().max().item() < 1e-4


def test_architecture_detection_and_wrong_files(tmp_path):
    assert detect_architecture(torch.load(FIXTURES / "original_alt.pth", weights_only=True)["params_ema"]) == "original"
    assert detect_architecture(torch.load(FIXTURES / "clean_alt.pth", weights_only=True)["params_ema"]) == "clean"
    # a file of another network
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a GFP-GAN checkpoint"):
        load_gfpgan(tmp_path / "other.pth")
    # the right network with a key missing and one extra: both named
    state = dict(torch.load(FIXTURES / "clean_main.pth", weights_only=True)["params_ema"])
    state.pop("final_linear.weight")
    state["surprise.weight"] = torch.zeros(1)
    torch.save({"params": state}, tmp_path / "broken.pth")
    with pytest.raises(WeightsError) as caught:
        load_gfpgan(tmp_path / "broken.pth")
    message = str(caught.value)
    assert "final_linear.weight" in message and "surprise.weight" in message and "\n" not in message
    face = shared_path("photos", ADELE)
    result = CliRunner().invoke(cli, ["restore", str(face), str(tmp_path / "out"), "--aligned", "--restorer", "gfpgan",
                                      "--weights", str(tmp_path / "broken.pth")])
    assert result.exit_code == 1 and result.output.startswith("Error:") and "missing keys" in result.output


def test_fidelity_really_changes_the_output_monotonically(tmp_path):
    face = shared_path("photos", ADELE)
    weights = FIXTURES / "clean_main.pth"
    outputs = {}
    for fidelity in ("0", "0.5", "1"):
        out = tmp_path / fidelity
        assert invoke("restore", face, out, "--aligned", "--restorer", "gfpgan", "--weights", weights,
                      "--fidelity", fidelity, "--quiet").exit_code == 0
        outputs[fidelity] = read_any(out / ADELE).astype(np.float64)
    distance = {f: np.abs(outputs[f] - outputs["1"]).mean() for f in outputs}
    assert distance["0"] > distance["0.5"] > distance["1"] == 0
    network, _ = load_gfpgan(weights)  # fidelity 1 is the reference network
    golden = torch.load(weights, weights_only=True)
    with torch.inference_mode():
        assert (network(golden["input"], return_rgb=False)[0] - golden["output"]).abs().max() < 1e-4


def test_export_then_onnx_backend_within_one_level(tmp_path):
    weights = FIXTURES / "clean_main.pth"
    face = shared_path("photos", ADELE)
    exported = invoke("export", "gfpgan", "--weights", weights, "-o", tmp_path / "m.onnx", "--sample", face)
    assert exported.exit_code == 0, exported.output
    assert "ONNX checker passed" in exported.output
    difference = float(exported.output.split("max |onnxruntime - torch| = ", 1)[1].split()[0])
    assert difference < 1e-4
    assert "weight (1,), the fidelity in [0, 1] (checked at 1)" in exported.output
    for backend in ("torch", "onnx"):
        extra = ["--backend", "onnx", "--onnx", tmp_path / "m.onnx"] if backend == "onnx" else ["--backend", "torch"]
        result = invoke("restore", face, tmp_path / backend, "--aligned", "--restorer", "gfpgan", "--weights", weights,
                        "--quiet", *extra)
        assert result.exit_code == 0, result.output
    a, b = read_any(tmp_path / "torch" / ADELE), read_any(tmp_path / "onnx" / ADELE)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_whole_image_path_on_real_photos(tmp_path, shared_weights):
    weights = FIXTURES / "clean_main.pth"  # a 64 px GFP-GAN: the pipeline adapts to its size
    photos = shared_path("photos")
    result = invoke("restore", photos / "insightface_t1.jpg", photos / "gfpgan__inputs_whole_imgs_00.jpg", tmp_path,
                    "--restorer", "gfpgan", "--weights", weights, "--model-dir", shared_weights, "--quiet")
    assert result.exit_code == 0, result.output
    assert "2 processed, 0 failed; 8 faces restored" in result.output
    original = read_any(photos / "insightface_t1.jpg")
    restored = read_any(tmp_path / "insightface_t1.jpg")
    assert restored.shape == original.shape
    face_region = (slice(250, 400), slice(50, 170))  # the left-most face of the group photo
    assert psnr(restored[face_region], original[face_region]) < 30  # replaced by the (random) network's output
    assert psnr(restored[560:], original[560:]) > 40  # below every face footprint: only re-encoded


def test_auto_backend_runs_onnxruntime_on_cpu_and_caches_the_export(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("auto picks PyTorch on a GPU")
    face = shared_path("photos", ADELE)
    weights = FIXTURES / "clean_main.pth"
    home = tmp_path / "home"
    runner = CliRunner(env={"FACEFIX_HOME": str(home)})
    first = runner.invoke(cli, ["restore", str(face), str(tmp_path / "a"), "--aligned", "--restorer", "gfpgan",
                                "--weights", str(weights)])
    assert first.exit_code == 0 and "onnxruntime CPUExecutionProvider" in first.output
    assert "exporting" in first.output and len(list((home / "onnx").glob("*.onnx"))) == 1
    second = runner.invoke(cli, ["restore", str(face), str(tmp_path / "b"), "--aligned", "--restorer", "gfpgan",
                                 "--weights", str(weights), "--fidelity", "0.5"])
    # the same weights at another fidelity: the same export (the fidelity is its "weight" input)
    assert second.exit_code == 0 and "exporting" not in second.output
    assert len(list((home / "onnx").glob("*.onnx"))) == 1
    for name, fidelity in (("c", "1"), ("d", "0.5")):
        torch_run = runner.invoke(cli, ["restore", str(face), str(tmp_path / name), "--aligned", "--restorer",
                                        "gfpgan", "--weights", str(weights), "--backend", "torch",
                                        "--fidelity", fidelity])
        assert "(torch fp32)" in torch_run.output
    a, b, c, d = (read_any(tmp_path / name / ADELE).astype(int) for name in "abcd")
    assert np.abs(a - c).max() <= 1 and np.abs(b - d).max() <= 1
    assert np.abs(a - b).mean() > 1  # the fidelity input does change the face


def test_precision_and_compile_backends_stay_close_to_fp32(tmp_path):
    import facefix.backends as backends

    face = shared_path("photos", ADELE)
    weights = FIXTURES / "clean_main.pth"
    reference = None
    for extra in (["--backend", "torch"], ["--backend", "torch", "--precision", "bf16"]):
        if "bf16" in extra and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            continue
        out = tmp_path / "-".join(extra)
        result = invoke("restore", face, out, "--aligned", "--restorer", "gfpgan", "--weights", weights, *extra)
        assert result.exit_code == 0, result.output
        image = read_any(out / ADELE).astype(int)
        if reference is None:
            reference = image
        else:
            assert np.abs(image - reference).mean() < 3  # bf16 rounding, not a different result
    assert "compile" in backends.BACKENDS


def test_registry_has_the_official_files_and_digests():
    expected = {
        "gfpgan-v1.4": ("GFPGANv1.4.pth", "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", 348632874),
        "gfpgan-v1.3": ("GFPGANv1.3.pth", "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70", 348632874),
        "gfpgan-v1.2": ("GFPGANCleanv1-NoCE-C2.pth", "29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c", None),
    }
    for name, (filename, digest, size) in expected.items():
        entry = get_entry(name)
        assert (entry.filename, entry.sha256, entry.size) == (filename, digest, size)
        assert entry.urls and entry.urls[0].startswith("https://github.com/TencentARC/GFPGAN/releases/download/")
    assert not get_entry("gfpgan-v1").pinned
    listing = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    restorers = {item["name"]: item for item in listing["components"]["restorer"]}
    assert {"gfpgan", "gfpgan-v1.3", "gfpgan-v1.2", "gfpgan-v1"} <= set(restorers)
    assert restorers["gfpgan"]["weights"] == ["gfpgan-v1.4"]
