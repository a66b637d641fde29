"""Click parameter types facefix's commands share."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A float in a range that is also a number: click's ``FloatRange`` lets ``nan`` through
    (every comparison with it is false) and ``inf`` when the range is open, and ``--blend
    nan`` then pasted black faces. Both are a usage error (exit 2)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def finite(param_type: Any) -> Any:
    """``param_type`` with NaN and infinity refused, when it is a float or a float range
    (a plugin's recipe options are given as either); any other type unchanged."""
    if param_type is float or param_type is click.FLOAT:
        return FiniteFloat()
    if isinstance(param_type, click.FloatRange) and not isinstance(param_type, FiniteFloat):
        return FiniteFloat(param_type.min, param_type.max, min_open=param_type.min_open,
                           max_open=param_type.max_open, clamp=param_type.clamp)
    return param_type


class InputFile(click.Path):
    """A file a command reads: never a FIFO or a device, which would block the command or
    never end (``--onnx FIFO`` and ``train --config FIFO`` hung), nor a folder."""

    def __init__(self, exists: bool = True, path_type: Any = None):
        super().__init__(exists=exists, dir_okay=False, path_type=path_type)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from facefix.sources import not_a_regular_file

        path = super().convert(value, param, ctx)
        special = not_a_regular_file(path)
        if special:
            self.fail(f"{click.format_filename(path)!r}: {special}", param, ctx)
        return path


def input_file(param_type: Any) -> Any:
    """``param_type`` as an :class:`InputFile` when it is a click path to an existing file that
    is not a folder (a plugin's recipe options are given so), any other type unchanged."""
    if (isinstance(param_type, click.Path) and not isinstance(param_type, InputFile) and param_type.exists
            and not param_type.dir_okay):
        return InputFile(exists=True, path_type=param_type.type)
    return param_type


#: smaller tiles compute more context (the overlap read around each) than pixels: --bg-tile 1
#: ran for minutes on a 0.2 MP image
MIN_TILE = 64


class TileSize(click.ParamType):
    """A tile size in input pixels: 0 (the whole image at once) or at least :data:`MIN_TILE`."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        if number != 0 and number < MIN_TILE:
            self.fail(f"{number} is too small: tiles under {MIN_TILE} px spend more time on the context read "
                      f"around them than on their own pixels; give 0 (the whole image) or {MIN_TILE} and up.",
                      param, ctx)
        return number
