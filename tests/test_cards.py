"""Every registered network card keeps the contract: its files load back exactly, its
rule recognises them (and no other card's rule does), its component restores or parses
as the contracts say, and an exportable restorer runs the same in onnxruntime.

The cards are those the installed plugins register, so a new network is checked the
moment it is declared; each is built at its ``tiny_config``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix import compose, plugins
from facefix.cards import NetworkCard
from facefix.checkpoints import read_checkpoint
from facefix.cli import cli
from facefix.components import COMPONENT_KINDS, CELEBAMASK_CLASSES
from facefix.errors import WeightsError
from facefix.networks import load_network
from facefix.weights import WeightsResolver, sha256_file

CARDS = plugins.cards()
RESTORERS = [card for card in CARDS if card.kind == "restorer"]
EXPORTABLE = [card for card in RESTORERS if card.exportable]


def card_id(card: NetworkCard) -> str:
    return f"{card.kind}:{card.name}"


def tiny_network(card: NetworkCard, seed: int = 0) -> torch.nn.Module:
    """The card's network at its tiny config, every weight moved off its initial value
    (zero-initialised branches would otherwise hide half the network)."""
    torch.manual_seed(seed)
    network = card.architecture(dict(card.tiny_config))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return network.eval()


def tiny_checkpoint(card: NetworkCard, path: Path, seed: int = 0) -> Path:
    """A facefix-layout checkpoint of the tiny network, with the networks the card's files carry."""
    checkpoint = {"params_ema": tiny_network(card, seed).state_dict(), "config": dict(card.tiny_config)}
    for key, companion in card.carries.items():
        checkpoint[key] = {"params_ema": tiny_network(companion, seed + 1).state_dict(),
                           "config": dict(companion.tiny_config)}
    torch.save(checkpoint, path)
    return path


def spec_of(card: NetworkCard):
    """The component of the card's default variant (or its only one)."""
    default = card.default_variant
    return next(spec for spec in plugins.components(card.kind).values()
                if spec.card is card and (default is None or spec.tag == default.tag))


def test_the_built_in_cards_are_registered():
    assert {card_id(card) for card in CARDS} >= {"restorer:gfpgan", "restorer:psfrgan", "restorer:compact",
                                                 "parser:psfrgan"}


@pytest.mark.parametrize("card", CARDS, ids=card_id)
def test_files_load_back_exactly_in_every_wrapping(card, tmp_path):
    reference = tiny_network(card).state_dict()
    wrapped = {"stored config": {"params_ema": reference, "config": dict(card.tiny_config)},
               "raw params": {"params": reference, "config": dict(card.tiny_config)}}
    if card.infer_config is not None:  # released files carry no config: the keys must say it all
        wrapped["bare, DataParallel"] = {f"module.{key}": value for key, value in reference.items()}
    for label, content in wrapped.items():
        path = tmp_path / f"{label}.pth"
        torch.save(content, path)
        loaded = load_network(card, path).module.state_dict()
        assert set(loaded) == set(reference), label
        assert all(torch.equal(loaded[key], reference[key]) for key in reference), label


@pytest.mark.parametrize("card", CARDS, ids=card_id)
def test_the_rule_recognises_its_own_files_and_no_other_card_does(card):
    state = tiny_network(card).state_dict()
    assert card.recognise(state)
    others = [card_id(other) for other in CARDS if other is not card and other.recognise(state)]
    assert others == []


@pytest.mark.parametrize("card", CARDS, ids=card_id)
def test_a_file_that_does_not_fit_is_refused_in_one_line(card, tmp_path):
    state = dict(tiny_network(card).state_dict())
    # a key the rule doesn't look at: the file is still recognised, and then doesn't fit
    removable = [key for key in sorted(state) if card.recognise({k: v for k, v in state.items() if k != key})]
    dropped = removable[len(removable) // 2]
    state.pop(dropped)
    state["surprise.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"params_ema": state, "config": dict(card.tiny_config)}, path)
    with pytest.raises(WeightsError) as caught:
        load_network(card, path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "missing keys: " in message and dropped in message
    assert "unexpected keys: surprise.weight" in message
    torch.save({"something.else": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match=f"not a {card.title} checkpoint"):
        load_network(card, path)


@pytest.mark.parametrize("card", RESTORERS, ids=card_id)
def test_restorer_contract_and_architecture_detection(card, tmp_path):
    """Built through its generated component: uint8 faces of the declared sizes in and out,
    the same output every time and whatever the batch; ``--weights`` alone finds the card."""
    path = tiny_checkpoint(card, tmp_path / "tiny.pth")
    assert compose.detect_component(path).card is card
    restorer = compose.build(spec_of(card), device="cpu", resolver=WeightsResolver(allow_download=False),
                             weights_path=path)
    config = load_network(card, path).config
    assert (restorer.input_size, restorer.output_size) == (card.size(config, "input"), card.size(config, "output"))
    faces = np.random.default_rng(0).integers(0, 256, (2, restorer.input_size, restorer.input_size, 3), np.uint8)
    first = restorer.restore(faces)
    assert first.shape == (2, restorer.output_size, restorer.output_size, 3) and first.dtype == np.uint8
    assert np.array_equal(restorer.restore(faces), first)  # deterministic
    alone = restorer.restore(faces[1:])
    assert np.abs(alone.astype(int) - first[1:].astype(int)).max() <= 1  # a face doesn't depend on its batch


@pytest.mark.parametrize("card", EXPORTABLE, ids=card_id)
def test_onnx_export_runs_like_pytorch(card, tmp_path):
    from facefix.onnx import OnnxRestorer, export_restorer

    path = tiny_checkpoint(card, tmp_path / "tiny.pth")
    restorer = compose.build(spec_of(card), device="cpu", resolver=WeightsResolver(allow_download=False),
                             weights_path=path)
    report = export_restorer(restorer, tmp_path / "tiny.onnx", dynamic_batch=True)
    runner = OnnxRestorer(report.path, "cpu", restorer.normalization)
    faces = np.random.default_rng(1).integers(0, 256, (2, restorer.input_size, restorer.input_size, 3), np.uint8)
    difference = np.abs(runner.restore(faces).astype(int) - restorer.restore(faces).astype(int))
    assert difference.max() <= 1  # within one 8-bit level


@pytest.mark.parametrize("card", [card for card in CARDS if card.kind == "parser"], ids=card_id)
def test_parser_contract(card, tmp_path):
    path = tiny_checkpoint(card, tmp_path / "tiny.pth")
    parser = compose.build(spec_of(card), device="cpu", resolver=WeightsResolver(allow_download=False),
                           weights_path=path)
    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), np.uint8)
    labels = parser.parse(faces)
    assert labels.shape == (2, 48, 48) and labels.dtype == np.uint8
    assert labels.max() < len(CELEBAMASK_CLASSES)
    assert np.array_equal(parser.parse(faces), labels)


@pytest.mark.parametrize("card", [card for card in CARDS if card.kind == "upsampler"], ids=card_id)
def test_upsampler_contract_tiles_and_onnx(card, tmp_path):
    """Any image layout in, the same layout ``scale`` times larger out; tiles give the untiled
    image; ``--weights`` alone finds the card; the export has free height and width."""
    from facefix.upsamplers import OnnxUpsampler, export_upsampler

    path = tiny_checkpoint(card, tmp_path / "tiny.pth")
    assert compose.detect_component(path, kind="upsampler").card is card
    resolver = WeightsResolver(allow_download=False)
    whole = compose.build(spec_of(card), device="cpu", resolver=resolver, weights_path=path)
    tiled = compose.build(spec_of(card), device="cpu", resolver=resolver, weights_path=path,
                          selection=compose.ComponentSelection(upsampler_tile=8))
    image = np.random.default_rng(0).integers(0, 256, (21, 30, 3), np.uint8)
    output = whole.upscale(image)
    assert output.shape == (21 * whole.scale, 30 * whole.scale, 3) and output.dtype == np.uint8
    assert np.abs(tiled.upscale(image).astype(int) - output.astype(int)).max() <= 1
    for layout in (image[:, :, 0], np.dstack([image, image[:, :, :1]]), image.astype(np.uint16) * 257):
        enlarged = whole.upscale(layout)
        assert enlarged.shape[:2] == output.shape[:2] and enlarged.dtype == layout.dtype
        assert enlarged.ndim == layout.ndim and enlarged.shape[2:] == layout.shape[2:]
    report = export_upsampler(whole, tmp_path / "tiny.onnx")
    runner = OnnxUpsampler(report.path, scale=whole.scale, multiple=whole.multiple, device="cpu")
    assert np.abs(runner.upscale(image).astype(int) - output.astype(int)).max() <= 1


@pytest.mark.parametrize("card", CARDS, ids=card_id)
def test_weights_variants_are_complete_and_shipped_files_pinned(card):
    bundled = Path(str(importlib.resources.files("facefix_weights")))
    for entry in card.weights_entries():
        kind, _, component = entry.component.partition(":")
        assert kind in COMPONENT_KINDS and kind == card.kind and component
        assert entry.license and all(url.startswith("https://") for url in entry.urls)
        if not entry.urls:  # no download: the file ships with facefix, pinned
            shipped = bundled / entry.filename
            assert shipped.stat().st_size == entry.size and sha256_file(shipped) == entry.sha256
    for variant in card.variants:
        names = card.component_names(variant)
        assert f"{card.name}.{variant.tag}" in names
        assert plugins.get_component(card.kind, names[-1]).name == names[0]


@pytest.mark.parametrize("card", CARDS, ids=card_id)
def test_generated_commands(card):
    runner = CliRunner()
    if card.training is not None:
        result = runner.invoke(cli, ["train", card.train_command, "--help"])
        assert result.exit_code == 0 and "--data" in result.output
        for flag, _, _ in card.training.options:
            for name in flag.split("/"):  # an on/off pair lists both names
                assert name in result.output
    exported = runner.invoke(cli, ["export", card.name, "--help"])
    if card.kind in ("restorer", "upsampler") and card.exportable:
        assert exported.exit_code == 0 and "--weights" in exported.output
        for variant in card.variants:
            assert variant.tag in exported.output
    elif card.kind == "restorer":
        assert exported.exit_code != 0


def test_shipped_compact_file_is_recognised_and_loads_half_precision_as_float():
    from facefix.weights import bundled_dir, get_entry

    path = bundled_dir() / get_entry("compact-v1").filename
    assert compose.detect_component(path).name == "compact"
    assert read_checkpoint(path).state["head.weight"].dtype == torch.float16
    network = load_network(spec_of(next(c for c in CARDS if c.name == "compact")).card, path).module
    assert all(parameter.dtype == torch.float32 for parameter in network.parameters())


def test_variants_answer_to_name_dot_tag_and_their_older_names():
    for name, listed, weights in (("gfpgan", "gfpgan", "gfpgan-v1.4"), ("gfpgan.v1.4", "gfpgan", "gfpgan-v1.4"),
                                  ("gfpgan.v1.3", "gfpgan-v1.3", "gfpgan-v1.3"), ("gfpgan-v1", "gfpgan-v1", "gfpgan-v1"),
                                  ("compact.v1", "compact", "compact-v1")):
        spec = plugins.get_component("restorer", name)
        assert (spec.name, spec.weights[0]) == (listed, weights)
    # the default choice follows the cards' ranks: GFP-GAN first, then compact; passthrough last
    ranked = [spec.name for spec in compose.ranked("restorer") if spec.rank is not None]
    assert ranked[:2] == ["gfpgan", "compact"] and ranked[-1] == "passthrough"
