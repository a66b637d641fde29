"""PSFR-GAN as cards' networks: the parser and the generator, how files of each are
recognised and their configs read, and the components around them.

The restorer parses each low-quality face with its own parsing network, then restores
it conditioned on the one-hot map. With ``--parser NAME`` it takes that parser's labels
instead (every parser speaks CelebAMask-HQ's 19 classes).

Weights files load with ``strict=True`` under their own key names: the released
``psfrgan_epoch15_net_G.pth`` / ``parse_multi_iter_90000.pth`` (plain state dicts,
optionally with a ``module.`` prefix), and facefix's training output
(``{"params_ema": state, "config": {...}}``), whose generator files also carry the
parser they were trained with (``"parser"``), so ``--weights FILE`` alone restores.
Sizes and widths are read from the stored config, or else from the keys' shapes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.nn import functional as F

from facefix.components import ComponentContext, Normalization
from facefix.errors import WeightsError
from facefix.inference import SegmentationParser
from facefix.nn.parsing import labels_onehot
from facefix.networks import LoadedNetwork, load_network
from facefix.restorers import TorchRestorer
from facefix_plugins.psfrgan.arch import (
    OFFICIAL_PARSER_CONFIG,
    PSFRGenerator,
    PSFRParseNet,
    parsing_onehot,
)

_ENCODER = re.compile(r"^encoder\.(\d+)\.")
_BODY = re.compile(r"^body\.(\d+)\.")
_DECODER = re.compile(r"^decoder\.(\d+)\.")


# --------------------------------------------------------------------------- configs and builders


def _count(pattern: re.Pattern, state: Mapping[str, Any]) -> int:
    found = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(found) + 1 if found else 0


def infer_parser_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Parser options that reproduce ``state``'s layout; the input size assumes the
    released 32 px bottleneck (the network is convolutional: depth fixes only the ratio)."""
    if "encoder.0.conv2d.weight" not in state or "out_mask_conv.conv2d.weight" not in state:
        raise WeightsError("not a PSFR-GAN parser checkpoint: no encoder.0 / out_mask_conv weights")
    downs, ups = _count(_ENCODER, state) - 1, _count(_DECODER, state)
    # every conv's width but the two output heads' (the image and the 19 parsing classes)
    widths = [int(v.shape[0]) for k, v in state.items() if k.endswith("conv2d.weight") and not k.startswith("out_")]
    min_feat = OFFICIAL_PARSER_CONFIG["min_feat_size"]
    return dict(
        in_size=min_feat * 2**downs, out_size=min_feat * 2**ups, min_feat_size=min_feat,
        base_ch=int(state["encoder.0.conv2d.weight"].shape[0]), parsing_ch=int(state["out_mask_conv.conv2d.weight"].shape[0]),
        res_depth=_count(_BODY, state), ch_range=(min(widths), max(widths)),
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


def build_parser(config: Mapping[str, Any]) -> PSFRParseNet:
    return PSFRParseNet(**{**config, "ch_range": tuple(config["ch_range"])})


def build_generator(config: Mapping[str, Any]) -> PSFRGenerator:
    return PSFRGenerator(**{**config, "ch_range": tuple(config["ch_range"])})


# --------------------------------------------------------------------------- parser component


def parser(network: LoadedNetwork, context: ComponentContext, name: str) -> SegmentationParser:
    """The ``psfrgan`` parser: RGB in [-1, 1] at the network's size, CelebAMask-HQ labels out."""
    size = int(network.config["in_size"])
    # fully convolutional, halving ``in_size`` down to ``min_feat_size``: any multiple of that ratio runs
    multiple = size // min(size, int(network.config.get("min_feat_size", 32)))
    return SegmentationParser(network.module, network_size=size, normalization=Normalization(),
                              device=context.device, output_index=0, name=name, weights=network.path,
                              size_multiple=multiple)


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
                 external_parsing: bool, name: str = "psfrgan"):
        size = int(generator.config["out_size"])
        module = ParseAndRestore(parser, generator) if parser is not None else generator
        super().__init__(module, input_size=size, output_size=size, device=device, name=name, weights=weights)
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


def restorer(network: LoadedNetwork, context: ComponentContext, name: str) -> PSFRRestorer:
    """The generator, with the parser its file carries, else ``--parser-weights`` (export) or
    the released parser, unless ``--parser`` supplies the maps."""
    external = context.parser is not None
    parser_network = network.companions.get("parser")
    if parser_network is None and not external:
        parser_card = network.card.carries["parser"]
        # export's --parser-weights names the file; otherwise the released parser
        parser_file = context.parser_weights or context.resolve_weights(parser_card.default_variant.weights_name)
        parser_network = load_network(parser_card, parser_file)
    return PSFRRestorer(network.module, parser_network.module if parser_network is not None else None,
                        network.path, context.device, external_parsing=external, name=name)
