"""CFGPFSSR as a card's network: the config a file's keys imply, the face-parsing prior
in front of it, the restorer, and loading a pretrained StyleGAN2 as the prior bank.

The parsing prior (spec §1.6, V6) is a parser network card's network (PSFR-GAN's,
found through the registry, as any plugin's would be), run on the low-resolution face
enlarged bicubically to the parser's size (the paper's I_BIC: half the output size).
Files trained with ``--parser-weights`` carry that parser; otherwise ``--parser-weights``
(export) or the released ``psfrgan-parse`` weights are used, or, with ``--parser NAME``,
that parser's labels of the aligned face. Networks trained without parsing (the ablation) need none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.nn import functional as F

from facefix import plugins
from facefix.checkpoints import read_checkpoint
from facefix.components import ComponentContext
from facefix.errors import ComponentError, WeightsError
from facefix.networks import LoadedNetwork, load_network, network_from
from facefix.nn.parsing import labels_onehot, parser_logits, parsing_onehot
from facefix.restorers import TorchRestorer
from facefix_plugins.cfgpfssr.arch import CFGPFSSRNet

#: the parser network card of the parsing prior (V6), and the weights its restorer falls back to
PARSER_CARD_NAME = "psfrgan"
PARSER_WEIGHTS = "psfrgan-parse"

_BANK_MLP = re.compile(r"^bank\.style_mlp\.(\d+)\.weight$")
_RRDB = re.compile(r"^trunk\.body\.(\d+)\.")


def build(config: Mapping[str, Any]) -> CFGPFSSRNet:
    return CFGPFSSRNet(**config)


def infer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Sizes from the decoder and the bank's levels, widths from the trunk and the bank's
    constant, the SFT sources from which condition branches exist and their inputs."""
    if "trunk.conv_first.weight" not in state or "bank.constant_input.weight" not in state:
        raise WeightsError("not a CFGPFSSR checkpoint: no trunk / bank weights")
    levels = sum(1 for key in state if re.match(r"^bank\.to_rgbs\.\d+\.modulated_conv\.weight$", key))
    out_size = 2 ** (levels + 2)
    ups = sum(1 for key in state if re.match(r"^decoder\.\d+\.weight$", key))
    in_size = out_size // 2**ups
    width4 = int(state["bank.constant_input.weight"].shape[1])
    narrow = width4 / 512
    top_width = int(state["head.0.weight"].shape[1]) // 2  # the head reads [decoded, bank] at the output size
    # channel_plan: from 64 px up a width is (16384 / size) * multiplier * narrow
    multiplier = top_width / (16384 / out_size * narrow) if out_size >= 64 else 1
    style_dim = int(state["bank.style_mlp.1.weight"].shape[0])
    codes = int(state["to_latent.3.weight"].shape[0]) // style_dim
    top = str(out_size)
    parsing = f"sft_scale.{top}.0.weight" in state
    parse_classes = int(state[f"sft_scale.{top}.0.weight"].shape[1]) if parsing else 19
    first = state.get("sft_scale.4.0.weight")
    features = first is not None and int(first.shape[1]) - (parse_classes if parsing else 0) == width4
    return dict(out_size=out_size, in_size=in_size,
                rrdb_blocks=len({m.group(1) for key in state if (m := _RRDB.match(key))}),
                rrdb_channels=int(state["trunk.conv_first.weight"].shape[0]),
                rrdb_growth=int(state["trunk.body.0.blocks.0.convs.0.weight"].shape[0]),
                channel_multiplier=multiplier, narrow=narrow, style_dim=style_dim,
                num_mlp=sum(1 for key in state if _BANK_MLP.match(key)), latent_per_block=codes == levels + 1,
                features=features, parsing=parsing, head_channels=int(state["head.0.weight"].shape[0]),
                parse_classes=parse_classes)


def parser_card():
    """The registered parser card whose network is the parsing prior (one line if missing)."""
    for card in plugins.cards("parser"):
        if card.name == PARSER_CARD_NAME:
            return card
    raise ComponentError(f"cfgpfssr: its parsing prior needs the {PARSER_CARD_NAME!r} parser network, which no "
                         "installed plugin registers")


def parse_low_resolution(parser: torch.nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """The one-hot parsing map of ``lr`` enlarged bicubically to the parser's input size."""
    size = int(parser.config["in_size"])
    enlarged = F.interpolate(lr, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    return parsing_onehot(parser_logits(parser(enlarged)))


class ParseAndSuperResolve(torch.nn.Module):
    """Low-resolution face in, super-resolved face out, parser included: one graph for
    ``--backend onnx`` and ``facefix export cfgpfssr``."""

    def __init__(self, parser: torch.nn.Module | None, network: CFGPFSSRNet):
        super().__init__()
        self.parser = parser
        self.network = network

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        parsing = parse_low_resolution(self.parser, lr) if self.parser is not None else None
        return self.network(lr, parsing)


class CFGPFSSRRestorer(TorchRestorer):
    def __init__(self, network: CFGPFSSRNet, parser: torch.nn.Module | None, weights: Path, device: str,
                 external_parsing: bool, name: str):
        self.network = network
        super().__init__(ParseAndSuperResolve(parser, network), input_size=network.in_size,
                         output_size=network.out_size, device=device, name=name, weights=weights,
                         export_tag=str(network.fidelity), fidelity_control=network)
        # another parser (--parser) supplies labels of the aligned face: the pipeline passes them
        self.needs_parsing = external_parsing

    def forward(self, batch: torch.Tensor, parsing: torch.Tensor | None = None) -> torch.Tensor:
        if parsing is None or not self.network.uses_parsing:
            return self.module(batch)
        return self.network(batch, labels_onehot(parsing, batch.dtype))


def restorer(network: LoadedNetwork, context: ComponentContext, name: str) -> CFGPFSSRRestorer:
    """The network with the parser its file carries, else the released PSFR-GAN parser,
    unless ``--parser`` supplies the maps or the network takes none."""
    module: CFGPFSSRNet = network.module
    module.fidelity = 1.0 if context.fidelity is None else float(context.fidelity)
    external = context.parser is not None and module.uses_parsing
    parser = None
    if module.uses_parsing and not external:
        parser = carried_parser(network) or load_network(
            parser_card(), context.parser_weights or released_parser_weights(network, context)).module
    return CFGPFSSRRestorer(module, parser, network.path, context.device, external_parsing=external, name=name)


def released_parser_weights(network: LoadedNetwork, context: ComponentContext) -> Path:
    """The released parser's file, or one line on what else gives a file without a parser its maps."""
    try:
        return context.resolve_weights(PARSER_WEIGHTS)
    except WeightsError as error:
        raise WeightsError(f"{network.path}: carries no parser (trained on --masks) and {error}; give its parsing "
                           f"prior with --parser {PARSER_CARD_NAME} --parser-weights FILE (export: --parser-weights FILE)"
                           ) from None


def carried_parser(network: LoadedNetwork) -> torch.nn.Module | None:
    """The parser a training run stored beside the network (``"parser"``), if any."""
    inner = network.checkpoint.raw.get("parser")
    if inner is None:
        return None
    nested = next(c for c in network.checkpoint.nested() if c.raw is inner)
    return network_from(parser_card(), nested).module


def load_prior(network: CFGPFSSRNet, path: Path | str) -> None:
    """Load an FFHQ StyleGAN2 generator (basicsr / GFP-GAN key layout, original ops;
    a GFP-GAN file's ``stylegan_decoder.*``) into the prior bank, strictly."""
    state = {key.removeprefix("stylegan_decoder."): value for key, value in read_checkpoint(path).state.items()}
    own = network.bank.state_dict()
    if "constant_input.weight" not in state or "style_conv1.modulated_conv.weight" not in state:
        raise WeightsError(f"{path}: not a StyleGAN2 generator (no constant_input / style_conv1 weights)")
    missing = sorted(set(own) - set(state))
    # the generator's noise buffers are part of a released file; without them the bank keeps its own
    missing = [key for key in missing if not key.startswith("noises.")]
    reshaped = sorted(key for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape))
    extra = sorted(key for key in state if key not in own and not key.endswith(".kernel"))
    if missing or reshaped or extra:
        problem = (f"keys of another shape: {', '.join(reshaped[:4])}" if reshaped else
                   f"missing keys: {', '.join(missing[:4])}" if missing else f"keys it lacks: {', '.join(extra[:4])}")
        raise WeightsError(f"{path}: a StyleGAN2 of another size or width than this CFGPFSSR bank; {problem}")
    network.bank.load_state_dict({key: value for key, value in state.items() if key in own}, strict=False)
