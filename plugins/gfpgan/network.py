"""GFP-GAN as a card's network: which checkpoints are GFP-GAN's, the config a file's
keys imply, the builder, and the restorer around it.

Users' own checkpoint files load as they are (any of :mod:`facefix.checkpoints`'
wrappings, ``strict=True``); the architecture and its size are read from the file's
keys and shapes, so ``--weights`` takes any file of a supported layout.

``--fidelity`` scales the channel-split SFT conditioning: 1 (default) is the
reference network's output exactly; towards 0 the face comes more and more from the
StyleGAN2 prior alone (the latent code still comes from the input). The reference
implementation's ``weight`` argument does nothing; this one really moves the output.
"""

from __future__ import annotations

import inspect
import itertools
import re
from typing import Any, Mapping

import torch

from facefix.components import ComponentContext
from facefix.errors import WeightsError
from facefix.networks import LoadedNetwork
from facefix.restorers import ImageOnly, TorchRestorer
from facefix_plugins.gfpgan.arch import OFFICIAL_CONFIGS, GFPGANv1, GFPGANv1Clean

ARCHITECTURES = {"original": GFPGANv1, "clean": GFPGANv1Clean}
_TO_RGB = re.compile(r"^stylegan_decoder\.to_rgbs\.(\d+)\.")
_STYLE_MLP = re.compile(r"^stylegan_decoder\.style_mlp\.(\d+)\.weight$")


def detect_architecture(state: Mapping[str, Any]) -> str:
    """``original`` or ``clean``, from the layout of the U-Net's first down block."""
    if "conv_body_down.0.conv1.0.weight" in state:
        return "original"
    if "conv_body_down.0.conv1.weight" in state:
        return "clean"
    raise WeightsError("not a GFP-GAN checkpoint: it has no conv_body_down.0.conv1 weights")


def _constructor_args(arch: str) -> set[str]:
    return set(inspect.signature(ARCHITECTURES[arch].__init__).parameters) - {"self"}


def build(config: Mapping[str, Any]) -> torch.nn.Module:
    """The network of a config (``arch`` picks original or clean; other keys are its options)."""
    arch = config["arch"]
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown GFP-GAN arch {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**{k: v for k, v in config.items() if k in _constructor_args(arch)})


def _shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        candidate = build(config)
    return {key: tuple(value.shape) for key, value in candidate.state_dict().items()}


def infer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments that reproduce ``state``'s keys and shapes exactly.

    Size, style width and MLP depth are read off directly; channel multiplier, width
    (narrow) and the switches that change shapes are found by building candidates on
    the meta device (no memory, no time) until one matches every key and shape.
    """
    arch = detect_architecture(state)
    rgb_layers = {int(m.group(1)) for key in state if (m := _TO_RGB.match(key))}
    if not rgb_layers:
        raise WeightsError("not a GFP-GAN checkpoint: no stylegan_decoder.to_rgbs weights")
    out_size = 2 ** (max(rgb_layers) + 3)
    mlp_layers = sorted(int(m.group(1)) for key in state if (m := _STYLE_MLP.match(key)))
    num_style_feat = int(state[f"stylegan_decoder.style_mlp.{mlp_layers[-1]}.weight"].shape[0])
    wanted = {key: tuple(value.shape) for key, value in state.items()}
    base = dict(OFFICIAL_CONFIGS[arch], arch=arch, out_size=out_size, num_style_feat=num_style_feat,
                num_mlp=len(mlp_layers))
    best, best_matches = base, -1
    for multiplier, narrow, different_w, sft_half in itertools.product(
        (base["channel_multiplier"], 1, 2, 4), (1, 0.5, 0.25, 0.125, 1 / 16), (True, False), (True, False)
    ):
        config = dict(base, channel_multiplier=multiplier, narrow=narrow, different_w=different_w, sft_half=sft_half)
        shapes = _shapes(config)
        if shapes == wanted:
            return config
        matches = sum(wanted.get(key) == shape for key, shape in shapes.items())
        if matches > best_matches:
            best, best_matches = config, matches
    return best  # the closest layout: loading then names what doesn't fit


def accepts_config(stored: Mapping[str, Any]) -> bool:
    """facefix's training export stores its config with ``arch``; anything else is re-inferred."""
    return "arch" in stored


def restorer(network: LoadedNetwork, context: ComponentContext, name: str) -> TorchRestorer:
    fidelity = 1.0 if context.fidelity is None else float(context.fidelity)
    network.module.fidelity = fidelity
    size = int(network.config["out_size"])
    # the fidelity is baked into a compiled package (part of its key); ONNX takes it as an input
    return TorchRestorer(ImageOnly(network.module), input_size=size, output_size=size, device=context.device,
                         name=name, weights=network.path, export_tag=str(network.module.fidelity),
                         fidelity_control=network.module)
