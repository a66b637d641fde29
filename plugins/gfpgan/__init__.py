"""GFP-GAN: one network card, four released variants (tags v1.4, v1.3, v1.2, v1).

The clean architecture (v1.2/v1.3/v1.4) and the original one (v1, StyleGAN2's own ops)
are one network to facefix: the architecture, its size and width are read from each
file's keys (:mod:`facefix_plugins.gfpgan.network`). ``gfpgan`` is v1.4; the other
variants answer to ``gfpgan.TAG`` and to their earlier names (``gfpgan-v1.3``, ...).
"""

from __future__ import annotations

import click

from facefix import NetworkCard, StateRule, Training, WeightsEntry, WeightsVariant, hookimpl, lazy

RELEASES = "https://github.com/TencentARC/GFPGAN/releases/download/"
LICENSE = "Apache-2.0 (GFPGAN; StyleGAN2 parts under NVIDIA's licence)"


def _release(name: str, filename: str, release: str, sha256: str | None, size: int | None, component: str,
             description: str) -> WeightsEntry:
    return WeightsEntry(name=name, filename=filename, urls=(f"{RELEASES}{release}/{filename}",), sha256=sha256,
                        size=size, license=LICENSE, component=f"restorer:{component}", description=description)


VARIANTS = (
    WeightsVariant("v1.4", _release(
        "gfpgan-v1.4", "GFPGANv1.4.pth", "v1.3.4", "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        348632874, "gfpgan", "GFP-GAN v1.4, clean architecture, channel multiplier 2"),
        description="GFP-GAN v1.4 (clean, 512 px): the usual choice",
        names=("gfpgan", "gfpgan-v1.4")),  # listed as gfpgan; gfpgan-v1.4 as its weights and the others are named
    WeightsVariant("v1.3", _release(
        "gfpgan-v1.3", "GFPGANv1.3.pth", "v1.3.0", "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
        348632874, "gfpgan-v1.3", "GFP-GAN v1.3, clean architecture, channel multiplier 2"),
        description="GFP-GAN v1.3 (clean, 512 px): more natural, less sharp", names=("gfpgan-v1.3",)),
    WeightsVariant("v1.2", _release(
        "gfpgan-v1.2", "GFPGANCleanv1-NoCE-C2.pth", "v0.2.0",
        "29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c", None, "gfpgan-v1.2",
        "GFP-GAN v1.2 (CleanV1, no colourisation), channel multiplier 2"),
        description="GFP-GAN v1.2 / CleanV1-NoCE-C2 (clean, 512 px): sharper, no colourisation", names=("gfpgan-v1.2",)),
    WeightsVariant("v1", _release(
        "gfpgan-v1", "GFPGANv1.pth", "v0.1.0", None, None, "gfpgan-v1",
        "GFP-GAN v1 (original StyleGAN2 ops), channel multiplier 1; no published digest: unpinned"),
        description="GFP-GAN v1 (original StyleGAN2 ops, 512 px): also colourises", names=("gfpgan-v1",)),
)

TRAIN_OPTIONS = (
    ("--width", "width", {"type": float, "help": "Channel width factor (1 = official; 0.25 trains on a CPU)."}),
    ("--channel-multiplier", "channel_multiplier", {"type": int, "help": "StyleGAN2 channel multiplier (official: 2)."}),
    ("--style-dim", "num_style_feat", {"type": int, "help": "Latent width (official: 512)."}),
    ("--pretrained-prior", "pretrained_prior",
     {"type": click.Path(exists=True, dir_okay=False), "help": "StyleGAN2 generator weights for the decoder."}),
    ("--perceptual-net", "perceptual_net", {"type": click.Choice(["vgg19", "vgg16"]),
                                            "help": "VGG for the perceptual and style losses (default vgg19, the paper's)."}),
    ("--identity-net", "identity_net", {"type": click.Choice(["arcface", "sface"]),
                                        "help": "Network of the identity loss (default arcface, the paper's)."}),
    ("--lr", "lr_g", {"type": float, "help": "Generator learning rate (default 2e-3 with --pretrained-prior, else 2e-4)."}),
    ("--no-perceptual", "perceptual", {"flag_value": False, "default": None, "help": "No perceptual/style loss."}),
    ("--no-identity", "identity", {"flag_value": False, "default": None, "help": "No identity loss."}),
    ("--no-components", "components", {"flag_value": False, "default": None, "help": "No facial-component losses."}),
    ("--no-gan", "gan", {"flag_value": False, "default": None, "help": "No adversarial loss."}),
)

CARD = NetworkCard(
    name="gfpgan",
    title="GFP-GAN",
    description="GFP-GAN: StyleGAN2 prior with channel-split SFT (512 px)",
    architecture=lazy("facefix_plugins.gfpgan.network:build"),
    recognise=StateRule(all_of=("stylegan_decoder.constant_input.weight",),
                        any_of=("conv_body_down.0.conv1.weight", "conv_body_down.0.conv1.0.weight")),
    infer_config=lazy("facefix_plugins.gfpgan.network:infer_config"),
    accepts_config=lazy("facefix_plugins.gfpgan.network:accepts_config"),
    input_size="out_size",
    variants=VARIANTS,
    default_tag="v1.4",
    component=lazy("facefix_plugins.gfpgan.network:restorer"),
    rank=10,  # the first choice whenever its weights are on disk
    training=Training(
        recipe=lazy("facefix_plugins.gfpgan.train:GFPGANRecipe"), options=TRAIN_OPTIONS, size=512,
        help="Train GFP-GAN (clean architecture) on aligned faces; RUN_DIR/final.pth works with "
             "`facefix restore --weights` and `facefix export gfpgan --weights`."),
    tiny_config=dict(arch="clean", out_size=32, num_style_feat=16, channel_multiplier=1, num_mlp=2, narrow=1 / 16,
                     input_is_latent=True, different_w=True, sft_half=True),
)


@hookimpl
def register_networks(register):
    register(CARD)
