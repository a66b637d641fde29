"""CFGPFSSR: the paper's network as the spec reads it, its SFT and fidelity, a frozen
prior bank, training on real faces, restoring whole photos at 16x, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix.cli import cli
from facefix.errors import WeightsError
from facefix.nn.stylegan2 import StyleGAN2Generator
from facefix_plugins.cfgpfssr.arch import CPU256_CONFIG, FULL_CONFIG, CFGPFSSRNet, resize_parsing
from facefix_plugins.cfgpfssr.network import infer_config, load_prior, parser_card
from facefix_plugins.cfgpfssr.train import make_low_resolution, mixed_low_resolution
from conftest import PROJECT, assert_one_export_serves_every_fidelity, copy_faces, read_any, read_rows, shared_path

TINY = dict(out_size=64, in_size=8, rrdb_blocks=1, rrdb_channels=8, rrdb_growth=4, channel_multiplier=1,
            narrow=1 / 32, style_dim=16, num_mlp=2, head_channels=8)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise_sft(network: CFGPFSSRNet) -> None:
    """Give the identity-initialised SFT branches weights, as training would."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for branch in (*network.sft_scale.values(), *network.sft_shift.values()):
            branch[2].weight.copy_(torch.randn(branch[2].weight.shape, generator=generator) * 0.05)


def test_the_full_configuration_is_the_papers_network():
    with torch.device("meta"):
        full = CFGPFSSRNet(**FULL_CONFIG)
        per_block = CFGPFSSRNet(**dict(FULL_CONFIG, latent_per_block=True))
        cpu = CFGPFSSRNet(**CPU256_CONFIG)
    # the spec's counts of its reading (§1.9, §5.1)
    assert round(parameters(full) / 1e6, 1) == 189.1
    assert round((parameters(full) - parameters(full.bank)) / 1e6, 1) == 158.7
    assert round(parameters(cpu) / 1e6, 2) == 4.24
    assert full.num_codes == 18 and per_block.num_codes == 9  # W+, or one code per bank block
    assert round(parameters(full.to_latent[3]) / 1e6, 1) == 75.5  # E5's linear layer alone
    assert sorted(map(int, full.sft_scale)) == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    # encoder features and parsing up to the input size (V1), parsing alone above it
    assert [full.sft_scale[str(r)][0].in_channels for r in (4, 64, 128, 1024)] == [512 + 19, 512 + 19, 19, 19]
    assert [conv.in_channels for conv in full.decoder] == [512, 512, 256, 128]  # D0 … D3: f_0, then [d, g]
    assert full.head[0].in_channels == 64
    assert infer_config(full.state_dict()) == {**full.config}


def test_the_sft_starts_as_the_identity_and_fidelity_moves_the_output():
    torch.manual_seed(0)
    network = CFGPFSSRNet(**TINY).eval()
    lr, parsing = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 19, 32, 32)
    with torch.no_grad():
        own = network(lr, parsing)
        network.fidelity = 0.0
        assert torch.equal(network(lr, parsing), own)  # untrained: the paper's Baseline (latents only)
        randomise_sft(network)
        alone = network(lr, parsing)
        distances = []
        for fidelity in (0.0, 0.25, 0.5, 0.75, 1.0):
            network.fidelity = fidelity
            distances.append(float((network(lr, parsing) - alone).abs().mean()))
        assert distances[0] == 0 and all(a < b for a, b in zip(distances, distances[1:]))
        # the parsing map is part of the condition: another map, another face
        assert not torch.allclose(network(lr, torch.rand(2, 19, 32, 32)), network(lr, parsing))
        assert torch.equal(network(lr, parsing), network(lr, parsing))  # fixed noise: deterministic
    with pytest.raises(ValueError, match="parsing map"):
        network(lr)


def test_ablations_drop_their_conditions():
    baseline = CFGPFSSRNet(**dict(TINY, features=False, parsing=False))
    features_only = CFGPFSSRNet(**dict(TINY, parsing=False))
    parsing_only = CFGPFSSRNet(**dict(TINY, features=False))
    assert len(baseline.sft_scale) == 0
    assert sorted(map(int, features_only.sft_scale)) == [4, 8]  # only where an encoder feature exists
    assert sorted(map(int, parsing_only.sft_scale)) == [4, 8, 16, 32, 64]
    assert parsing_only.sft_scale["4"][0].in_channels == 19
    lr = torch.rand(1, 3, 8, 8) * 2 - 1
    assert baseline(lr).shape == features_only(lr).shape == (1, 3, 64, 64)
    for network in (baseline, features_only, parsing_only):
        assert infer_config(network.state_dict()) == network.config


def test_parsing_maps_shrink_by_area_and_grow_bicubically():
    onehot = torch.zeros(1, 19, 8, 8)
    onehot[:, 1, :, :4] = 1
    onehot[:, 2, :, 4:] = 1
    small = resize_parsing(onehot, 2)
    assert torch.allclose(small[0, 1], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # class fractions
    assert resize_parsing(onehot, 32).shape == (1, 19, 32, 32)
    with pytest.raises(ValueError):
        resize_parsing(torch.zeros(1, 19, 12, 12), 8)


def test_the_low_resolution_input_is_an_antialiased_sixteenth():
    hq = torch.rand(2, 3, 256, 256) * 2 - 1
    lr = make_low_resolution(hq, 16)
    assert lr.shape == (2, 3, 16, 16) and lr.min() >= -1 and lr.max() <= 1
    # antialiased: each pixel is close to its 16x16 block's mean (plain bicubic samples 4x4 px)
    blocks = torch.nn.functional.avg_pool2d(hq, 16)
    assert float((lr - blocks).abs().mean()) < 0.1


def test_training_inputs_are_shrunk_by_a_kernel_drawn_per_face():
    """A network trained on one way of shrinking does worse on faces shrunk another way, so
    the recipe can draw the kernel per face: area is the 16x16 block mean exactly."""
    hq = torch.rand(16, 3, 128, 128) * 2 - 1
    area = make_low_resolution(hq, 8, "area")
    assert torch.allclose(area, torch.nn.functional.avg_pool2d(hq, 16), atol=1e-6)
    bicubic = make_low_resolution(hq, 8, "bicubic")
    mixed = mixed_low_resolution(hq, 8, ["bicubic", "area"], torch.Generator().manual_seed(0))
    from_area = [bool(torch.equal(mixed[i], area[i])) for i in range(16)]
    from_bicubic = [bool(torch.equal(mixed[i], bicubic[i])) for i in range(16)]
    assert all(a != b for a, b in zip(from_area, from_bicubic)) and 0 < sum(from_area) < 16
    again = mixed_low_resolution(hq, 8, ["bicubic", "area"], torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again)  # reproducible from the step's seed


def test_a_stylegan2_generator_loads_as_the_prior_bank(tmp_path):
    network = CFGPFSSRNet(**TINY)
    stylegan = StyleGAN2Generator(64, 16, 2, channel_multiplier=1, narrow=1 / 32, flavour="original")
    torch.save({"params_ema": stylegan.state_dict()}, tmp_path / "stylegan2.pth")
    load_prior(network, tmp_path / "stylegan2.pth")
    assert all(torch.equal(network.bank.state_dict()[key], value) for key, value in stylegan.state_dict().items())
    # a GFP-GAN file's decoder works too; another size is one line
    other = StyleGAN2Generator(128, 16, 2, channel_multiplier=1, narrow=1 / 32, flavour="original")
    torch.save({"params_ema": {f"stylegan_decoder.{k}": v for k, v in other.state_dict().items()}}, tmp_path / "o.pth")
    with pytest.raises(WeightsError, match="another size or width"):
        load_prior(network, tmp_path / "o.pth")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return copy_faces(tmp_path_factory.mktemp("faces"), 8)


@pytest.fixture(scope="module")
def parser_file(tmp_path_factory):
    """A small PSFR-GAN parser file (as `facefix train psfrgan-parse` writes) at 32 px, the
    enlarged input's size for a 64 px output."""
    card = parser_card()  # found through the registry, as the plugin finds it
    config = dict(in_size=32, out_size=32, min_feat_size=8, base_ch=8, parsing_ch=19, res_depth=1, ch_range=(8, 16))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("parser") / "parser.pth"
    torch.save({"params_ema": card.architecture(config).state_dict(), "config": config}, path)
    return path


TRAIN = ["--size", "64", "--scale", "8", "--rrdb-blocks", "1", "--rrdb-channels", "8", "--width", "0.03125",
         "--style-dim", "16", "--batch-size", "2", "--workers", "0", "--iters", "2", "--val-every", "2",
         "--quiet"]


def test_train_with_a_frozen_prior_restore_and_export(faces, parser_file, tmp_path, shared_weights):
    """`facefix train cfgpfssr` from a pretrained (here: saved) prior keeps the bank fixed and
    trains the rest; the file carries its parser, so restore and export need nothing else."""
    stylegan = StyleGAN2Generator(64, 16, 8, channel_multiplier=2, narrow=1 / 32, flavour="original")
    torch.save({"params_ema": stylegan.state_dict()}, tmp_path / "prior.pth")
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "cfgpfssr", "--data", str(faces / "images"), "--out", str(run), *TRAIN,
        "--pretrained-prior", str(tmp_path / "prior.pth"), "--parser-weights", str(parser_file),
        "--model-dir", str(shared_weights)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_rows(run / "log.csv")
    for key in ("mse", "perceptual", "gan", "d"):
        assert np.isfinite(float(rows[-1][key])), key
    validation = read_rows(run / "val.csv")[-1]
    assert float(validation["psnr_bicubic"]) > 15 and np.isfinite(float(validation["psnr"]))
    final = torch.load(run / "final.pth", weights_only=True)
    average, trained = final["params_ema"], torch.load(run / "last.pth", weights_only=True)["models"]["generator"]
    for state in (average, trained):
        assert all(torch.equal(state[f"bank.{key}"], value) for key, value in stylegan.state_dict().items())
    # the trained parts moved: their running average lags behind them
    for prefix in ("trunk.", "sft_scale.", "decoder."):
        assert any(not torch.equal(trained[key], average[key]) for key in trained if key.startswith(prefix)), prefix
    assert final["config"]["in_size"] == 8 and "parser" in final

    face = shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")
    restored = CliRunner().invoke(cli, ["restore", str(face), str(tmp_path / "out"), "--aligned", "--weights",
                                        str(run / "final.pth"), "--backend", "torch"])
    assert restored.exit_code == 0, restored.output
    assert "restorer cfgpfssr [detected from final.pth]" in restored.output
    assert read_any(tmp_path / "out" / face.name).shape == (64, 64, 3)  # 8 px in, 8 times larger out
    exported = CliRunner().invoke(cli, ["export", "cfgpfssr", "--weights", str(run / "final.pth"), "-o",
                                        str(tmp_path / "cfgpfssr.onnx")])
    assert exported.exit_code == 0, exported.output
    assert float(exported.output.rsplit("= ", 1)[1].split()[0]) < 2 / 255  # onnxruntime vs torch, [-1, 1] units
    # parity at both settings (its SFT starts as the identity: 3 steps leave the fidelity little to move)
    assert_one_export_serves_every_fidelity(tmp_path / "cfgpfssr.onnx", "cfgpfssr", run / "final.pth", face,
                                            moves=False)

    # whole photo: every small face aligned at the input size, pasted back at 8x, the image 4x
    photo = shared_path("photos", "insightface_t1.jpg")
    group = CliRunner().invoke(cli, ["restore", str(photo), str(tmp_path / "group"), "--weights",
                                     str(run / "final.pth"), "--upscale", "4", "--backend", "onnx", "--quiet"])
    assert group.exit_code == 0, group.output
    source, output = read_any(photo), read_any(tmp_path / "group" / photo.name)
    assert output.shape == (4 * source.shape[0], 4 * source.shape[1], 3)


def test_the_gan_and_perceptual_terms_start_at_their_steps(faces, tmp_path, shared_weights):
    """Before ``gan_start`` the discriminator neither trains nor judges, before
    ``perceptual_start`` VGG is not asked: the first steps can be MSE alone; an unknown
    shrinking kernel is one line."""
    import json

    def run(name: str, recipe: dict) -> tuple[dict, list[dict]]:
        config = tmp_path / f"{name}.json"
        config.write_text(json.dumps({"log_every": 1, "recipe": recipe}))
        result = CliRunner().invoke(cli, ["train", "cfgpfssr", "--data", str(faces / "images"), "--out",
                                          str(tmp_path / name), *TRAIN, "--no-parsing", "--config", str(config),
                                          "--iters", "3", "--val-every", "0", "--model-dir", str(shared_weights)])
        assert result.exit_code == 0, result.output
        state = torch.load(tmp_path / name / "last.pth", weights_only=True)["models"]["discriminator"]
        return state, read_rows(tmp_path / name / "log.csv")

    never, _ = run("never", {"gan_start": 10})
    late, rows = run("late", {"gan_start": 2, "perceptual_start": 1, "down_kernels": ["area", "bicubic"]})
    assert [bool(row.get("gan")) for row in rows] == [False, False, True]
    assert [bool(row.get("perceptual")) for row in rows] == [False, True, True]
    # the same seed gives the same initial discriminator: only the late run's moved (at step 3)
    assert any(not torch.equal(never[key], late[key]) for key in never)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"recipe": {"down_kernels": ["lanczos"]}}))
    refused = CliRunner().invoke(cli, ["train", "cfgpfssr", "--data", str(faces / "images"), "--out",
                                       str(tmp_path / "bad"), *TRAIN, "--no-parsing", "--config", str(bad)])
    assert refused.exit_code == 1 and "down_kernels must name some of bicubic, area, bilinear" in refused.output


def test_oracle_parsing_needs_masks_and_the_ablation_needs_none(faces, parser_file, tmp_path, shared_weights):
    common = ["train", "cfgpfssr", "--data", str(faces / "images"), *TRAIN, "--no-perceptual", "--no-gan",
              "--model-dir", str(shared_weights)]
    missing = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "a")])
    assert missing.exit_code == 1 and "--masks (oracle parsing)" in missing.output
    assert "Traceback" not in missing.output
    oracle = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "b"), "--masks", str(faces / "masks")])
    assert oracle.exit_code == 0, oracle.output
    assert "parser" not in torch.load(tmp_path / "b" / "final.pth", weights_only=True)
    # a file without a parser, offline: one line on how to give its parsing prior, then given one
    face = shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")
    restore = ["restore", str(face), "--aligned", "--weights", str(tmp_path / "b" / "final.pth"),
               "--model-dir", str(tmp_path), "--backend", "torch", "--quiet"]
    offline = {"FACEFIX_OFFLINE": "1", "FACEFIX_HOME": str(tmp_path / "home")}
    refused = CliRunner().invoke(cli, [*restore, str(tmp_path / "o1")], env=offline)
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "carries no parser" in refused.output and "--parser psfrgan --parser-weights FILE" in refused.output
    given = CliRunner().invoke(cli, [*restore, str(tmp_path / "o2"), "--parser", "psfrgan", "--parser-weights",
                                     str(parser_file)], env=offline)
    assert given.exit_code == 0, given.output
    assert read_any(tmp_path / "o2" / face.name).shape == (64, 64, 3)
    exported = CliRunner().invoke(cli, ["export", "cfgpfssr", "--weights", str(tmp_path / "b" / "final.pth"),
                                        "--parser-weights", str(parser_file), "-o", str(tmp_path / "b.onnx")],
                                  env=offline)
    assert exported.exit_code == 0, exported.output
    assert float(exported.output.rsplit("= ", 1)[1].split()[0]) < 2 / 255
    baseline = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "c"), "--no-parsing", "--no-features"])
    assert baseline.exit_code == 0, baseline.output
    config = torch.load(tmp_path / "c" / "final.pth", weights_only=True)["config"]
    assert config["parsing"] is False and config["features"] is False


CHECKPOINT = PROJECT / "benchmarks" / "checkpoints" / "cfgpfssr_cpu_16x.pth"


def test_the_cpu_trained_checkpoint_beats_bicubic_on_held_out_faces(tmp_path, shared_weights):
    """The proof that `facefix train cfgpfssr` learns, re-checked on every run: the committed
    full-model checkpoint (benchmarks/README.md gives the command that made it) restores 8 px
    faces it never saw better than bicubic enlargement of the same faces, in PSNR, SSIM and
    LPIPS; it carries its parser, so `--weights` alone restores; its export agrees with it."""
    import json

    faces = tmp_path / "faces"
    faces.mkdir()
    for path in sorted(shared_path("faces", "val512", "images").iterdir())[:24]:
        (faces / path.name).symlink_to(path)
    runner = CliRunner()

    def run(*args: object) -> str:
        result = runner.invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("degrade", faces, tmp_path / "targets", "--preset", "none", "--size", 128, "--quiet")
    run("degrade", faces, tmp_path / "low", "--preset", "none", "--size", 8, "--quiet")
    run("degrade", tmp_path / "low", tmp_path / "bicubic", "--preset", "none", "--size", 128, "--quiet")
    run("restore", tmp_path / "low", tmp_path / "restored", "--aligned", "--weights", CHECKPOINT, "--quiet")

    def scores(folder: str) -> dict[str, float]:
        return json.loads(run("eval", tmp_path / folder, tmp_path / "targets", "--json", "--quiet", "--metrics",
                              "psnr,ssim,lpips", "--model-dir", shared_weights))["mean"]

    restored, bicubic = scores("restored"), scores("bicubic")
    assert restored["psnr"] > bicubic["psnr"] and restored["ssim"] > bicubic["ssim"], (restored, bicubic)
    assert restored["lpips"] < bicubic["lpips"], (restored, bicubic)

    exported = runner.invoke(cli, ["export", "cfgpfssr", "--weights", str(CHECKPOINT), "-o", str(tmp_path / "x.onnx"),
                                   "--sample", str(faces / sorted(path.name for path in faces.iterdir())[0])])
    assert exported.exit_code == 0, exported.output
    assert float(exported.output.rsplit("= ", 1)[1].split()[0]) < 1 / 255  # [-1, 1] units
    photo = shared_path("photos", "insightface_t1.jpg")
    group = runner.invoke(cli, ["restore", str(photo), str(tmp_path / "group"), "--weights", str(CHECKPOINT),
                                "--upscale", "4", "--quiet"])
    assert group.exit_code == 0, group.output
    source, output = read_any(photo), read_any(tmp_path / "group" / photo.name)
    assert output.shape == (4 * source.shape[0], 4 * source.shape[1], 3)
