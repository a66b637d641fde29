"""Perceptual and Gram style losses on VGG features (basicsr's ``PerceptualLoss``)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from facefix.nn.vgg import DEFAULT_LAYER_WEIGHTS, VGG_LAYERS, VGGFeatures
from facefix.training.losses.pixel import criterion_function, gram_matrix
from facefix.training.losses.pretrained import build_vgg
from facefix.weights import WeightsResolver


class PerceptualLoss(nn.Module):
    """Perceptual and Gram style losses on VGG features (basicsr's ``PerceptualLoss``).

    ``forward(x, gt)`` returns ``(perceptual, style)``:

    * perceptual = ``perceptual_weight * Σ_l w_l · criterion(φ_l(x), φ_l(gt))``
    * style = ``style_weight * Σ_l w_l · criterion(G(φ_l(x)), G(φ_l(gt)))`` with
      :func:`gram_matrix` (normalised by ``C·H·W``).

    ``gt`` features are computed without gradient. A zero weight skips that term
    (returns a zero tensor). ``features``: a prebuilt :class:`VGGFeatures` (it must
    provide every layer of ``layer_weights``); otherwise one is built from ``arch`` and
    ``weights_path``. ``layer_weights`` defaults to ``DEFAULT_LAYER_WEIGHTS[arch]``.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] | None = None,
        style_weight: float = 0.0,
        criterion: str = "l1",
        perceptual_weight: float = 1.0,
        arch: str = "vgg19",
        weights_path: Path | str | None = None,
        features: VGGFeatures | None = None,
    ) -> None:
        super().__init__()
        if features is not None:
            arch = features.arch
        if layer_weights is None:
            layer_weights = DEFAULT_LAYER_WEIGHTS[arch]
        self.layer_weights = dict(layer_weights)
        self.style_weight = float(style_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.criterion_name = criterion
        self.criterion = criterion_function(criterion)
        if features is None:
            features = VGGFeatures(arch, tuple(self.layer_weights), weights_path)
        missing = set(self.layer_weights) - set(features.layers)
        if missing:
            raise ValueError(f"PerceptualLoss: the VGG features lack layers {', '.join(sorted(missing))}")
        self.vgg = features

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zero = x.new_zeros(())
        if self.perceptual_weight == 0 and self.style_weight == 0:
            return zero, zero
        x_features = self.vgg(x)
        with torch.no_grad():
            gt_features = self.vgg(gt.detach())
        perceptual, style = zero, zero
        if self.perceptual_weight:
            perceptual = self.perceptual_weight * sum(
                weight * self.criterion(x_features[name], gt_features[name])
                for name, weight in self.layer_weights.items()
            )
        if self.style_weight:
            style = self.style_weight * sum(
                weight * self.criterion(gram_matrix(x_features[name]), gram_matrix(gt_features[name]))
                for name, weight in self.layer_weights.items()
            )
        return perceptual, style


def build_perceptual(
    resolver: WeightsResolver | None = None,
    arch: str = "vgg19",
    layer_weights: Mapping[str, float] | None = None,
    style_weight: float = 0.0,
    criterion: str = "l1",
    perceptual_weight: float = 1.0,
    explicit: Path | str | None = None,
) -> PerceptualLoss:
    """:class:`PerceptualLoss` on pretrained VGG (resolved from the registry; see :func:`build_vgg`)."""
    if arch not in VGG_LAYERS:
        raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
    if layer_weights is None:
        layer_weights = DEFAULT_LAYER_WEIGHTS[arch]
    features = build_vgg(resolver, arch, tuple(layer_weights), explicit, "--no-perceptual")
    return PerceptualLoss(layer_weights, style_weight, criterion, perceptual_weight, features=features)
