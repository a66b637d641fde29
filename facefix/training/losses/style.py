"""PSFR-GAN's semantic-aware style loss: Gram matrices of VGG features per parsing class."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F


def semantic_style_loss(
    fake_feats: Sequence[torch.Tensor],
    real_feats: Sequence[torch.Tensor],
    masks: torch.Tensor,
    num_classes: int = 19,
    criterion: str = "l2",
    classes: str = "present",
    eps: float = 1e-8,
) -> torch.Tensor:
    """PSFR-GAN's semantic-aware style loss.

    For each feature map (PSFR-GAN: VGG19 ``relu3_1``, ``relu4_1``, ``relu5_1``) and
    each parsing class ``k``, the masked Gram matrix
    ``G_k = (F·m_k)(F·m_k)ᵀ / (C · (Σ m_k + eps))`` with the label map resized to the
    feature size (nearest); ``criterion`` (``l2`` as in the reference, or ``l1``)
    compares fake and real Grams (real detached). Per layer the loss is the mean over
    the (sample, class) pairs where the class is present in that sample's resized mask
    (``classes="present"``), or over all ``num_classes`` classes of every sample
    (``classes="all"``, the reference's normalisation; absent classes add zeros).
    Layers are summed, as in the reference.

    ``masks``: ``(N, H, W)`` integer labels (values outside ``[0, num_classes)`` are ignored).
    """
    if classes not in ("present", "all"):
        raise ValueError(f"semantic_style_loss: classes must be 'present' or 'all', got {classes!r}")
    distance = {"l1": lambda a, b: (a - b).abs(), "l2": lambda a, b: (a - b).square()}.get(criterion)
    if distance is None:
        raise ValueError(f"semantic_style_loss: criterion must be l1 or l2, got {criterion!r}")
    labels = masks.long()
    if labels.ndim == 4:
        labels = labels.squeeze(1)
    total = fake_feats[0].new_zeros(())
    for fake, real in zip(fake_feats, real_feats):
        batch, channels, height, width = fake.shape
        resized = F.interpolate(labels[:, None].float(), size=(height, width), mode="nearest").long()
        resized = resized.reshape(batch, height * width)
        fake_flat = fake.reshape(batch, channels, height * width)
        real_flat = real.detach().reshape(batch, channels, height * width)
        layer_sum = fake.new_zeros(())
        pairs = 0
        for k in torch.unique(resized).tolist():
            if not 0 <= k < num_classes:
                continue
            mask = (resized == k).to(fake.dtype)[:, None, :]  # (B, 1, HW)
            area = mask.sum(dim=2, keepdim=True)  # (B, 1, 1)
            present = area.flatten() > 0
            fake_masked = fake_flat * mask
            real_masked = real_flat * mask
            fake_gram = torch.bmm(fake_masked, fake_masked.transpose(1, 2)) / (channels * (area + eps))
            real_gram = torch.bmm(real_masked, real_masked.transpose(1, 2)) / (channels * (area + eps))
            per_sample = distance(fake_gram, real_gram).mean(dim=(1, 2))
            layer_sum = layer_sum + per_sample[present].sum()
            pairs += int(present.sum())
        denominator = batch * num_classes if classes == "all" else max(pairs, 1)
        total = total + layer_sum / denominator
    return total
