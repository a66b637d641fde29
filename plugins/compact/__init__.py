"""facefix's own compact restorer: the default when no other restorer is available.

``compact`` restores 512 px aligned faces with a small residual U-Net
(:mod:`facefix_plugins.compact.arch`) whose weights ship inside facefix
(``weights/facefix_compact_v1.pth``, see ``weights/MODEL_CARD.md``), so it works on a
fresh install with no network. Its card gives ``facefix train compact``,
``facefix export compact`` and ``restore --weights FILE`` for any checkpoint it trained.
"""

from __future__ import annotations

import click

from facefix import NetworkCard, StateRule, Training, WeightsEntry, WeightsVariant, hookimpl, lazy


def _levels(ctx: click.Context, param: click.Parameter, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


TRAIN_OPTIONS = (
    ("--channels", "channels", {"callback": _levels, "help": "Channels per level, comma-separated (default 24,48,96,192)."}),
    ("--blocks", "blocks", {"callback": _levels,
                            "help": "Residual blocks per level on the way down (default 0,1,2,4)."}),
    ("--lr", "lr", {"type": float, "help": "Peak learning rate (default 2e-4; cosine decay to a tenth)."}),
    ("--crop", "crop", {"type": click.IntRange(min=0), "help": "Random crop of each degraded face (default 256; 0: whole)."}),
    ("--perceptual-weight", "perceptual_weight",
     {"type": click.FloatRange(min=0), "help": "Weight of the VGG perceptual loss beside L1 (default 0: off)."}),
    ("--perceptual-net", "perceptual_net", {"type": click.Choice(["vgg16", "vgg19"]),
                                            "help": "VGG for the perceptual loss (default vgg16)."}),
    ("--identity-weight", "identity_weight",
     {"type": click.FloatRange(min=0), "help": "Weight of the identity loss (default 0: off)."}),
    ("--identity-net", "identity_net", {"type": click.Choice(["sface", "arcface"]),
                                        "help": "Identity network (default sface)."}),
    ("--init", "init", {"type": click.Path(exists=True, dir_okay=False),
                        "help": "Start from this compact checkpoint (its architecture wins over --channels/--blocks)."}),
)

V1 = WeightsEntry(
    name="compact-v1", filename="facefix_compact_v1.pth", urls=(),
    sha256="008d721d4a727c7ee5b2fe431f38eedb72f3b08863693e07adab49ee088a61ad", size=7374037,
    license="research and non-commercial (trained on CelebA-HQ faces); see weights/MODEL_CARD.md",
    component="restorer:compact",
    description="facefix's compact restorer v1, trained by facefix on ../shared/faces/train512 (3,300 steps); "
                "ships inside facefix",
)

CARD = NetworkCard(
    name="compact",
    title="compact restorer",
    description="facefix's own small restorer (ships with facefix, works offline; fidelity, not GAN detail)",
    architecture=lazy("facefix_plugins.compact.arch:build"),
    recognise=StateRule(all_of=("head.weight", "head.bias", "tail.weight", "tail.bias")),
    infer_config=lazy("facefix_plugins.compact.arch:infer_config"),
    input_size=512,
    variants=(WeightsVariant("v1", V1),),
    rank=20,  # after GFP-GAN (when its weights are on disk): always there, so the offline default
    training=Training(
        recipe=lazy("facefix_plugins.compact.train:CompactRecipe"), options=TRAIN_OPTIONS, size=512,
        help="Train facefix's compact restorer (L1, gfpgan degradations); RUN_DIR/final.pth works with "
             "`facefix restore --weights` and `facefix export compact --weights`."),
    tiny_config={"channels": [8, 16], "blocks": [1, 1], "up_blocks": [1]},
)


@hookimpl
def register_networks(register):
    register(CARD)
