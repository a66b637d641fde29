"""The identity loss: L1 between ArcFace embeddings of output and target."""

from __future__ import annotations


import torch
from torch import nn
from torch.nn import functional as F


def gray_resize_for_identity(images: torch.Tensor, size: int = 128) -> torch.Tensor:
    """GFP-GAN's identity preprocessing: ``0.2989 R + 0.5870 G + 0.1140 B`` on the
    ``[-1, 1]`` values (no rescaling, no crop: the whole aligned face), then bilinear
    resize to ``size x size`` (``align_corners=False``, no antialias)."""
    gray = 0.2989 * images[:, 0] + 0.5870 * images[:, 1] + 0.1140 * images[:, 2]
    return F.interpolate(gray[:, None], size=(size, size), mode="bilinear", align_corners=False)


class IdentityLoss(nn.Module):
    """L1 between ArcFace embeddings of output and target (target detached).

    The network is kept frozen and in eval mode (BatchNorm running statistics, no
    dropout), whatever ``train()`` is called with.
    """

    def __init__(self, network: nn.Module, size: int = 128) -> None:
        super().__init__()
        self.network = network
        self.size = size
        self.network.requires_grad_(False)
        self.network.eval()

    def train(self, mode: bool = True) -> IdentityLoss:
        return super().train(False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_embedding = self.network(gray_resize_for_identity(target, self.size))
        return F.l1_loss(self.network(gray_resize_for_identity(output, self.size)), target_embedding)
