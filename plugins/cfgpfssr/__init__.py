"""CFGPFSSR: 16x face super-resolution (Liu et al. 2024) from a StyleGAN2 prior bank
modulated by channel-split SFT on encoder features and a face-parsing map
(:mod:`facefix_plugins.cfgpfssr.arch`).

No CFGPFSSR weights were ever released, so the restorer runs from ``--weights FILE``
(``facefix train cfgpfssr``'s ``final.pth``, the architecture read from the file). It
takes small faces (64 px for a 1024 px output) and returns them 16 times larger; its
parsing prior is PSFR-GAN's parser, carried in the file when training used one.
"""

from __future__ import annotations

import click

from facefix import NetworkCard, StateRule, Training, hookimpl, lazy

TRAIN_OPTIONS = (
    ("--scale", "scale", {"type": click.IntRange(min=2), "help": "Super-resolution factor (paper: 16); the input "
                          "is --size / scale."}),
    ("--parser-weights", "parser_weights", {
        "type": click.Path(exists=True, dir_okay=False),
        "help": "Trained PSFR-GAN parser (psfrgan-parse) that parses the enlarged inputs, as at test time; stored "
                "in final.pth. Without it the parsing prior is the --masks labels (oracle parsing)."}),
    ("--no-parsing", "parsing", {"flag_value": False, "default": None,
                                 "help": "No parsing prior (the paper's Table 3 'CS-SFT_feature')."}),
    ("--no-features", "features", {"flag_value": False, "default": None,
                                   "help": "No encoder features in the SFT conditions (with --no-parsing: the "
                                           "paper's 'Baseline', latents only)."}),
    ("--rrdb-blocks", "rrdb_blocks", {"type": click.IntRange(min=1), "help": "RRDBs in the encoder trunk (23)."}),
    ("--rrdb-channels", "rrdb_channels", {"type": click.IntRange(min=1), "help": "Trunk width (64)."}),
    ("--width", "width", {"type": float, "help": "Prior bank width factor (1 = StyleGAN2 config-f)."}),
    ("--style-dim", "style_dim", {"type": int, "help": "Latent width (512)."}),
    ("--latent-per-block", "latent_per_block", {"is_flag": True, "default": None,
                                                "help": "One code per bank block instead of W+'s one per layer."}),
    ("--pretrained-prior", "pretrained_prior", {
        "type": click.Path(exists=True, dir_okay=False),
        "help": "FFHQ StyleGAN2 generator (basicsr / GFP-GAN layout, original ops) for the bank, which is then "
                "frozen (as the paper)."}),
    ("--pretrained-discriminator", "pretrained_discriminator", {
        "type": click.Path(exists=True, dir_okay=False), "help": "StyleGAN2 discriminator to start from."}),
    ("--fix-prior/--train-prior", "fix_prior", {"default": None,
                                                "help": "Freeze or train the bank (default: frozen exactly when "
                                                        "--pretrained-prior gives it)."}),
    ("--perceptual-net", "perceptual_net", {"type": click.Choice(["vgg16", "vgg19"]),
                                            "help": "VGG of the perceptual loss (default vgg16, the paper's)."}),
    ("--no-perceptual", "perceptual", {"flag_value": False, "default": None, "help": "No perceptual loss."}),
    ("--no-gan", "gan", {"flag_value": False, "default": None, "help": "No adversarial loss."}),
    ("--lr", "lr", {"type": float, "help": "Learning rate of network and discriminator (paper: 5e-5)."}),
)

CARD = NetworkCard(
    name="cfgpfssr",
    title="CFGPFSSR super-resolver",
    description="CFGPFSSR (16x face super-resolution, 64 → 1024 px): StyleGAN2 prior bank + CS-SFT on encoder "
                "features and a parsing map",
    architecture=lazy("facefix_plugins.cfgpfssr.network:build"),
    recognise=StateRule(all_of=("trunk.conv_first.weight", "to_latent.3.weight", "bank.constant_input.weight")),
    infer_config=lazy("facefix_plugins.cfgpfssr.network:infer_config"),
    input_size="in_size",
    output_size="out_size",
    component=lazy("facefix_plugins.cfgpfssr.network:restorer"),
    uses=("psfrgan-parse",),  # the released parser it falls back to (files may carry their own)
    training=Training(
        recipe=lazy("facefix_plugins.cfgpfssr.train:CFGPFSSRRecipe"), options=TRAIN_OPTIONS, size=1024,
        help="Train CFGPFSSR on aligned faces, each shrunk by antialiased bicubic to the input size: MSE + 1e-2 "
             "VGG16 perceptual + 1e-2 GAN (StyleGAN2 discriminator), Adam (0.9, 0.99) at 5e-5, cosine; the prior "
             "bank frozen when pretrained. RUN_DIR/final.pth works with `facefix restore --weights` and "
             "`facefix export cfgpfssr --weights`."),
    # without the parsing prior: its parser is another card's network, which the conformance
    # tests can't put in a file generically (tests/test_cfgpfssr.py runs the parser path)
    tiny_config=dict(out_size=64, in_size=8, rrdb_blocks=1, rrdb_channels=8, rrdb_growth=4, channel_multiplier=1,
                     narrow=1 / 32, style_dim=16, num_mlp=2, head_channels=8, parsing=False),
)


@hookimpl
def register_networks(register):
    register(CARD)
