"""PSFR-GAN: two network cards, the ``psfrgan`` parser (its LQ parsing network) and
the ``psfrgan`` restorer (the progressive semantic-aware style-transformation generator).

The restorer's files may carry the parser they were trained with; otherwise the released
parser is used, or, with ``--parser NAME``, that parser's maps
(:mod:`facefix_plugins.psfrgan.network`). ``facefix train psfrgan-parse`` trains the
parser, ``facefix train psfrgan`` the generator, ``facefix export psfrgan`` writes both
as one graph.
"""

from __future__ import annotations

import click

from facefix import NetworkCard, StateRule, Training, WeightsEntry, WeightsVariant, hookimpl, lazy

RELEASE = "https://github.com/chaofengc/PSFRGAN/releases/download/v0.1.0/"
LICENSE = "Apache-2.0 (PSFRGAN code); trained on FFHQ / CelebAMask-HQ: research, non-commercial"

# No digest is published for either file: unpinned, the digest is printed after download.
GENERATOR_WEIGHTS = WeightsEntry(
    name="psfrgan", filename="psfrgan_epoch15_net_G.pth", urls=(RELEASE + "psfrgan_epoch15_net_G.pth",),
    license=LICENSE, component="restorer:psfrgan",
    description="PSFR-GAN generator (512 px), release v0.1.0; no published digest: unpinned")
PARSER_WEIGHTS = WeightsEntry(
    name="psfrgan-parse", filename="parse_multi_iter_90000.pth", urls=(RELEASE + "parse_multi_iter_90000.pth",),
    license=LICENSE, component="parser:psfrgan",
    description="PSFR-GAN LQ face parser (512 px), release v0.1.0; no published digest: unpinned")

GENERATOR_OPTIONS = (
    ("--parser-weights", "parser_weights",
     {"type": click.Path(exists=True, dir_okay=False), "help": "Trained parser (psfrgan-parse) that parses the LQ "
      "inputs; stored in final.pth. Without it the generator is conditioned on the --masks labels."}),
    ("--max-channels", "max_channels", {"type": int, "help": "Widest feature map (official: 1024)."}),
    ("--d-channels", "d_channels", {"type": int, "help": "First discriminator width (official: 64)."}),
    ("--perceptual-net", "perceptual_net", {"type": click.Choice(["vgg19", "vgg16"]),
                                            "help": "VGG of the semantic style loss (default vgg19, the reference's)."}),
    ("--lr", "lr_g", {"type": float, "help": "Generator learning rate (default 1e-4)."}),
    ("--no-style", "style", {"flag_value": False, "default": None,
                             "help": "No semantic-aware style loss (it needs VGG weights)."}),
    ("--no-gan", "gan", {"flag_value": False, "default": None,
                         "help": "No adversarial or feature-matching loss (pixel loss only)."}),
)
PARSER_OPTIONS = (
    ("--lr", "lr", {"type": float, "help": "Learning rate (default 2e-4)."}),
    ("--max-channels", "max_channels", {"type": int, "help": "Widest feature map (official: 256)."}),
    ("--base-channels", "base_channels", {"type": int, "help": "First layer width (official: 64)."}),
    ("--res-depth", "res_depth", {"type": int, "help": "Residual blocks at the bottleneck (official: 10)."}),
)

PARSER_CARD = NetworkCard(
    name="psfrgan",
    kind="parser",
    title="PSFR-GAN parser",
    description="PSFR-GAN's LQ face parser (trained on degraded faces)",
    architecture=lazy("facefix_plugins.psfrgan.network:build_parser"),
    recognise=StateRule(all_of=("encoder.0.conv2d.weight", "out_mask_conv.conv2d.weight")),
    infer_config=lazy("facefix_plugins.psfrgan.network:infer_parser_config"),
    input_size="in_size",
    exportable=False,  # exported with the generator, as one graph
    variants=(WeightsVariant("official", PARSER_WEIGHTS),),
    component=lazy("facefix_plugins.psfrgan.network:parser"),
    training=Training(
        recipe=lazy("facefix_plugins.psfrgan.train:PSFRParseRecipe"), command="psfrgan-parse", options=PARSER_OPTIONS,
        size=512,
        help="Train PSFR-GAN's parser on degraded faces against ground-truth masks (--masks); validation "
             "reports mean IoU over the 19 classes. Use the result with `--parser psfrgan --parser-weights` "
             "or `facefix train psfrgan --parser-weights`."),
    tiny_config=dict(in_size=32, out_size=32, min_feat_size=8, base_ch=8, parsing_ch=19, res_depth=1, ch_range=(8, 16)),
)

CARD = NetworkCard(
    name="psfrgan",
    title="PSFR-GAN generator",
    description="PSFR-GAN (512 px): parses the face, then semantic-aware style transformation",
    architecture=lazy("facefix_plugins.psfrgan.network:build_generator"),
    recognise=StateRule(all_of=("const_input", "img_out.weight_orig")),
    infer_config=lazy("facefix_plugins.psfrgan.network:infer_generator_config"),
    input_size="out_size",
    variants=(WeightsVariant("official", GENERATOR_WEIGHTS),),
    component=lazy("facefix_plugins.psfrgan.network:restorer"),
    carries={"parser": PARSER_CARD},
    uses=(PARSER_WEIGHTS.name,),
    training=Training(
        recipe=lazy("facefix_plugins.psfrgan.train:PSFRGANRecipe"), options=GENERATOR_OPTIONS, size=512,
        help="Train the PSFR-GAN generator (pixel + multi-scale feature matching + hinge GAN with 3 "
             "discriminators + semantic-aware style loss) on aligned faces; RUN_DIR/final.pth works with "
             "`facefix restore --weights`."),
    tiny_config=dict(out_size=32, min_feat_size=8, parse_ch=19, in_ch=3, out_ch=3, ch_range=(8, 16)),
)


@hookimpl
def register_networks(register):
    register(PARSER_CARD)
    register(CARD)
