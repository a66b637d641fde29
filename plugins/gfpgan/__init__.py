"""GFP-GAN restorers: the released v1 (original StyleGAN2 ops) and clean v1.2/v1.3/v1.4.

Users' own checkpoint files load as they are (``params_ema``, else ``params``, else a
plain state dict, with ``strict=True``); the architecture and its size are read from
the file's keys and shapes, so ``--weights`` takes any file of a supported layout.

``--fidelity`` scales the channel-split SFT conditioning: 1 (default) is the
reference network's output exactly; towards 0 the face comes more and more from the
StyleGAN2 prior alone (the latent code still comes from the input). The reference
implementation's ``weight`` argument does nothing; this one really moves the output.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Mapping

import click
import torch

from facefix.components import ComponentContext
from facefix.errors import WeightsError
from facefix.hookspecs import hookimpl
from facefix.onnx import export_command
from facefix.restorers import TorchRestorer
from facefix.weights import layout_differences, load_state_dict
from facefix_plugins.gfpgan.arch import OFFICIAL_CONFIGS, GFPGANv1, GFPGANv1Clean, select_params

# restorer name -> (weights registry name, description)
VARIANTS = {
    "gfpgan": ("gfpgan-v1.4", "GFP-GAN v1.4 (clean, 512 px): the usual choice"),
    "gfpgan-v1.3": ("gfpgan-v1.3", "GFP-GAN v1.3 (clean, 512 px): more natural, less sharp"),
    "gfpgan-v1.2": ("gfpgan-v1.2", "GFP-GAN v1.2 / CleanV1-NoCE-C2 (clean, 512 px): sharper, no colourisation"),
    "gfpgan-v1": ("gfpgan-v1", "GFP-GAN v1 (original StyleGAN2 ops, 512 px): also colourises"),
}
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
    base = dict(OFFICIAL_CONFIGS[arch], out_size=out_size, num_style_feat=num_style_feat, num_mlp=len(mlp_layers))
    best, best_matches = base, -1
    for multiplier, narrow, different_w, sft_half in itertools.product(
        (base["channel_multiplier"], 1, 2, 4), (1, 0.5, 0.25, 0.125, 1 / 16), (True, False), (True, False)
    ):
        config = dict(base, channel_multiplier=multiplier, narrow=narrow, different_w=different_w, sft_half=sft_half)
        shapes = _shapes(arch, config)
        if shapes == wanted:
            return dict(config, arch=arch)
        matches = sum(wanted.get(key) == shape for key, shape in shapes.items())
        if matches > best_matches:
            best, best_matches = config, matches
    return dict(best, arch=arch)  # the closest layout: loading then names what doesn't fit


def _shapes(arch: str, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        candidate = ARCHITECTURES[arch](**{k: v for k, v in config.items() if k in _constructor_args(arch)})
    return {key: tuple(value.shape) for key, value in candidate.state_dict().items()}


def load_gfpgan(path: Path, fidelity: float = 1.0) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the network a checkpoint file describes and load it strictly."""
    checkpoint = load_state_dict(path)
    state = select_params(checkpoint)
    stored = checkpoint.get("config") if isinstance(checkpoint.get("config"), dict) else None
    try:
        config = dict(stored) if stored and "arch" in stored else infer_config(state)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}") from None
    arch = config.pop("arch")
    differences = layout_differences(_shapes(arch, config), {key: tuple(value.shape) for key, value in state.items()})
    if differences:
        raise WeightsError(f"{path}: does not fit the GFP-GAN {arch} architecture; {differences}")
    network = ARCHITECTURES[arch](**{k: v for k, v in config.items() if k in _constructor_args(arch)},
                                  fidelity=fidelity)
    network.load_state_dict(state, strict=True)
    return network, dict(config, arch=arch)


def _constructor_args(arch: str) -> set[str]:
    import inspect

    return set(inspect.signature(ARCHITECTURES[arch].__init__).parameters) - {"self"}


class _ImageOnly(torch.nn.Module):
    """The network without its intermediate RGB outputs: one input, one output (ONNX)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, return_rgb=False)[0]


class GFPGANRestorer(TorchRestorer):
    def __init__(self, network: torch.nn.Module, config: dict[str, Any], weights: Path, device: str, name: str):
        size = int(config["out_size"])
        super().__init__(_ImageOnly(network), input_size=size, output_size=size, device=device, name=name,
                         weights=weights)
        self.config = config

    def export_key(self) -> str:
        return f"{super().export_key()}:{self.module.network.fidelity}"  # fidelity is baked into the graph


def _factory(name: str, registry_name: str):
    def build(context: ComponentContext) -> GFPGANRestorer:
        path = context.weights(registry_name)
        fidelity = context.options.get("fidelity")
        network, config = load_gfpgan(path, 1.0 if fidelity is None else float(fidelity))
        return GFPGANRestorer(network, config, path, context.device, name)

    return build


@hookimpl
def register_restorers(register):
    for name, (registry_name, description) in VARIANTS.items():
        register(name, _factory(name, registry_name), description=description, weights=(registry_name,))


def _recipe():
    from facefix_plugins.gfpgan.train import GFPGANRecipe  # training code loads only when training

    return GFPGANRecipe()


TRAIN_OPTIONS = [
    ("--width", "width", {"type": float, "help": "Channel width factor (1 = official; 0.25 trains on a CPU)."}),
    ("--channel-multiplier", "channel_multiplier", {"type": int, "help": "StyleGAN2 channel multiplier (official: 2)."}),
    ("--style-dim", "num_style_feat", {"type": int, "help": "Latent width (official: 512)."}),
    ("--pretrained-prior", "pretrained_prior",
     {"type": click.Path(exists=True, dir_okay=False), "help": "StyleGAN2 generator weights for the decoder."}),
    ("--no-perceptual", "perceptual", {"flag_value": False, "default": None, "help": "No VGG19 perceptual/style loss."}),
    ("--no-identity", "identity", {"flag_value": False, "default": None, "help": "No ArcFace identity loss."}),
    ("--no-components", "components", {"flag_value": False, "default": None, "help": "No facial-component losses."}),
    ("--no-gan", "gan", {"flag_value": False, "default": None, "help": "No adversarial loss."}),
]


@hookimpl
def register_commands(train, export):
    from facefix.training.cli import train_command

    variants = {"v1.4": "gfpgan", "v1.3": "gfpgan-v1.3", "v1.2": "gfpgan-v1.2", "v1": "gfpgan-v1"}
    export.add_command(export_command("gfpgan", variants, "v1.4"))
    train.add_command(train_command(
        "gfpgan", _recipe, TRAIN_OPTIONS, default_size=512,
        help_text="Train GFP-GAN (clean architecture) on aligned faces; RUN_DIR/final.pth works with "
                  "`facefix restore --restorer gfpgan --weights` and `facefix export gfpgan --weights`."))


__all__ = ["GFPGANRestorer", "detect_architecture", "infer_config", "load_gfpgan"]
