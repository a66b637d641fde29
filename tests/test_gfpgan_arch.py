"""GFP-GAN networks and the shared StyleGAN2 blocks against the reference implementation.

Golden files (``tests/fixtures/gfpgan``, made by ``make_golden.py`` from gfpgan 1.3.8 /
basicsr 1.4.2 in a throwaway env) hold reduced-size reference models with random
weights, their input and their output; the key lists are those of the full-size
released architectures.
"""

from __future__ import annotations

import io
import json
import warnings
from functools import cache
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from facefix.nn import stylegan2
from facefix.checkpoints import read_state
from facefix.checkpoints import canonicalize
from facefix_plugins.gfpgan.arch import GFPGANv1, GFPGANv1Clean, official_gfpgan

FIXTURES = Path(__file__).parent / "fixtures" / "gfpgan"
CASES = ("original_main", "original_alt", "clean_main", "clean_alt")
TOLERANCE = 1e-4


@cache
def golden(name: str) -> dict:
    return read_state(FIXTURES / f"{name}.pth")


def build(name: str, **overrides) -> GFPGANv1 | GFPGANv1Clean:
    data = golden(name)
    options = {**data["config"], **overrides}
    arch = options.pop("arch")
    model = (GFPGANv1 if arch == "original" else GFPGANv1Clean)(**options).eval()
    model.load_state_dict(canonicalize(data)[0], strict=True)
    return model


def run(model: torch.nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(x, return_rgb=False, **kwargs)[0]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("arch, filename", [("original", "keys_v1.json"), ("clean", "keys_clean.json")])
def test_full_size_state_dict_layout_matches_reference(arch, filename):
    expected = json.loads((FIXTURES / filename).read_text(encoding="utf-8"))
    with torch.device("meta"):
        model = official_gfpgan(arch)
    ours = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert {k: s for k, s in ours} == {k: s for k, s in expected}
    assert ours == expected  # same order as well
    assert all(not p.requires_grad for p in model.stylegan_decoder.parameters())  # fix_decoder


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", CASES)
def test_reduced_models_reproduce_reference_outputs(name):
    data = golden(name)
    model = build(name)
    with torch.no_grad():
        image, rgbs = model(data["input"], return_latents=False, return_rgb=True, randomize_noise=False)
    assert image.shape == data["output"].shape
    assert max_diff(image, data["output"]) < TOLERANCE
    assert len(rgbs) == len(data["rgbs"])
    for ours, theirs in zip(rgbs, data["rgbs"], strict=True):
        assert max_diff(ours, theirs) < TOLERANCE


@pytest.mark.parametrize("name", ["original_main", "clean_main"])
def test_outputs_are_deterministic(name):
    model = build(name)
    x = golden(name)["input"]
    first, second = run(model, x), run(model, x)
    assert torch.equal(first, second)
    # Fresh noise only on request, and it does change the image.
    assert max_diff(run(model, x, randomize_noise=True), first) > 1e-3


# --------------------------------------------------------------------------- fidelity


@pytest.mark.parametrize("name", ["original_main", "clean_main"])
def test_fidelity_scales_the_conditioning(name):
    data = golden(name)
    model = build(name)
    assert model.fidelity == 1.0
    x = data["input"]
    full = run(model, x)
    half = run(model, x, fidelity=0.5)
    prior = run(model, x, fidelity=0.0)
    assert max_diff(full, data["output"]) < TOLERANCE  # fidelity 1 is the reference
    distance = {f: float((out - full).norm()) for f, out in ((0.5, half), (0.0, prior))}
    assert 0.0 < distance[0.5] < distance[0.0]
    assert max_diff(prior, full) > 1e-2
    # The attribute is the default for forward; an argument overrides it for one call.
    model.fidelity = 0.5
    assert torch.equal(run(model, x), half)
    assert torch.equal(run(model, x, fidelity=1.0), full)
    # Fidelity 0 does not depend on the skipped U-Net decoder branch.
    with torch.no_grad():
        assert torch.equal(model(x, return_rgb=True, fidelity=0.0)[0], prior)


def test_fidelity_range_is_checked():
    model = build("clean_alt")
    with pytest.raises(ValueError):
        model.fidelity = 1.5
    with pytest.raises(ValueError):
        run(model, golden("clean_alt")["input"], fidelity=-0.1)
    with pytest.raises(ValueError):
        official_gfpgan("clean", out_size=32, num_style_feat=8, narrow=1 / 64, fidelity=2)


# --------------------------------------------------------------------------- stylegan2 blocks


def _per_sample_modconv(layer: stylegan2.ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The textbook formulation: one modulated (and demodulated) weight per sample."""
    outputs = []
    for sample, code in zip(x, style, strict=True):
        weight = layer.weight[0] * layer.weight_gain * layer.modulation(code[None])[0][None, :, None, None]
        if layer.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(1, 2, 3), keepdim=True) + layer.eps)
        sample = sample[None]
        pad = layer.kernel_size // 2
        if layer.flavour == "clean":
            if layer.sample_mode is not None:
                scale = 2.0 if layer.sample_mode == "upsample" else 0.5
                sample = F.interpolate(sample, scale_factor=scale, mode="bilinear", align_corners=False)
            outputs.append(F.conv2d(sample, weight, padding=pad))
        elif layer.sample_mode == "upsample":
            outputs.append(layer.smooth(F.conv_transpose2d(sample, weight.transpose(0, 1), stride=2)))
        elif layer.sample_mode == "downsample":
            outputs.append(F.conv2d(layer.smooth(sample), weight, stride=2))
        else:
            outputs.append(F.conv2d(sample, weight, padding=pad))
    return torch.cat(outputs)


@pytest.mark.parametrize("flavour", stylegan2.FLAVOURS)
@pytest.mark.parametrize("sample_mode", [None, "upsample", "downsample"])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_equals_per_sample_weights(flavour, sample_mode, demodulate):
    torch.manual_seed(0)
    layer = stylegan2.ModulatedConv2d(6, 5, 3, 8, demodulate, sample_mode, flavour)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 8)
    with torch.no_grad():
        ours, expected = layer(x, style), _per_sample_modconv(layer, x, style)
    assert ours.shape == expected.shape
    assert max_diff(ours, expected) < 1e-5


def test_upfirdn2d_shapes_and_dc_gain():
    x = torch.ones(1, 2, 8, 8)
    up = stylegan2.Blur("up")(x)
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.ones(()))  # unit DC gain away from borders
    down = stylegan2.upfirdn2d(x, stylegan2.make_blur_kernel(), down=2, pad=(1, 1))
    assert down.shape == (1, 2, 4, 4)
    cropped = stylegan2.upfirdn2d(x, torch.ones(1, 1), pad=(-1, -2))
    assert cropped.shape == (1, 2, 5, 5)


@pytest.mark.parametrize("flavour", stylegan2.FLAVOURS)
def test_generator_noise_and_styles(flavour):
    torch.manual_seed(0)
    gen = stylegan2.StyleGAN2Generator(16, num_style_feat=8, num_mlp=2, narrow=1 / 64, flavour=flavour).eval()
    for conv in [gen.style_conv1, *gen.style_convs]:
        conv.weight.data.fill_(0.5)  # non-zero noise strength
    z = torch.randn(2, 8)
    with torch.no_grad():
        image, latent = gen(z, return_latents=True)
        assert image.shape == (2, 3, 16, 16) and latent.shape == (2, gen.num_latent, 8)
        assert torch.equal(gen([z])[0], image)  # fixed noise buffers
        silent = gen(z, noise=[None] * gen.num_layers)[0]
        assert max_diff(silent, image) > 1e-3
        assert torch.equal(gen(latent, input_is_latent=True)[0], image)  # W+ input
        mixed = gen([z, torch.randn(2, 8)], inject_index=3)[0]
        assert mixed.shape == image.shape and max_diff(mixed, image) > 1e-4
    parameters = {name for name, _ in gen.named_parameters()}
    saved_buffers = [key for key in gen.state_dict() if key not in parameters]  # FIR kernels are not saved
    assert saved_buffers == [f"noises.noise{i}" for i in range(gen.num_layers)]


# --------------------------------------------------------------------------- ONNX


class _ImageOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, return_rgb=False)[0]


@pytest.mark.parametrize("name", ["clean_main", "original_main"])
def test_onnx_export_matches_torch(name):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = build(name)
    x = golden(name)["input"]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and constant-folding notes
        torch.onnx.export(
            _ImageOnly(model), (x,), buffer, opset_version=17, dynamo=False,
            input_names=["input"], output_names=["image"],
            dynamic_axes={"input": {0: "batch"}, "image": {0: "batch"}},
        )  # fmt: skip
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    batch = torch.cat([x, x[:1].flip(-1)])  # another batch size than the traced one
    (onnx_out,) = session.run(None, {"input": batch.numpy()})
    expected = run(model, batch)
    assert onnx_out.shape == tuple(expected.shape)
    assert max_diff(torch.from_numpy(onnx_out), expected) < TOLERANCE
