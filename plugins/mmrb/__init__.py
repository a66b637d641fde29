"""MMRB: the pose-varied face restorer (Hu et al. 2022), an asymmetric codec with mixed
multi-path residual blocks feeding a StyleGAN2 prior through concatenated noise
branches (:mod:`facefix_plugins.mmrb.arch`).

No MMRB weights were ever released, so the restorer runs from ``--weights FILE``
(``facefix train mmrb``'s ``final.pth``, the architecture read from the file). The
registry knows the files that do exist: GPEN's BFR-512 generator and discriminator,
which ``facefix train mmrb --pretrained-prior`` / ``--pretrained-discriminator`` start from.
"""

from __future__ import annotations

import click

from facefix import NetworkCard, StateRule, Training, WeightsEntry, hookimpl, lazy

GPEN = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models/"
GPEN_LICENSE = "GPEN (Alibaba): academic and non-commercial use only"
# No digest is published for either file: unpinned, the digest is printed after download.
GPEN_GENERATOR = WeightsEntry(
    name="gpen-bfr-512", filename="GPEN-BFR-512.pth", urls=(GPEN + "GPEN-BFR-512.pth",), license=GPEN_LICENSE,
    component="prior:mmrb",
    description="GPEN-BFR-512 generator: the encoder convs and concat-noise StyleGAN2 MMRB starts from "
                "(--pretrained-prior); no published digest: unpinned")
GPEN_DISCRIMINATOR = WeightsEntry(
    name="gpen-bfr-512-d", filename="GPEN-BFR-512-D.pth", urls=(GPEN + "GPEN-BFR-512-D.pth",), license=GPEN_LICENSE,
    component="prior:mmrb",
    description="GPEN-BFR-512 discriminator: MMRB's FreezeD-fine-tuned global discriminator "
                "(--pretrained-discriminator); no published digest: unpinned")

TRAIN_OPTIONS = (
    ("--no-mmrb", "mmrb", {"flag_value": False, "default": None,
                           "help": "Plain residual blocks where the MMRBs are (the paper's ablation, Table 5 a)."}),
    ("--width", "width", {"type": float, "help": "Channel width factor (1 = the paper's; 0.25 trains on a CPU)."}),
    ("--channel-multiplier", "channel_multiplier", {"type": float, "help": "StyleGAN2 channel multiplier (paper: 2)."}),
    ("--style-dim", "style_dim", {"type": int, "help": "Latent width (paper: 512)."}),
    ("--d-width", "d_width", {"type": float, "help": "Global discriminator width factor (default 1)."}),
    ("--pretrained-prior", "pretrained_prior", {
        "type": click.Path(exists=True, dir_okay=False),
        "help": "GPEN-BFR generator (gpen-bfr-512) or an additive StyleGAN2 (widened function-preservingly)."}),
    ("--pretrained-discriminator", "pretrained_discriminator", {
        "type": click.Path(exists=True, dir_okay=False),
        "help": "GPEN-BFR discriminator (gpen-bfr-512-d); FreezeD then freezes its first blocks."}),
    ("--freeze-d-blocks", "freeze_d_blocks", {
        "type": click.IntRange(min=0),
        "help": "FreezeD: the global discriminator's first blocks kept fixed (default: 5 at 512 px with a "
                "pretrained discriminator, else 0)."}),
    ("--perceptual-net", "perceptual_net", {"type": click.Choice(["vgg19", "vgg16"]),
                                            "help": "VGG of the feature-matching loss (default vgg19)."}),
    ("--identity-net", "identity_net", {"type": click.Choice(["arcface", "sface"]),
                                        "help": "Network of the face-preserving loss (default arcface, the paper's)."}),
    ("--lr", "lr_codec", {"type": float, "help": "Codec learning rate (paper 2e-3; default 2e-4 from scratch)."}),
    ("--no-gan", "gan", {"flag_value": False, "default": None, "help": "No global adversarial loss."}),
    ("--no-local-d", "local_d", {"flag_value": False, "default": None, "help": "No eye/mouth discriminators."}),
    ("--no-feature-matching", "feature_matching", {"flag_value": False, "default": None,
                                                   "help": "No VGG feature-matching loss."}),
    ("--no-identity", "identity", {"flag_value": False, "default": None, "help": "No face-preserving loss."}),
)

CARD = NetworkCard(
    name="mmrb",
    title="MMRB restorer",
    description="MMRB (pose-varied, 512 px): codec with mixed multi-path residual blocks + concat-noise StyleGAN2",
    architecture=lazy("facefix_plugins.mmrb.network:build"),
    recognise=StateRule(all_of=("ecd0.0.weight", "final_linear.weight", "prior.style_conv1.noise_weight")),
    infer_config=lazy("facefix_plugins.mmrb.network:infer_config"),
    input_size="out_size",
    component=lazy("facefix_plugins.mmrb.network:restorer"),
    training=Training(
        recipe=lazy("facefix_plugins.mmrb.train:MMRBRecipe"), options=TRAIN_OPTIONS, size=512,
        help="Train MMRB on aligned faces (mmrb degradations): L1 8, pyramid L1 1, global GAN 0.5 (FreezeD with a "
             "pretrained discriminator), eye/mouth GAN 3, VGG feature matching 0.02, identity 10, per-part "
             "learning rates, piece-wise decay; RUN_DIR/final.pth works with `facefix restore --weights` and "
             "`facefix export mmrb --weights`."),
    tiny_config=dict(out_size=32, style_dim=32, num_mlp=2, channel_multiplier=1, narrow=1 / 16, mmrb=True,
                     lr_mlp=0.01),
)


@hookimpl
def register_networks(register):
    register(CARD)


@hookimpl
def register_weights(register):
    register(GPEN_GENERATOR)
    register(GPEN_DISCRIMINATOR)
