"""facefix's own compact restorer: the default when no other restorer is available.

``compact`` restores 512 px aligned faces with a small residual U-Net
(:mod:`facefix_plugins.compact.arch`) whose weights ship inside facefix
(``weights/facefix_compact_v1.pth``, see ``weights/MODEL_CARD.md``), so it works on a
fresh install with no network. ``facefix train compact`` trains it and ``facefix
export compact`` writes it to ONNX; ``--weights`` takes any checkpoint it trained.
"""

from __future__ import annotations

from pathlib import Path

import click

from facefix.components import ComponentContext
from facefix.errors import WeightsError
from facefix.hookspecs import hookimpl
from facefix.onnx import export_command
from facefix.restorers import TorchRestorer
from facefix.weights import layout_differences, load_state_dict
from facefix_plugins.compact.arch import CompactUNet

WEIGHTS_NAME = "compact-v1"
FACE_SIZE = 512


def load_compact(path: Path) -> CompactUNet:
    """The network a facefix checkpoint describes (``params_ema`` + ``config``), loaded
    strictly; half-precision files (the shipped one) are widened to float32."""
    checkpoint = load_state_dict(path)
    state, config = checkpoint.get("params_ema"), checkpoint.get("config")
    if not isinstance(state, dict) or not isinstance(config, dict):
        raise WeightsError(f"{path}: not a compact-restorer checkpoint (it needs 'params_ema' and 'config')")
    try:
        network = CompactUNet(**config)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{path}: bad compact-restorer config {config!r} ({error})") from None
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    differences = layout_differences(expected, {key: tuple(value.shape) for key, value in state.items()})
    if differences:
        raise WeightsError(f"{path}: does not fit the compact restorer of config {config}; {differences}")
    network.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
    return network


class CompactRestorer(TorchRestorer):
    def __init__(self, network: CompactUNet, weights: Path, device: str):
        super().__init__(network, input_size=FACE_SIZE, output_size=FACE_SIZE, device=device, name="compact",
                         weights=weights)


def _build(context: ComponentContext) -> CompactRestorer:
    path = context.weights(WEIGHTS_NAME)
    return CompactRestorer(load_compact(path), path, context.device)


@hookimpl
def register_restorers(register):
    register("compact", _build, weights=(WEIGHTS_NAME,),
             description="facefix's own small restorer (ships with facefix, works offline; fidelity, not GAN detail)")


def _recipe():
    from facefix_plugins.compact.train import CompactRecipe  # training code loads only when training

    return CompactRecipe()


def _levels(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


TRAIN_OPTIONS = [
    ("--channels", "channels", {"callback": lambda ctx, param, value: None if value is None else _levels(value),
                                "help": "Channels per level, comma-separated (default 24,48,96,192)."}),
    ("--blocks", "blocks", {"callback": lambda ctx, param, value: None if value is None else _levels(value),
                            "help": "Residual blocks per level on the way down (default 0,1,2,4)."}),
    ("--lr", "lr", {"type": float, "help": "Peak learning rate (default 5e-4; cosine decay to a tenth)."}),
    ("--crop", "crop", {"type": click.IntRange(min=0), "help": "Random crop of each degraded face (default 256; 0: whole)."}),
]


@hookimpl
def register_commands(train, export):
    from facefix.training.cli import train_command

    export.add_command(export_command("compact", {"v1": "compact"}, "v1"))
    train.add_command(train_command(
        "compact", _recipe, TRAIN_OPTIONS, default_size=FACE_SIZE,
        help_text="Train facefix's compact restorer (L1, gfpgan degradations); RUN_DIR/final.pth works with "
                  "`facefix restore --restorer compact --weights` and `facefix export compact --weights`."))


__all__ = ["CompactRestorer", "load_compact"]
