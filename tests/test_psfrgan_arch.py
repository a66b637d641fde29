"""PSFR-GAN parser and generator against the reference implementation.

Golden files (``tests/fixtures/psfrgan``, made by ``make_golden.py`` from the authors'
repository chaofengc/PSFRGAN @ ab853cd, never installed here) hold reduced-size reference
models with random weights, their inputs and outputs; the key lists are those of the
full-size released architectures (``parse_multi_iter_90000.pth``, ``psfrgan_epoch15_net_G.pth``).
"""

from __future__ import annotations

import io
import json
import warnings
from functools import cache
from pathlib import Path

import pytest
import torch
from torch import nn

from facefix.checkpoints import read_state
from facefix_plugins.psfrgan.arch import (
    PSFRGenerator,
    PSFRParseNet,
    SNConv2d,
    official_generator,
    official_parser,
    parsing_onehot,
)

FIXTURES = Path(__file__).parent / "fixtures" / "psfrgan"
GENERATOR_CASES = ("generator_main", "generator_alt")
TOLERANCE = 1e-4


@cache
def golden(name: str) -> dict:
    return read_state(FIXTURES / f"{name}.pth")


def build(name: str) -> PSFRGenerator | PSFRParseNet:
    data = golden(name)
    config = {k: v for k, v in data["config"].items() if k != "lq_size"}  # lq_size: input only
    model = (PSFRParseNet if name.startswith("parser") else PSFRGenerator)(**config).eval()
    model.load_state_dict(data["state_dict"], strict=True)
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    "factory, filename, params",
    [(official_parser, "keys_parser.json", 21_303_254), (official_generator, "keys_generator.json", 45_956_995)],
)
def test_full_size_state_dict_layout_matches_reference(factory, filename, params):
    expected = json.loads((FIXTURES / filename).read_text(encoding="utf-8"))
    with torch.device("meta"):
        model = factory()
    ours = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert {k: s for k, s in ours} == {k: s for k, s in expected}
    assert ours == expected  # same order as well
    assert sum(p.numel() for p in model.parameters()) == params


def test_official_configs():
    with torch.device("meta"):
        generator, parser = official_generator(), official_parser()
    assert generator.const_input.shape == (1, 1024, 16, 16)
    assert generator.scales == [16, 32, 64, 128, 256, 512]
    assert generator.img_out.weight_orig.shape == (3, 32, 3, 3)
    assert generator.head[1].norm_0.conv1[0].weight_orig.shape[1] == 3 + 19
    assert parser.out_mask_conv.conv2d.out_channels == 19


# --------------------------------------------------------------------------- parity


def test_parser_reproduces_reference_outputs():
    data = golden("parser_small")
    model = build("parser_small")
    with torch.no_grad():
        logits, image = model(data["input"])
    assert logits.shape == data["output"].shape and image.shape == data["image"].shape
    assert max_diff(logits, data["output"]) < TOLERANCE
    assert max_diff(image, data["image"]) < TOLERANCE


@pytest.mark.parametrize("name", GENERATOR_CASES)
def test_generator_reproduces_reference_outputs(name):
    data = golden(name)
    model = build(name)
    with torch.no_grad():
        out = model(data["input"], data["parsing"])
    assert out.shape == data["output"].shape
    assert max_diff(out, data["output"]) < TOLERANCE
    # The conditioning matters: another parsing map gives another image.
    with torch.no_grad():
        other = model(data["input"], data["parsing"].roll(1, dims=1))
    assert max_diff(other, out) > 1e-3


@pytest.mark.parametrize("name", GENERATOR_CASES)
def test_generator_is_deterministic_and_eval_leaves_state_alone(name):
    data = golden(name)
    model = build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        first = model(data["input"], data["parsing"])
        second = model(data["input"], data["parsing"])
    assert torch.equal(first, second)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_parsing_onehot_matches_reference_formula():
    logits = torch.randn(2, 19, 8, 8, generator=torch.Generator().manual_seed(0))
    onehot = parsing_onehot(logits)
    assert torch.equal(onehot, (logits == logits.max(dim=1, keepdim=True)[0]).float())
    assert torch.equal(onehot.argmax(1), logits.argmax(1)) and torch.equal(onehot.sum(1), torch.ones(2, 8, 8))


def test_spectral_conv_matches_torch_spectral_norm():
    torch.manual_seed(0)
    ours = SNConv2d(5, 7)
    theirs = nn.utils.spectral_norm(nn.Conv2d(5, 7, 3, padding=1))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 6, 6)
    for _ in range(3):  # train mode: one power iteration per call, same u / v updates
        assert max_diff(ours(x), theirs(x)) < 1e-6
        assert torch.allclose(ours.weight_u, theirs.weight_u) and torch.allclose(ours.weight_v, theirs.weight_v)
    ours.eval(), theirs.eval()
    u = ours.weight_u.clone()
    with torch.no_grad():
        assert max_diff(ours(x), theirs(x)) < 1e-6
    assert torch.equal(ours.weight_u, u)
    # Gradients flow to weight_orig (and sigma depends on it).
    ours.train()
    ours(x).square().sum().backward()
    assert ours.weight_orig.grad is not None and ours.weight_orig.grad.abs().sum() > 0


# --------------------------------------------------------------------------- ONNX


def _export(model: nn.Module, inputs: tuple, names: list[str], outputs: list[str]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes
        torch.onnx.export(
            model, inputs, buffer, opset_version=17, dynamo=False, input_names=names, output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in names + outputs},
        )  # fmt: skip
    return buffer.getvalue()


@pytest.mark.parametrize("name", GENERATOR_CASES)
def test_generator_onnx_export_matches_torch(name):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    data = golden(name)
    model = build(name)
    blob = _export(model, (data["input"][:1], data["parsing"][:1]), ["lq", "parsing"], ["image"])
    onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    lq, parsing = data["input"], data["parsing"]  # another batch size than the traced one
    (onnx_out,) = session.run(None, {"lq": lq.numpy(), "parsing": parsing.numpy()})
    assert onnx_out.shape == tuple(data["output"].shape)
    assert max_diff(torch.from_numpy(onnx_out), data["output"]) < TOLERANCE


def test_parser_onnx_export_matches_torch():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    data = golden("parser_small")
    blob = _export(build("parser_small"), (data["input"][:1],), ["image"], ["logits", "rgb"])
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    logits, rgb = session.run(None, {"image": data["input"].numpy()})
    assert max_diff(torch.from_numpy(logits), data["output"]) < TOLERANCE
    assert max_diff(torch.from_numpy(rgb), data["image"]) < TOLERANCE
