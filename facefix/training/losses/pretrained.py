"""Where the loss networks' weights come from: the registry, never a download from here.

A missing or unreadable file becomes one :class:`~facefix.errors.WeightsError` line
that says how to get it, or how to train without that loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


from facefix.errors import WeightsError
from facefix.nn.arcface import load_arcface
from facefix.nn.vgg import VGG_LAYERS, VGGFeatures
from facefix.training.losses.identity import IdentityLoss
from facefix.weights import WeightsResolver


def resolve_with_hint(
    resolver: WeightsResolver | None, name: str, hint: str, explicit: Path | str | None = None
) -> Path:
    resolver = resolver if resolver is not None else WeightsResolver()
    try:
        return resolver.resolve(name, explicit)
    except WeightsError as error:
        raise WeightsError(f"{error}; or train with {hint}") from None


def build_vgg(
    resolver: WeightsResolver | None = None,
    arch: str = "vgg19",
    layers: Sequence[str] | None = None,
    explicit: Path | str | None = None,
    hint: str = "--no-perceptual",
) -> VGGFeatures:
    """:class:`VGGFeatures` with the registry's torchvision weights (``vgg19`` or ``vgg16``).

    A missing or unreadable file raises a one-line :class:`WeightsError` naming the file,
    how to get it, and ``or train with {hint}``.
    """
    if arch not in VGG_LAYERS:
        raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
    path = resolve_with_hint(resolver, arch, hint, explicit)
    try:
        return VGGFeatures(arch, layers, path)
    except WeightsError as error:
        raise WeightsError(f"{error}; or train with {hint}") from None


def build_identity(resolver: WeightsResolver | None = None, explicit: Path | str | None = None) -> IdentityLoss:
    """:class:`IdentityLoss` with the registry's ``arcface-resnet18`` weights; a missing or
    unreadable file raises a one-line :class:`WeightsError` ending ``or train with --no-identity``."""
    path = resolve_with_hint(resolver, "arcface-resnet18", "--no-identity", explicit)
    try:
        return IdentityLoss(load_arcface(path))
    except WeightsError as error:
        raise WeightsError(f"{error}; or train with --no-identity") from None
