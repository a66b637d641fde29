"""ONNX machinery in the core: export any TorchRestorer, run exported and third-party models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from facefix import onnx as ff_onnx
from facefix.cli import cli
from facefix.hookspecs import hookimpl
from facefix.restorers import TorchRestorer
from conftest import read_any, shared_path
from test_plugins import registered


class TinyNet(nn.Module):
    """A small face-to-face network with the shapes restorers have (residual, tanh-bounded)."""

    def __init__(self, upscale: int = 1):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(16, 3 * upscale**2, 3, padding=1))
        self.shuffle = nn.PixelShuffle(upscale)
        self.upscale = upscale

    def forward(self, x):
        base = nn.functional.interpolate(x, scale_factor=self.upscale, mode="bilinear") if self.upscale > 1 else x
        return torch.tanh(base + 0.3 * self.shuffle(self.body(x)))


def tiny_restorer(size=64, upscale=1) -> TorchRestorer:
    return TorchRestorer(TinyNet(upscale), input_size=size, output_size=size * upscale, name=f"tiny-{upscale}")


def real_face(size: int) -> np.ndarray:
    face = cv2.imread(str(shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")))
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_export_checks_and_matches_pytorch(tmp_path, dynamic_batch):
    restorer = tiny_restorer(64, upscale=2)
    report = ff_onnx.export_restorer(restorer, tmp_path / "m.onnx", sample=real_face(64), dynamic_batch=dynamic_batch)
    assert report.path.exists() and report.provider == "CPUExecutionProvider"
    assert report.max_abs_difference < 1e-4
    runner = ff_onnx.OnnxRestorer(report.path, "cpu")
    assert (runner.input_size, runner.output_size) == (64, 128)
    faces = np.stack([real_face(64), real_face(64)[::-1].copy()])
    expected = restorer.restore(faces)
    got = runner.restore(faces)  # fixed batch 1 is run face by face
    assert got.shape == expected.shape == (2, 128, 128, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert not list(tmp_path.glob(".*part"))


def test_cuda_request_without_gpu_falls_back_and_says_so(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    report = ff_onnx.export_restorer(tiny_restorer(), tmp_path / "m.onnx")
    _, provider = ff_onnx.create_session(report.path, "cuda")
    assert provider == "CPUExecutionProvider"
    assert "onnxruntime runs on CPU" in capsys.readouterr().err
    _, provider = ff_onnx.create_session(report.path, "cpu")
    assert provider == "CPUExecutionProvider"


class WeightedNet(nn.Module):
    """CodeFormer's ONNX convention: inputs (input, weight); weight blends two paths."""

    def forward(self, x, weight):
        return torch.tanh(weight * x + (1 - weight) * (-x))


def test_codeformer_style_weight_input_is_fed_from_fidelity(tmp_path):
    path = tmp_path / "weighted.onnx"
    torch.onnx.export(WeightedNet(), (torch.zeros(1, 3, 32, 32), torch.tensor(0.5, dtype=torch.float64)), str(path),
                      input_names=["input", "weight"], output_names=["output"], dynamo=False)
    face = real_face(32)[None]
    low = ff_onnx.OnnxRestorer(path, "cpu", fidelity=0.0).restore(face)
    high = ff_onnx.OnnxRestorer(path, "cpu", fidelity=1.0).restore(face)
    assert np.abs(low.astype(int) - high.astype(int)).mean() > 20


def test_restorer_onnx_runs_a_third_party_model_from_the_cli(tmp_path):
    restorer = tiny_restorer(96)
    model = ff_onnx.export_restorer(restorer, tmp_path / "third_party.onnx").path
    face_path = tmp_path / "face.png"
    cv2.imwrite(str(face_path), real_face(96))
    result = CliRunner().invoke(cli, ["restore", str(face_path), str(tmp_path / "out"), "--aligned",
                                      "--restorer", "onnx", "--onnx", str(model), "--quiet", "--no-color-match"])
    assert result.exit_code == 0, result.output
    got = read_any(tmp_path / "out" / "face.png")
    expected = restorer.restore(real_face(96)[None])[0]
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    missing = CliRunner().invoke(cli, ["restore", str(face_path), str(tmp_path / "o2"), "--aligned", "--restorer", "onnx"])
    assert missing.exit_code == 1 and "--onnx FILE" in missing.output


class TinyPlugin:
    @hookimpl
    def register_restorers(self, register):
        register("tiny-test", lambda context: tiny_restorer(128), description="tiny torch restorer")


def test_backend_onnx_matches_torch_backend_within_one_level(tmp_path, shared_weights):
    photo = shared_path("photos", "gfpgan__inputs_whole_imgs_Blake_Lively.jpg")
    env = {"FACEFIX_HOME": str(tmp_path / "home")}
    common = ["--restorer", "tiny-test", "--model-dir", str(shared_weights), "--detector", "retinaface_mobile0.25",
              "--ext", "png"]
    with registered(TinyPlugin(), "tiny-onnx-plugin"):
        runner = CliRunner(env=env)
        torch_run = runner.invoke(cli, ["restore", str(photo), str(tmp_path / "torch"), *common, "--backend", "torch"])
        onnx_run = runner.invoke(cli, ["restore", str(photo), str(tmp_path / "onnx"), *common, "--backend", "onnx"])
    assert torch_run.exit_code == 0 and onnx_run.exit_code == 0, onnx_run.output
    assert "onnxruntime CPUExecutionProvider" in onnx_run.output
    assert len(list((tmp_path / "home" / "onnx").glob("*.onnx"))) == 1  # exported once, cached
    a = read_any(tmp_path / "torch" / f"{photo.stem}.png")
    b = read_any(tmp_path / "onnx" / f"{photo.stem}.png")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert not np.array_equal(a, read_any(photo))  # the restorer really changed the faces
