"""The psfrgan plugin: official files by their registry names, facefix checkpoints,
the parser as a component (with the parse blender), external parsers, training of both
networks, ONNX export of the pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix.cli import cli
from facefix.errors import WeightsError
from facefix.metrics.parsing import class_iou, confusion_matrix, mean_iou
from facefix.checkpoints import read_state
from facefix.weights import get_entry
from facefix.networks import load_network
from facefix_plugins.psfrgan import CARD, PARSER_CARD
from facefix_plugins.psfrgan.network import PSFRRestorer, infer_generator_config, infer_parser_config, labels_onehot
from facefix_plugins.psfrgan.arch import PSFRParseNet, official_generator, official_parser, parsing_onehot
from conftest import PROJECT, copy_faces, read_any, read_rows, shared_path

FIXTURES = PROJECT / "tests" / "fixtures" / "psfrgan"
ADELE = "gfpgan__inputs_cropped_faces_Adele_crop.png"


def load_generator(path):
    """The generator of a checkpoint, and the parser stored with it or None."""
    network = load_network(CARD, path)
    parser = network.companions.get("parser")
    return network.module, parser.module if parser is not None else None


def load_parser(path):
    return load_network(PARSER_CARD, path).module


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def golden(name):
    return read_state(FIXTURES / f"{name}.pth")


@pytest.fixture(scope="module")
def pair_checkpoint(tmp_path_factory):
    """A 64 px generator with its parser in facefix's checkpoint layout (reference weights)."""
    generator, parser = golden("generator_main"), golden("parser_small")
    config = {k: v for k, v in generator["config"].items() if k != "lq_size"}
    path = tmp_path_factory.mktemp("pair") / "psfrgan_pair.pth"
    torch.save({"params_ema": generator["state_dict"], "config": config,
                "parser": {"params_ema": parser["state_dict"], "config": parser["config"]}}, path)
    return path


@pytest.fixture(scope="module")
def parser_checkpoint(tmp_path_factory):
    parser = golden("parser_small")
    path = tmp_path_factory.mktemp("parser") / "parser.pth"
    torch.save({"params_ema": parser["state_dict"], "config": parser["config"]}, path)
    return path


def test_registry_entries_are_unpinned_release_files():
    for name, filename in (("psfrgan", "psfrgan_epoch15_net_G.pth"), ("psfrgan-parse", "parse_multi_iter_90000.pth")):
        entry = get_entry(name)
        assert entry.filename == filename and entry.sha256 is None
        assert entry.urls == (f"https://github.com/chaofengc/PSFRGAN/releases/download/v0.1.0/{filename}",)


def test_configs_are_inferred_from_official_layouts():
    with torch.device("meta"):
        generator, parser = official_generator(), official_parser()
    assert infer_generator_config(generator.state_dict()) == {**generator.config, "ch_range": (32, 1024)}
    inferred = infer_parser_config(parser.state_dict())
    assert inferred["in_size"] == 512 and inferred["res_depth"] == 10 and inferred["base_ch"] == 64
    with torch.device("meta"):  # an equivalent network: same keys and shapes
        rebuilt = PSFRParseNet(**inferred)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in parser.state_dict().items()}


@pytest.mark.parametrize("case", ["generator_main", "generator_alt"])
def test_plain_state_dicts_load_strictly_and_reproduce_the_reference(case, tmp_path):
    """Released files are bare state dicts (here with a DataParallel prefix): no config,
    so the layout is read from keys and shapes; the output must be the reference's."""
    data = golden(case)
    path = tmp_path / "net_G.pth"
    torch.save({f"module.{k}": v for k, v in data["state_dict"].items()}, path)
    generator, parser = load_generator(path)
    assert parser is None
    with torch.no_grad():
        output = generator(data["input"], data["parsing"])
    assert float((output - data["output"]).abs().max()) < 1e-4


def test_parser_checkpoint_reproduces_the_reference(parser_checkpoint):
    data = golden("parser_small")
    parser = load_parser(parser_checkpoint)
    with torch.no_grad():
        logits, image = parser(data["input"])
    assert float((logits - data["output"]).abs().max()) < 1e-4


def test_a_wrong_file_gets_one_line_naming_the_keys(tmp_path):
    state = dict(golden("generator_main")["state_dict"])
    state.pop("img_out.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as error:
        load_generator(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "missing keys: img_out.bias" in message and "unexpected keys: extra.weight" in message
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="not a PSFR-GAN generator"):
        load_generator(path)


def test_official_size_files_restore_from_a_model_dir(tmp_path):
    """Full-size networks (random weights) saved under the released file names and
    layout (bare state dicts) load with strict=True and restore an aligned face."""
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    torch.manual_seed(0)
    torch.save(official_generator().state_dict(), model_dir / "psfrgan_epoch15_net_G.pth")
    torch.save(official_parser().state_dict(), model_dir / "parse_multi_iter_90000.pth")
    face = shared_path("photos", ADELE)
    result = invoke("restore", face, tmp_path / "out", "--aligned", "--restorer", "psfrgan", "--model-dir", model_dir,
                    "--backend", "torch", "--quiet")
    assert result.exit_code == 0, result.output
    out = read_any(tmp_path / "out" / ADELE)
    assert out.shape == (512, 512, 3) and not np.array_equal(out, read_any(face))


def test_restorer_parses_with_its_own_network(pair_checkpoint):
    """The pair module equals: parser logits → one-hot → generator, on the same face."""
    from facefix import compose
    from facefix.weights import WeightsResolver

    spec = compose.choose("restorer", "psfrgan", WeightsResolver())
    restorer = compose.build(spec, device="cpu", resolver=WeightsResolver(), weights_path=pair_checkpoint)
    assert isinstance(restorer, PSFRRestorer) and not restorer.needs_parsing
    face = (np.random.default_rng(0).random((1, 64, 64, 3)) * 255).astype(np.uint8)
    generator, parser = load_generator(pair_checkpoint)
    x = torch.from_numpy(restorer.normalization.to_network(face))
    with torch.no_grad():
        expected = generator(x, parsing_onehot(parser(x)[0]))
    assert np.array_equal(restorer.restore(face), restorer.normalization.from_network(expected.numpy()))


def test_an_explicit_parser_feeds_the_restorer(pair_checkpoint, parser_checkpoint, tmp_path):
    face = shared_path("photos", ADELE)
    own = invoke("restore", face, tmp_path / "own", "--aligned", "--restorer", "psfrgan", "--weights", pair_checkpoint,
                 "--backend", "torch")
    assert own.exit_code == 0, own.output
    external = invoke("restore", face, tmp_path / "external", "--aligned", "--restorer", "psfrgan", "--weights",
                      pair_checkpoint, "--parser", "psfrgan", "--parser-weights", parser_checkpoint)
    assert external.exit_code == 0, external.output
    assert "parser psfrgan" in external.output and "(torch fp32)" in external.output  # auto: no ONNX for 2 inputs
    # the same parser network, once inside the restorer and once as the --parser component
    # (at the same size, its labels given to the restorer): the same restoration
    a, b = read_any(tmp_path / "own" / ADELE), read_any(tmp_path / "external" / ADELE)
    assert np.array_equal(a, b)
    refused = invoke("restore", face, tmp_path / "x", "--aligned", "--restorer", "psfrgan", "--weights",
                     pair_checkpoint, "--parser", "psfrgan", "--parser-weights", parser_checkpoint, "--backend", "onnx")
    assert refused.exit_code == 1 and "drop --parser or use --backend torch" in refused.output


def test_labels_onehot_matches_the_reference_one_hot():
    logits = torch.randn(2, 19, 8, 8)
    assert torch.equal(labels_onehot(logits.argmax(1)), parsing_onehot(logits))


def test_parse_blender_uses_the_psfrgan_parser(parser_checkpoint, tmp_path, shared_weights):
    photo = shared_path("photos", "insightface_t1.jpg")
    outputs = {}
    for blender in ("soft", "parse"):
        result = invoke("restore", photo, tmp_path / blender, "--restorer", "passthrough", "--blender", blender,
                        "--parser", "psfrgan", "--parser-weights", parser_checkpoint, "--model-dir", shared_weights,
                        "--quiet")
        assert result.exit_code == 0, result.output
        outputs[blender] = read_any(tmp_path / blender / photo.name)
    # the parse blender pastes by the parser's face mask, not the soft square one
    assert not np.array_equal(outputs["soft"], outputs["parse"])


def test_export_of_a_generator_alone_takes_its_parser_from_parser_weights(parser_checkpoint, tmp_path):
    """The file was ignored and the official parser's download tried instead (restore used it)."""
    generator = golden("generator_main")
    alone = tmp_path / "generator.pth"
    torch.save({"params_ema": generator["state_dict"],
                "config": {k: v for k, v in generator["config"].items() if k != "lq_size"}}, alone)
    offline = CliRunner(env={"FACEFIX_OFFLINE": "1", "FACEFIX_HOME": str(tmp_path / "home")})
    exported = offline.invoke(cli, ["export", "psfrgan", "--weights", str(alone), "--parser-weights",
                                    str(parser_checkpoint), "-o", str(tmp_path / "g.onnx"), "--model-dir",
                                    str(tmp_path)])
    assert exported.exit_code == 0, exported.output
    import onnx

    graph = onnx.load(str(tmp_path / "g.onnx"), load_external_data=False).graph
    assert any("parser" in item.name for item in graph.initializer)


def test_export_pair_then_onnx_backend_within_one_level(pair_checkpoint, tmp_path):
    face = shared_path("photos", ADELE)
    exported = invoke("export", "psfrgan", "--weights", pair_checkpoint, "-o", tmp_path / "pair.onnx", "--sample", face)
    assert exported.exit_code == 0, exported.output
    assert "ONNX checker passed" in exported.output
    import onnx

    graph = onnx.load(str(tmp_path / "pair.onnx"), load_external_data=False).graph
    initializers = {item.name for item in graph.initializer}
    assert any("parser" in name for name in initializers) and any("generator" in name for name in initializers)
    for backend in ("torch", "onnx"):
        extra = ["--backend", "onnx", "--onnx", tmp_path / "pair.onnx"] if backend == "onnx" else ["--backend", "torch"]
        result = invoke("restore", face, tmp_path / backend, "--aligned", "--restorer", "psfrgan", "--weights",
                        pair_checkpoint, "--quiet", *extra)
        assert result.exit_code == 0, result.output
    a, b = read_any(tmp_path / "torch" / ADELE), read_any(tmp_path / "onnx" / ADELE)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# --------------------------------------------------------------------------- metrics


def test_confusion_matrix_and_mean_iou_against_brute_force():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 5, (40, 40))
    predicted = np.where(rng.random((40, 40)) < 0.7, target, rng.integers(0, 5, (40, 40)))
    confusion = confusion_matrix(predicted, target, 19)
    assert confusion.sum() == 1600
    for k in range(5):
        union = np.logical_or(predicted == k, target == k).sum()
        assert class_iou(confusion)[k] == pytest.approx(np.logical_and(predicted == k, target == k).sum() / union)
    assert np.isnan(class_iou(confusion)[7])  # absent from both: not counted
    assert mean_iou(confusion) == pytest.approx(np.nanmean(class_iou(confusion)[:5]))
    assert mean_iou(confusion_matrix(target, target, 19)) == 1.0


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def small_faces(tmp_path_factory):
    """16 real faces with their masks."""
    return copy_faces(tmp_path_factory.mktemp("faces"), 16)


TINY_PARSER = ["--size", "64", "--batch-size", "2", "--workers", "0", "--base-channels", "16", "--max-channels", "32",
               "--res-depth", "1"]
TINY_GENERATOR = ["--size", "64", "--batch-size", "2", "--workers", "0", "--max-channels", "32", "--d-channels", "8"]


@pytest.fixture(scope="module")
def trained_parser(small_faces, tmp_path_factory):
    run = tmp_path_factory.mktemp("parse_run")
    result = invoke("train", "psfrgan-parse", "--data", small_faces / "images", "--masks", small_faces / "masks",
                    "--out", run, "--iters", "4", "--val-every", "4", "--quiet", *TINY_PARSER)
    assert result.exit_code == 0, result.output
    return run


def test_parser_training_reports_mean_iou_and_exports(trained_parser, tmp_path):
    rows = read_rows(trained_parser / "val.csv")
    assert [int(row["step"]) for row in rows] == [0, 4]  # the untrained baseline, then the trained network
    for row in rows:
        assert 0 <= float(row["miou"]) <= 1 and 0 <= float(row["pixel_accuracy"]) <= 1
    log = read_rows(trained_parser / "log.csv")[0]
    assert np.isfinite(float(log["cross_entropy"])) and np.isfinite(float(log["l1"]))
    parser = load_parser(trained_parser / "final.pth")
    assert parser.config["in_size"] == 64
    labels = invoke("restore", shared_path("photos", ADELE), tmp_path, "--aligned", "--restorer", "passthrough",
                    "--parser", "psfrgan", "--parser-weights", trained_parser / "final.pth", "--quiet")
    assert labels.exit_code == 0, labels.output


def test_parser_training_needs_masks(small_faces, tmp_path):
    result = invoke("train", "psfrgan-parse", "--data", small_faces / "images", "--out", tmp_path, "--iters", "1",
                    *TINY_PARSER)
    assert result.exit_code == 1 and "--masks" in result.output


def test_generator_training_with_the_trained_parser(small_faces, trained_parser, tmp_path, shared_weights):
    run = tmp_path / "run"
    result = invoke("train", "psfrgan", "--data", small_faces / "images", "--masks", small_faces / "masks",
                    "--parser-weights", trained_parser / "final.pth", "--no-style", "--out", run, "--iters", "3",
                    "--val-every", "3", "--quiet", *TINY_GENERATOR)
    assert result.exit_code == 0, result.output
    log = read_rows(run / "log.csv")[0]
    for key in ("l1", "feature_matching", "gan", "d", "g"):
        assert np.isfinite(float(log[key])), key
    val = read_rows(run / "val.csv")
    assert [int(row["step"]) for row in val] == [0, 3] and float(val[0]["psnr_lq"]) > 10
    checkpoint = torch.load(run / "final.pth", weights_only=True)
    assert set(checkpoint) == {"params_ema", "config", "parser"}  # the parser travels with the generator
    checkpoint_state = torch.load(run / "last.pth", weights_only=True)
    assert checkpoint_state["models"]["discriminator"]["discriminators.0.body.0.1.weight_orig"].shape[1] == 22
    photos = shared_path("photos")
    restored = invoke("restore", photos / "insightface_t1.jpg", tmp_path / "out", "--restorer", "psfrgan",
                      "--weights", run / "final.pth", "--model-dir", shared_weights, "--quiet")
    assert restored.exit_code == 0, restored.output
    assert "1 processed, 0 failed; 6 faces restored" in restored.output


def test_generator_training_needs_a_parser_or_masks_and_vgg_for_the_style_loss(small_faces, tmp_path):
    neither = invoke("train", "psfrgan", "--data", small_faces / "images", "--no-style", "--out", tmp_path / "a",
                     "--iters", "1", *TINY_GENERATOR)
    assert neither.exit_code == 1 and "--parser-weights" in neither.output
    no_vgg = invoke("train", "psfrgan", "--data", small_faces / "images", "--masks", small_faces / "masks",
                    "--model-dir", tmp_path, "--out", tmp_path / "b", "--iters", "1", *TINY_GENERATOR)
    assert no_vgg.exit_code == 1 and "--no-style" in no_vgg.output
    assert len(no_vgg.output.strip().splitlines()) == 1


def test_semantic_style_loss_runs_in_the_recipe(small_faces, tmp_path, monkeypatch):
    """With VGG19 present (random stand-in weights in torchvision's layout), the
    semantic-aware style loss is part of the generator's loss."""
    from facefix.training.losses import VGGFeatures

    vgg = VGGFeatures("vgg19", ("relu5_1",))
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    torch.save({f"features.{k}": v for k, v in vgg.features.state_dict().items()},
               model_dir / get_entry("vgg19").filename)
    monkeypatch.setenv("FACEFIX_OFFLINE", "1")
    result = invoke("train", "psfrgan", "--data", small_faces / "images", "--masks", small_faces / "masks",
                    "--model-dir", model_dir, "--out", tmp_path / "run", "--iters", "1", "--val-every", "0",
                    "--quiet", *TINY_GENERATOR)
    assert result.exit_code == 0, result.output
    assert float(read_rows(tmp_path / "run" / "log.csv")[0]["semantic_style"]) > 0
