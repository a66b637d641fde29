"""Adversarial losses, the R1 penalty and discriminator feature matching."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from facefix.training.losses.pixel import criterion_function


GAN_KINDS = ("softplus", "hinge", "vanilla")


def gan_loss(
    logits: torch.Tensor, target_is_real: bool, kind: str = "softplus", for_discriminator: bool = False
) -> torch.Tensor:
    """Adversarial loss of one discriminator output (mean over all elements).

    * ``softplus`` (non-saturating logistic, StyleGAN2/GFP-GAN): real ``softplus(-x)``,
      fake ``softplus(x)``; the same for D and G (G uses ``target_is_real=True``).
    * ``hinge`` (PSFR-GAN): D real ``relu(1 - x)``, D fake ``relu(1 + x)``; G ``-x``
      (``+x`` if asked for a fake target).
    * ``vanilla``: binary cross-entropy with logits against 1 (real) or 0 (fake).
    """
    if kind == "softplus":
        return F.softplus(-logits).mean() if target_is_real else F.softplus(logits).mean()
    if kind == "hinge":
        if for_discriminator:
            return F.relu(1 - logits).mean() if target_is_real else F.relu(1 + logits).mean()
        return -logits.mean() if target_is_real else logits.mean()
    if kind == "vanilla":
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_KINDS)}")


def multiscale_gan_loss(
    outputs: Sequence[Sequence[torch.Tensor]],
    target_is_real: bool,
    kind: str = "hinge",
    for_discriminator: bool = False,
) -> torch.Tensor:
    """:func:`gan_loss` of each scale's logits (``outputs[i][-1]``), averaged over scales
    (PSFR-GAN divides its sums by the number of discriminators)."""
    return sum(gan_loss(out[-1], target_is_real, kind, for_discriminator) for out in outputs) / len(outputs)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 regulariser: ``mean_b ‖∂(Σ logits)/∂x_b‖²``.

    ``real_images`` must have ``requires_grad=True`` before the discriminator ran on them.
    The graph is kept (``create_graph``) so the penalty can be backpropagated. GFP-GAN
    scales it by ``r1_weight / 2 * d_reg_every`` at the recipe level.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: real_images must require grad (call requires_grad_() before the discriminator)")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def feature_matching_loss(
    fake_features: Sequence[Sequence[torch.Tensor]],
    real_features: Sequence[Sequence[torch.Tensor]],
    criterion: str = "l1",
    include_logits: bool = False,
) -> torch.Tensor:
    """Discriminator feature matching: per discriminator, the sum over its intermediate
    features of ``criterion(fake, real.detach())``; averaged over discriminators.

    Each inner list is a discriminator's output as :class:`MultiScalePatchDiscriminator`
    returns it (last entry = logits, left out unless ``include_logits``). PSFR-GAN's
    reference uses MSE here (``criterion="l2"``).
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError("feature_matching_loss: need the same non-zero number of discriminators for fake and real")
    compare = criterion_function(criterion)
    total = 0.0
    for fake, real in zip(fake_features, real_features):
        stop = None if include_logits else -1
        total = total + sum(compare(f, r.detach()) for f, r in zip(fake[:stop], real[:stop]))
    return total / len(fake_features)
