"""Pixel losses, and the comparisons feature losses share (criteria, Gram matrices).

Images are ``(B, 3, H, W)`` RGB tensors in ``[-1, 1]``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.nn import functional as F


def _reduce(loss: torch.Tensor, weight: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; expected mean, sum or none")
    if weight is not None:
        weight = weight.expand_as(loss)
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    # Weighted mean: average over where the weight is (basicsr's convention).
    return loss.sum() / weight.sum().clamp_min(1e-12)


def l1_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Elementwise ``|pred - target|``; ``weight`` broadcasts to it; a weighted mean divides by ``sum(weight)``."""
    return _reduce((pred - target).abs(), weight, reduction)


def mse_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Elementwise ``(pred - target)^2``; reductions as :func:`l1_loss`."""
    return _reduce((pred - target).square(), weight, reduction)


def image_pyramid(target: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """``target`` resized to each size, bilinear.

    Sizes reached by halving are built by successive 0.5x bilinear steps from the full
    image (GFP-GAN's ``construct_img_pyramid``); any other size is resized directly.
    """
    halvings = {tuple(target.shape[-2:]): target}
    current = target
    smallest = min((h * w for h, w in sizes), default=0)
    while current.shape[-2] % 2 == 0 and current.shape[-1] % 2 == 0 and current[0, 0].numel() > smallest:
        current = F.interpolate(current, scale_factor=0.5, mode="bilinear", align_corners=False)
        halvings[tuple(current.shape[-2:])] = current
    return [
        halvings[tuple(size)]
        if tuple(size) in halvings
        else F.interpolate(target, size=tuple(size), mode="bilinear", align_corners=False)
        for size in sizes
    ]


def pyramid_l1(outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """GFP-GAN's pyramid restoration loss: sum over intermediate RGB outputs of
    ``L1(output_i, target resized to output_i's size)`` (mean L1 per level)."""
    if not outputs:
        return target.new_zeros(())
    levels = image_pyramid(target, [tuple(out.shape[-2:]) for out in outputs])
    return sum(F.l1_loss(out, level) for out, level in zip(outputs, levels))


def criterion_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "l1":
        return F.l1_loss
    if name in ("l2", "mse"):
        return F.mse_loss
    if name == "fro":  # basicsr's option: Frobenius norm of the difference
        return lambda a, b: torch.linalg.vector_norm(a - b)
    raise ValueError(f"unknown criterion {name!r}; expected l1, l2 (mse) or fro")


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, C, C)``: ``F Fᵀ / (C·H·W)``."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)
