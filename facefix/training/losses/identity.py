"""The identity loss: L1 between face-identity embeddings of output and target.

The embedding network is ArcFace (GFP-GAN's, :mod:`facefix.nn.arcface`) or SFace
(:mod:`facefix.nn.sface`); each comes with the function that turns the training faces
(FFHQ-aligned RGB in [-1, 1]) into its input, differentiably.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from facefix.nn.arcface import gray_resize_for_identity


class IdentityLoss(nn.Module):
    """L1 between embeddings of output and target (target detached).

    The network is kept frozen and in eval mode (BatchNorm running statistics, no
    dropout), whatever ``train()`` is called with. ``prepare`` maps ``(B, 3, S, S)``
    faces in [-1, 1] to the network's input (default: ArcFace's gray 128 px).
    """

    def __init__(self, network: nn.Module, prepare: Callable[[torch.Tensor], torch.Tensor] = gray_resize_for_identity
                 ) -> None:
        super().__init__()
        self.network = network
        self.prepare = prepare
        self.network.requires_grad_(False)
        self.network.eval()

    def train(self, mode: bool = True) -> IdentityLoss:
        return super().train(False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_embedding = self.network(self.prepare(target))
        return F.l1_loss(self.network(self.prepare(output)), target_embedding)
