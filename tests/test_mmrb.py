"""The MMRB network: the paper's size and structure, the block, fidelity, the two ways
to start from a pretrained prior (GPEN's layout, an additive StyleGAN2), FreezeD, and
`facefix train mmrb` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix.cli import cli
from facefix.errors import WeightsError
from facefix.nn.stylegan2 import StyleGAN2Generator
from facefix.training.discriminators import StyleGAN2Discriminator
from facefix_plugins.mmrb.arch import CPU128_CONFIG, FULL_CONFIG, MMRB, MMRBNet, PlainResidualBlock
from facefix_plugins.mmrb.network import gpen_discriminator_state, gpen_key, load_additive_prior, load_gpen
from conftest import PROJECT, assert_one_export_serves_every_fidelity, copy_faces, read_any, read_rows, shared_path

FIXTURES = PROJECT / "tests" / "fixtures" / "mmrb"
TINY = dict(out_size=32, style_dim=32, num_mlp=2, channel_multiplier=1, narrow=1 / 16)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_full_configuration_is_the_papers_network():
    with torch.device("meta"):
        full = MMRBNet(**FULL_CONFIG)
        plain = MMRBNet(**dict(FULL_CONFIG, mmrb=False))
        cpu = MMRBNet(**CPU128_CONFIG)
    assert round(parameters(full) / 1e6, 1) == 134.7  # the spec's count of its reading (§1.9)
    assert len(full.blocks) == 6 and all(isinstance(block, MMRB) for block in full.blocks)
    assert [block.conv3_2.in_channels for block in full.blocks] == [128, 256, 512, 512, 512, 512]  # 256 … 8 px
    assert round(parameters(full.blocks) / 1e6, 2) == 50.32 and round(parameters(full.prior) / 1e6, 2) == 55.82
    assert all(isinstance(block, PlainResidualBlock) for block in plain.blocks)
    assert round(parameters(cpu) / 1e6, 2) == 6.63
    # each prior conv takes its own features and the decoder's, concatenated
    assert full.prior.style_convs[0].modulated_conv.in_channels == 2 * 512
    assert full.prior.to_rgbs[-1].modulated_conv.in_channels == 2 * 64


def test_mmrb_splits_mixes_reduces_and_starts_as_the_identity():
    torch.manual_seed(0)
    block = MMRB(16)
    assert sum(p.numel() for p in block.parameters()) == int(44.5 * 16**2 + 4 * 16 + 5)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)  # the 1x1 reduction starts at zero
    with torch.no_grad():
        block.reduce.weight.normal_()
    assert not torch.allclose(block(x), x)
    with pytest.raises(ValueError):
        MMRB(15)


def test_an_untrained_network_passes_image_gradient_to_its_decoder():
    # The injected features are the only path from the input to the pixels; with
    # StyleGAN2's zero noise strengths the decoder learned nothing from the image losses.
    torch.manual_seed(0)
    network = MMRBNet(**TINY)
    assert all(conv.noise_weight.item() == 1.0 for conv in [network.prior.style_conv1, *network.prior.style_convs])
    image, _ = network(torch.rand(2, 3, 32, 32) * 2 - 1, return_rgb=False)
    image.abs().mean().backward()
    decoder_gradients = [p.grad.abs().sum().item() for p in network.decoder.parameters() if p.grad is not None]
    assert decoder_gradients and min(decoder_gradients) > 0


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    network = MMRBNet(**TINY).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return network


def test_injected_features_follow_the_decoder_and_fidelity_moves_the_output(tiny):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        _, skips = tiny.encode(x)
        decoded = tiny.decode(skips)
        assert [d.shape[-1] for d in decoded] == [4, 8, 16, 32]
        assert [d.shape[1] for d in decoded] == [tiny.channels[r] for r in (4, 8, 16, 32)]
        image, rgbs = tiny(x)
        assert image.shape == (2, 3, 32, 32) and [r.shape[-1] for r in rgbs] == [8, 16, 32]
        assert torch.equal(tiny(x)[0], image)  # nothing random at inference
        distances = []
        for fidelity in (1.0, 0.75, 0.5, 0.25, 0.0):
            tiny.fidelity = fidelity
            distances.append(float((tiny(x, return_rgb=False)[0] - image).abs().mean()))
        assert distances[0] == 0 and all(a < b for a, b in zip(distances, distances[1:]))
        # fidelity 0 is the prior driven by z alone: no spatial information enters
        z, _ = tiny.encode(x)
        zeros = [torch.zeros_like(d) for d in decoded]
        alone = tiny.prior(tiny.prior.style_mlp(z), [zeros[0]] + [d for d in zeros[1:] for _ in range(2)])
        assert torch.allclose(tiny(x, return_rgb=False)[0], alone)


def test_an_additive_stylegan2_is_widened_function_preservingly(tmp_path, tiny):
    torch.manual_seed(1)
    additive = StyleGAN2Generator(32, num_style_feat=32, num_mlp=2, channel_multiplier=1, narrow=1 / 16).eval()
    with torch.no_grad():
        for parameter in additive.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    torch.save({"params_ema": additive.state_dict()}, tmp_path / "stylegan2.pth")
    load_additive_prior(tiny, tmp_path / "stylegan2.pth")
    w = additive.style_mlp(torch.randn(2, 32))
    injected = [torch.randn(2, tiny.channels[size], size, size) for size in (4, 8, 8, 16, 16, 32, 32)]
    with torch.no_grad():
        tiny.prior.style_conv1.noise_weight.fill_(0.7)  # whatever the injected features, the output is the prior's
        ours = tiny.prior(w, injected)
        theirs = additive.synthesize(w[:, None].repeat(1, additive.num_latent, 1), noise=[None] * additive.num_layers)
    assert torch.allclose(ours, theirs, atol=1e-5)
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a StyleGAN2 generator"):
        load_additive_prior(tiny, tmp_path / "other.pth")


def gpen_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the layout GPEN's own code builds (the fixture's keys and shapes)."""
    generator = torch.Generator().manual_seed(seed)
    layout = json.loads((FIXTURES / name).read_text())
    return {key: torch.randn(*shape, generator=generator) for key, shape in layout}


def test_gpens_generator_keys_load_as_encoder_and_prior(tmp_path, tiny):
    state = gpen_state("gpen_generator_32.json")
    torch.save(state, tmp_path / "GPEN-BFR-32.pth")
    loaded = load_gpen(tiny, tmp_path / "GPEN-BFR-32.pth")
    own = tiny.state_dict()
    mapped = {gpen_key(key): key for key in state if gpen_key(key) is not None}
    assert sorted(mapped) == loaded
    assert {key for key in state if gpen_key(key) is None} == {key for key in state if key.endswith(".kernel")}
    assert all(torch.equal(own[ours], state[theirs]) for ours, theirs in mapped.items())
    covered = {key for key in own if key.startswith(("prior.", "ecd0.", "encoder_convs.", "final_linear."))}
    assert covered == set(loaded)  # everything GPEN has; the MMRBs, decoder and heads are MMRB's own
    # the full size: every key of GPEN-BFR-512's layout has a place in the paper's network
    layout = json.loads((FIXTURES / "gpen_generator_512.json").read_text())
    with torch.device("meta"):
        full = MMRBNet(**FULL_CONFIG).state_dict()
    for key, shape in layout:
        target = gpen_key(key)
        assert key.endswith(".kernel") if target is None else list(full[target].shape) == shape, key


def test_gpens_discriminator_loads_into_facefixs_and_a_wrong_prior_is_one_line(tmp_path, tiny):
    from facefix.checkpoints import load_into

    torch.save(gpen_state("gpen_discriminator_32.json"), tmp_path / "GPEN-D.pth")
    discriminator = StyleGAN2Discriminator(32, channel_multiplier=1, narrow=1 / 16)
    load_into(discriminator, gpen_discriminator_state(tmp_path / "GPEN-D.pth"), tmp_path / "GPEN-D.pth", "not it")
    # a GPEN of another width: its constant input has twice the channels
    wide = gpen_state("gpen_generator_32.json")
    wide["generator.input.input"] = torch.zeros(1, 64, 4, 4)
    torch.save(wide, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="another size or width") as caught:
        load_gpen(tiny, tmp_path / "wrong.pth")
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return copy_faces(tmp_path_factory.mktemp("faces"), 8)


def test_train_with_freezed_restore_export_and_onnx(faces, tmp_path, shared_weights):
    """`facefix train mmrb` with a (GPEN-layout) pretrained discriminator: FreezeD keeps its
    first blocks, the run writes a checkpoint that restore detects and export runs."""
    torch.save(gpen_state("gpen_discriminator_32.json", seed=3), tmp_path / "D.pth")
    before = gpen_discriminator_state(tmp_path / "D.pth")
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "mmrb", "--data", str(faces / "images"), "--out", str(run), "--size", "32", "--width", "0.0625",
        "--style-dim", "32", "--channel-multiplier", "1", "--d-width", "0.0625", "--batch-size", "2",
        "--workers", "0", "--iters", "3", "--val-every", "0", "--pretrained-discriminator", str(tmp_path / "D.pth"),
        "--freeze-d-blocks", "2", "--no-feature-matching", "--no-identity", "--model-dir", str(shared_weights),
        "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_rows(run / "log.csv")
    for key in ("l1", "pyramid", "gan", "local_gan", "d", "d_components", "g"):
        assert np.isfinite(float(rows[0][key])), key
    after = torch.load(run / "last.pth", weights_only=True)["models"]["discriminator"]
    frozen = [key for key in before if key.startswith(("conv_body.0.", "conv_body.1."))]
    trained = [key for key in before if key.startswith("final_linear.")]
    assert frozen and all(torch.equal(after[key], before[key]) for key in frozen)
    assert any(not torch.equal(after[key], before[key]) for key in trained)
    config = torch.load(run / "final.pth", weights_only=True)["config"]
    assert config["mmrb"] is True and config["out_size"] == 32

    face = shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")
    restored = CliRunner().invoke(cli, ["restore", str(face), str(tmp_path / "out"), "--aligned", "--weights",
                                        str(run / "final.pth"), "--backend", "torch"])
    assert restored.exit_code == 0, restored.output
    assert "restorer mmrb [detected from final.pth]" in restored.output
    assert read_any(tmp_path / "out" / face.name).shape == (32, 32, 3)
    exported = CliRunner().invoke(cli, ["export", "mmrb", "--weights", str(run / "final.pth"), "-o",
                                        str(tmp_path / "mmrb.onnx")])
    assert exported.exit_code == 0, exported.output
    assert float(exported.output.rsplit("= ", 1)[1].split()[0]) < 2 / 255  # onnxruntime vs torch, [-1, 1] units
    assert_one_export_serves_every_fidelity(tmp_path / "mmrb.onnx", "mmrb", run / "final.pth", face)
