"""facefix: plugin-based blind face restoration.

What a plugin needs is importable from here::

    from facefix import NetworkCard, WeightsVariant, WeightsEntry, StateRule, lazy, hookimpl

Importing this package loads no torch; the torch-backed names (``TorchRestorer``,
``load_network``, ``LoadedNetwork``) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from facefix.cards import NetworkCard, StateRule, Training, WeightsVariant, lazy
from facefix.components import (
    CELEBAMASK_CLASSES,
    LANDMARK_NAMES,
    ComponentContext,
    DetectedFace,
    Normalization,
    WeightsEntry,
)
from facefix.errors import ComponentError, FacefixError, InputError, WeightsError
from facefix.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "CELEBAMASK_CLASSES", "LANDMARK_NAMES", "ComponentContext", "ComponentError", "DetectedFace", "FacefixError",
    "InputError", "LoadedNetwork", "NetworkCard", "Normalization", "StateRule", "TorchRestorer", "Training",
    "WeightsEntry", "WeightsError", "WeightsVariant", "hookimpl", "lazy", "load_network",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    """The torch-backed part of the API, imported when first asked for."""
    if name == "TorchRestorer":
        from facefix.restorers import TorchRestorer

        return TorchRestorer
    if name in ("load_network", "LoadedNetwork"):
        from facefix import networks

        return getattr(networks, name)
    raise AttributeError(f"module 'facefix' has no attribute {name!r}")
