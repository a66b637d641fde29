"""PSFR-GAN: the ``psfrgan`` face parser (its LQ parsing network) and the ``psfrgan``
restorer (the progressive semantic-aware style-transformation generator).

The restorer parses each low-quality face with its own parsing network, then restores
it conditioned on the one-hot map. With ``--parser NAME`` it takes that parser's labels
instead (every parser speaks CelebAMask-HQ's 19 classes).

Weights files load with ``strict=True`` under their own key names:

* the released ``psfrgan_epoch15_net_G.pth`` / ``parse_multi_iter_90000.pth``
  (plain state dicts, optionally with a ``module.`` prefix);
* facefix's own training output (``facefix train psfrgan`` / ``psfrgan-parse``):
  ``{"params_ema": state, "config": {...}}``; a generator checkpoint also carries the
  parser it was trained with (``"parser"``), so ``--weights FILE`` alone restores.

Sizes and widths are read from the stored config, or else from the keys' shapes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import click
import numpy as np
import torch
from torch.nn import functional as F

from facefix.components import ComponentContext, Normalization
from facefix.errors import WeightsError
from facefix.hookspecs import hookimpl
from facefix.inference import segment
from facefix.onnx import export_command
from facefix.restorers import TorchRestorer
from facefix.weights import WeightsEntry, layout_differences, load_state_dict
from facefix_plugins.psfrgan.arch import (
    OFFICIAL_PARSER_CONFIG,
    PARSE_CLASSES,
    PSFRGenerator,
    PSFRParseNet,
    parsing_onehot,
    strip_module_prefix,
)

GENERATOR_WEIGHTS = "psfrgan"
PARSER_WEIGHTS = "psfrgan-parse"
RELEASE = "https://github.com/chaofengc/PSFRGAN/releases/download/v0.1.0/"
LICENSE = "Apache-2.0 (PSFRGAN code); trained on FFHQ / CelebAMask-HQ: research, non-commercial"

_ENCODER = re.compile(r"^encoder\.(\d+)\.")
_BODY = re.compile(r"^body\.(\d+)\.")
_DECODER = re.compile(r"^decoder\.(\d+)\.")


@hookimpl
def register_weights(register):
    # No digest is published for either file: unpinned, the digest is printed after download.
    register(WeightsEntry(
        name=GENERATOR_WEIGHTS, filename="psfrgan_epoch15_net_G.pth", urls=(RELEASE + "psfrgan_epoch15_net_G.pth",),
        license=LICENSE, component="restorer:psfrgan",
        description="PSFR-GAN generator (512 px), release v0.1.0; no published digest: unpinned"))
    register(WeightsEntry(
        name=PARSER_WEIGHTS, filename="parse_multi_iter_90000.pth", urls=(RELEASE + "parse_multi_iter_90000.pth",),
        license=LICENSE, component="parser:psfrgan",
        description="PSFR-GAN LQ face parser (512 px), release v0.1.0; no published digest: unpinned"))


# --------------------------------------------------------------------------- loading


def _checkpoint_state(checkpoint: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state dict, stored config or None) of a released or facefix checkpoint."""
    for key in ("params_ema", "params", "state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            config = checkpoint.get("config") if isinstance(checkpoint.get("config"), Mapping) else None
            return strip_module_prefix(checkpoint[key]), dict(config) if config else None
    return strip_module_prefix({k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}), None


def _count(pattern: re.Pattern, state: Mapping[str, Any]) -> int:
    found = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(found) + 1 if found else 0


def infer_parser_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Parser options that reproduce ``state``'s layout; the input size assumes the
    released 32 px bottleneck (the network is convolutional: depth fixes only the ratio)."""
    if "encoder.0.conv2d.weight" not in state or "out_mask_conv.conv2d.weight" not in state:
        raise WeightsError("not a PSFR-GAN parser checkpoint: no encoder.0 / out_mask_conv weights")
    downs, ups = _count(_ENCODER, state) - 1, _count(_DECODER, state)
    widths = [int(v.shape[0]) for k, v in state.items() if k.endswith("conv2d.weight")]
    min_feat = OFFICIAL_PARSER_CONFIG["min_feat_size"]
    return dict(
        in_size=min_feat * 2**downs, out_size=min_feat * 2**ups, min_feat_size=min_feat,
        base_ch=int(state["encoder.0.conv2d.weight"].shape[0]), parsing_ch=int(state["out_mask_conv.conv2d.weight"].shape[0]),
        res_depth=_count(_BODY, state), ch_range=(min(widths[:-2] or widths), max(widths)),
    )


def infer_generator_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Generator options that reproduce ``state``'s layout (sizes from the constant input
    and the number of upsampling stages, widths from the first and last convs)."""
    if "const_input" not in state or "img_out.weight_orig" not in state:
        raise WeightsError("not a PSFR-GAN generator checkpoint: no const_input / img_out weights")
    const = state["const_input"]
    min_feat = int(const.shape[-1])
    cond_ch = int(state["head.1.norm_0.conv1.0.weight_orig"].shape[1]) if "head.1.norm_0.conv1.0.weight_orig" in state else 22
    out_ch, last_ch = int(state["img_out.weight_orig"].shape[0]), int(state["img_out.weight_orig"].shape[1])
    return dict(out_size=min_feat * 2 ** _count(_BODY, state), min_feat_size=min_feat, parse_ch=cond_ch - 3, in_ch=3,
                out_ch=out_ch, ch_range=(last_ch, int(const.shape[1])))


def _build_strict(cls, config: dict[str, Any], state: dict[str, torch.Tensor], path: Path, what: str) -> torch.nn.Module:
    config = {**config, "ch_range": tuple(config["ch_range"])}
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in cls(**config).state_dict().items()}
    differences = layout_differences(expected, {k: tuple(v.shape) for k, v in state.items()})
    if differences:
        raise WeightsError(f"{path}: does not fit the PSFR-GAN {what}; {differences}")
    network = cls(**config)
    network.load_state_dict(state, strict=True)
    return network.eval()


def _parser_from(checkpoint: Mapping[str, Any], path: Path, what: str) -> PSFRParseNet:
    state, config = _checkpoint_state(checkpoint)
    try:
        config = config or infer_parser_config(state)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}") from None
    return _build_strict(PSFRParseNet, config, state, path, what)


def load_parser(path: Path) -> PSFRParseNet:
    """The parsing network of a parser checkpoint, or the parser carried by a generator checkpoint."""
    checkpoint = load_state_dict(path)
    if isinstance(checkpoint.get("parser"), Mapping):  # facefix generator checkpoint with its parser
        return _parser_from(checkpoint["parser"], path, "parser stored with the generator")
    return _parser_from(checkpoint, path, "parser")


def load_generator(path: Path) -> tuple[PSFRGenerator, PSFRParseNet | None]:
    """The generator of a checkpoint, and the parser stored with it (facefix checkpoints) or None."""
    checkpoint = load_state_dict(path)
    state, config = _checkpoint_state(checkpoint)
    try:
        config = config or infer_generator_config(state)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}") from None
    generator = _build_strict(PSFRGenerator, config, state, path, "generator")
    parser = None
    if isinstance(checkpoint.get("parser"), Mapping):
        parser = _parser_from(checkpoint["parser"], path, "parser stored with the generator")
    return generator, parser


# --------------------------------------------------------------------------- parser component


class PSFRParser:
    """The ``psfrgan`` parser: RGB in [-1, 1] at the network's size, CelebAMask-HQ labels out."""

    def __init__(self, network: PSFRParseNet, device: str):
        self.network = network.eval().to(device)
        self.device = device
        self.size = int(network.config["in_size"])

    def parse(self, faces: np.ndarray) -> np.ndarray:
        return segment(self.network, faces, network_size=self.size, normalization=Normalization(), device=self.device,
                       output_index=0)


def build_parser(context: ComponentContext) -> PSFRParser:
    return PSFRParser(load_parser(context.weights(PARSER_WEIGHTS)), context.device)


# --------------------------------------------------------------------------- restorer


def conditioning_map(parser: PSFRParseNet, lq: torch.Tensor) -> torch.Tensor:
    """The generator's one-hot parsing input for ``lq`` (RGB, [-1, 1]), at ``lq``'s size.

    The parser runs at its own input size; its map is brought back by nearest neighbour.
    """
    size, parser_size = lq.shape[-1], int(parser.config["in_size"])
    parser_input = lq if size == parser_size else F.interpolate(
        lq, size=(parser_size, parser_size), mode="bilinear", align_corners=False)
    onehot = parsing_onehot(parser(parser_input)[0])
    return onehot if onehot.shape[-1] == size else F.interpolate(onehot, size=(size, size), mode="nearest")


def labels_onehot(labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, H, W)`` CelebAMask-HQ labels → ``(N, 19, H, W)`` one-hot maps."""
    return F.one_hot(labels.long().clamp(0, PARSE_CLASSES - 1), PARSE_CLASSES).permute(0, 3, 1, 2).to(dtype)


class ParseAndRestore(torch.nn.Module):
    """Face in, face out: parse the LQ face, take the one-hot map, run the generator.

    One graph, so ``--backend onnx`` and ``facefix export psfrgan`` carry both networks.
    """

    def __init__(self, parser: PSFRParseNet, generator: PSFRGenerator):
        super().__init__()
        self.parser = parser
        self.generator = generator

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.generator(lq, conditioning_map(self.parser, lq))


class PSFRRestorer(TorchRestorer):
    def __init__(self, generator: PSFRGenerator, parser: PSFRParseNet | None, weights: Path, device: str,
                 external_parsing: bool):
        size = int(generator.config["out_size"])
        module = ParseAndRestore(parser, generator) if parser is not None else generator
        super().__init__(module, input_size=size, output_size=size, device=device, name="psfrgan", weights=weights)
        self.generator = generator
        # True when another parser (--parser) supplies the maps: the pipeline passes them in.
        self.needs_parsing = external_parsing

    def forward(self, batch: torch.Tensor, parsing: torch.Tensor | None = None) -> torch.Tensor:
        if parsing is None:
            return self.module(batch)
        return self.generator(batch, labels_onehot(parsing, batch.dtype))

    def export_module(self) -> torch.nn.Module:
        if not isinstance(self.module, ParseAndRestore):
            raise WeightsError("this PSFR-GAN restorer has no parser of its own to export with the generator")
        return self.module


def build_restorer(context: ComponentContext) -> PSFRRestorer:
    path = context.weights(GENERATOR_WEIGHTS)
    generator, parser = load_generator(path)
    external = context.options.get("parser") is not None
    if parser is None and not external:
        parser = load_parser(context.resolve_weights(PARSER_WEIGHTS))
    return PSFRRestorer(generator, parser, path, context.device, external_parsing=external)


@hookimpl
def register_parsers(register):
    register("psfrgan", build_parser, description="PSFR-GAN's LQ face parser (trained on degraded faces)",
             weights=(PARSER_WEIGHTS,))


@hookimpl
def register_restorers(register):
    register("psfrgan", build_restorer,
             description="PSFR-GAN (512 px): parses the face, then semantic-aware style transformation",
             weights=(GENERATOR_WEIGHTS, PARSER_WEIGHTS))


# --------------------------------------------------------------------------- commands


GENERATOR_OPTIONS = [
    ("--parser-weights", "parser_weights",
     {"type": click.Path(exists=True, dir_okay=False), "help": "Trained parser (psfrgan-parse) that parses the LQ "
      "inputs; stored in final.pth. Without it the generator is conditioned on the --masks labels."}),
    ("--max-channels", "max_channels", {"type": int, "help": "Widest feature map (official: 1024)."}),
    ("--d-channels", "d_channels", {"type": int, "help": "First discriminator width (official: 64)."}),
    ("--no-style", "style", {"flag_value": False, "default": None,
                             "help": "No semantic-aware style loss (it needs VGG19 weights)."}),
    ("--no-gan", "gan", {"flag_value": False, "default": None,
                         "help": "No adversarial or feature-matching loss (pixel loss only)."}),
]
PARSER_OPTIONS = [
    ("--max-channels", "max_channels", {"type": int, "help": "Widest feature map (official: 256)."}),
    ("--base-channels", "base_channels", {"type": int, "help": "First layer width (official: 64)."}),
    ("--res-depth", "res_depth", {"type": int, "help": "Residual blocks at the bottleneck (official: 10)."}),
]


def _generator_recipe():
    from facefix_plugins.psfrgan.train import PSFRGANRecipe  # training code loads only when training

    return PSFRGANRecipe()


def _parser_recipe():
    from facefix_plugins.psfrgan.train import PSFRParseRecipe

    return PSFRParseRecipe()


@hookimpl
def register_commands(train, export):
    from facefix.training.cli import train_command

    export.add_command(export_command("psfrgan", {"psfrgan": "psfrgan"}, "psfrgan"))
    train.add_command(train_command(
        "psfrgan", _generator_recipe, GENERATOR_OPTIONS, default_size=512,
        help_text="Train the PSFR-GAN generator (pixel + multi-scale feature matching + hinge GAN with 3 "
                  "discriminators + semantic-aware style loss) on aligned faces; RUN_DIR/final.pth works with "
                  "`facefix restore --restorer psfrgan --weights`."))
    train.add_command(train_command(
        "psfrgan-parse", _parser_recipe, PARSER_OPTIONS, default_size=512,
        help_text="Train PSFR-GAN's parser on degraded faces against ground-truth masks (--masks); validation "
                  "reports mean IoU over the 19 classes. Use the result with `--parser psfrgan --parser-weights` "
                  "or `facefix train psfrgan --parser-weights`."))


__all__ = ["PSFRParser", "PSFRRestorer", "ParseAndRestore", "load_generator", "load_parser"]
