"""MMRB as a card's network: the config a file's keys imply, the restorer, and the two
ways to start from a pretrained StyleGAN2 prior.

* :func:`load_gpen` takes a GPEN-BFR file (``yangxy/GPEN``'s ``FullGenerator``,
  ``GPEN-BFR-512.pth``): its encoder convs, latent layer and concat-noise StyleGAN2
  are this network's under other names (§4.3); the MMRBs, the decoder and its RGB
  heads stay as they are. Its discriminator file (``GPEN-BFR-512-D.pth``) loads into
  facefix's StyleGAN2 discriminator (:func:`gpen_discriminator_state`).
* :func:`load_additive_prior` takes an ordinary StyleGAN2 (basicsr / GFP-GAN layout,
  original ops) and widens every conv and ToRGB for the concatenated features with zero
  weights, so that the prior renders exactly what the additive one rendered without
  noise until training teaches it to use them (§1.6, U7).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch

from facefix.checkpoints import read_checkpoint
from facefix.components import ComponentContext
from facefix.errors import WeightsError
from facefix.networks import LoadedNetwork
from facefix.restorers import ImageOnly, TorchRestorer
from facefix_plugins.mmrb.arch import MMRBNet

_STYLE_MLP = re.compile(r"^prior\.style_mlp\.(\d+)\.weight$")


def build(config: Mapping[str, Any]) -> MMRBNet:
    return MMRBNet(**config)


def infer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Size from the number of decoder scales, widths from the first and last convs, the
    style width from the latent layer, MMRB or plain blocks from the blocks' keys."""
    levels = sum(1 for key in state if re.match(r"^to_rgbs\.\d+\.weight$", key))
    if not levels or "ecd0.0.weight" not in state:
        raise WeightsError("not an MMRB checkpoint: no ecd0 / to_rgbs weights")
    out_size = 2 ** (levels + 2)
    narrow = int(state["final_conv.0.weight"].shape[0]) / 512
    first = int(state["ecd0.0.weight"].shape[0])
    # channel_plan: widths above 32 px are (16384 / size) * multiplier * narrow
    multiplier = first / (16384 / out_size * narrow) if out_size >= 64 else 1
    return dict(out_size=out_size, style_dim=int(state["final_linear.weight"].shape[0]),
                num_mlp=sum(1 for key in state if _STYLE_MLP.match(key)), channel_multiplier=multiplier,
                narrow=narrow, mmrb="blocks.0.conv5_1.weight" in state, lr_mlp=0.01)


def restorer(network: LoadedNetwork, context: ComponentContext, name: str) -> TorchRestorer:
    network.module.fidelity = 1.0 if context.fidelity is None else float(context.fidelity)
    size = int(network.config["out_size"])
    # the fidelity is baked into a compiled package (part of its key); ONNX takes it as an input
    return TorchRestorer(ImageOnly(network.module), input_size=size, output_size=size, device=context.device,
                         name=name, weights=network.path, export_tag=str(network.module.fidelity),
                         fidelity_control=network.module)


# --------------------------------------------------------------------------- GPEN


def _gpen_style_conv(suffix: str) -> str:
    """The rest of a GPEN ``StyledConv`` key under facefix's ``StyleConvCat``."""
    return (suffix.replace("conv.", "modulated_conv.", 1) if suffix.startswith("conv.")
            else {"noise.weight": "noise_weight"}.get(suffix, suffix))


def gpen_key(key: str) -> str | None:
    """GPEN ``FullGenerator`` key → MMRB key (None: a blur kernel buffer, not a weight)."""
    if key.endswith(".kernel"):
        return None
    if key.startswith("generator."):
        rest = key[len("generator."):]
        if rest.startswith("style."):
            return "prior.style_mlp." + rest[len("style."):]
        if rest == "input.input":
            return "prior.constant_input.weight"
        if rest.startswith("conv1."):
            return "prior.style_conv1." + _gpen_style_conv(rest[len("conv1."):])
        if match := re.match(r"^convs\.(\d+)\.(.+)$", rest):
            return f"prior.style_convs.{match.group(1)}." + _gpen_style_conv(match.group(2))
        if match := re.match(r"^(to_rgb1|to_rgbs\.\d+)\.(.+)$", rest):
            suffix = match.group(2)
            return f"prior.{match.group(1)}." + (suffix.replace("conv.", "modulated_conv.", 1)
                                                 if suffix.startswith("conv.") else suffix)
        return None
    if match := re.match(r"^ecd0\.0\.(\d+)\.(.+)$", key):
        return f"ecd0.{match.group(1)}.{match.group(2)}"
    if match := re.match(r"^ecd(\d+)\.0\.(\d+)\.(.+)$", key):
        return f"encoder_convs.{int(match.group(1)) - 1}.{match.group(2)}.{match.group(3)}"
    if match := re.match(r"^final_linear\.0\.(.+)$", key):
        return f"final_linear.{match.group(1)}"
    return None


def load_gpen(network: MMRBNet, path: Path | str) -> list[str]:
    """Initialise ``network``'s encoder convs, latent layer and prior from a GPEN-BFR file
    of the same size and widths; returns the keys it set. One line if it doesn't fit."""
    state = read_checkpoint(path).state
    own = network.state_dict()
    mapped = {target: value for key, value in state.items() if (target := gpen_key(key)) is not None}
    if not any(key.startswith("prior.") for key in mapped):
        raise WeightsError(f"{path}: not a GPEN generator (no generator.style / generator.convs weights)")
    unknown = sorted(key for key in mapped if key not in own)
    reshaped = sorted(key for key in mapped if key in own and tuple(mapped[key].shape) != tuple(own[key].shape))
    if unknown or reshaped:
        problem = f"keys of another shape: {', '.join(reshaped[:4])}" if reshaped else \
            f"keys this network lacks: {', '.join(unknown[:4])}"
        raise WeightsError(f"{path}: a GPEN generator of another size or width than this MMRB network; {problem}")
    network.load_state_dict(mapped, strict=False)
    return sorted(mapped)


def gpen_discriminator_state(path: Path | str) -> dict[str, torch.Tensor]:
    """GPEN's ``Discriminator`` weights under facefix's StyleGAN2 discriminator's names."""
    state = read_checkpoint(path).state
    return {("conv_body." + key[len("convs."):] if key.startswith("convs.") else key): value
            for key, value in state.items() if not key.endswith(".kernel")}


# --------------------------------------------------------------------------- additive StyleGAN2


def load_additive_prior(network: MMRBNet, path: Path | str) -> None:
    """Widen an ordinary StyleGAN2 (``style_mlp``, ``constant_input``, ``style_conv1``,
    ``style_convs``, ``to_rgb1``, ``to_rgbs``; a GFP-GAN file's ``stylegan_decoder``) into
    the concat prior, function-preservingly: the concatenated half meets zero weights."""
    state = {key.removeprefix("stylegan_decoder."): value for key, value in read_checkpoint(path).state.items()}
    prior = network.prior.state_dict()
    if "constant_input.weight" not in state or "style_conv1.modulated_conv.weight" not in state:
        raise WeightsError(f"{path}: not a StyleGAN2 generator (no constant_input / style_conv1 weights)")
    widened: dict[str, torch.Tensor] = {}
    for key, target in prior.items():
        source = state.get(key)
        if key.endswith("noise_weight"):
            continue  # keeps its initial 1: the zero weights of the new channels preserve the output, and learn
        if source is None:
            raise WeightsError(f"{path}: a StyleGAN2 of another depth than this MMRB prior; missing {key}")
        value = torch.zeros_like(target)
        if key.endswith("modulation.bias"):
            value.fill_(1.0)  # a neutral style for the new input channels
        if source.shape == target.shape:
            value = source.clone()
        elif key.endswith("modulated_conv.weight"):  # (1, out, in, k, k) → (1, out, 2·in, k, k)
            # equalized lr scales a weight by 1/sqrt(fan_in) at run time: a doubled fan-in
            # would halve its power (demodulation cancels that; the ToRGBs would not)
            value[:, :, : source.shape[2]] = source * (target.shape[2] / source.shape[2]) ** 0.5
        elif key.endswith("modulation.weight") or key.endswith("modulation.bias") or key.endswith("activate.bias"):
            value[: source.shape[0]] = source
        else:
            raise WeightsError(f"{path}: {key} has shape {tuple(source.shape)}, expected {tuple(target.shape)}")
        widened[key] = value
    network.prior.load_state_dict(widened, strict=False)
