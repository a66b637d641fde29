"""Where the loss networks' weights come from: the registry, never a download from here.

A missing or unreadable file becomes one :class:`~facefix.errors.WeightsError` line
that says how to get it, or how to train without that loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


from facefix.errors import WeightsError
from facefix.nn.arcface import load_arcface
from facefix.nn.sface import load_sface, sface_input
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


#: identity network -> (registry name, loader, the input it wants from [-1, 1] faces)
IDENTITY_NETWORKS = ("arcface", "sface")


def build_identity(resolver: WeightsResolver | None = None, explicit: Path | str | None = None,
                   net: str = "arcface") -> IdentityLoss:
    """:class:`IdentityLoss` on ``arcface`` (GFP-GAN's ResNet-18, registry ``arcface-resnet18``)
    or ``sface`` (OpenCV Zoo's SFace ONNX file, registry ``sface``); a missing or unreadable
    file raises a one-line :class:`WeightsError` ending ``or train with --no-identity``."""
    if net not in IDENTITY_NETWORKS:
        raise ValueError(f"unknown identity network {net!r}; expected one of {', '.join(IDENTITY_NETWORKS)}")
    path = resolve_with_hint(resolver, "arcface-resnet18" if net == "arcface" else "sface", "--no-identity", explicit)
    try:
        if net == "arcface":
            return IdentityLoss(load_arcface(path))
        return IdentityLoss(load_sface(path), sface_input)
    except WeightsError as error:
        raise WeightsError(f"{error}; or train with --no-identity") from None
