"""A third-party-style parser plugin for tests: the small U-Net in ../shared/weights.

Its weights have no licence and are for tests only, so it ships nowhere: tests
register it inline, exactly as an outside plugin would, through ``register_parsers``.
Layout (from its keys): two conv blocks down, a bottleneck, two transposed-conv ups
with skip connections, 19 output channels at 256 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from facefix.components import Normalization
from facefix.hookspecs import hookimpl
from facefix.inference import SegmentationParser
from facefix.checkpoints import read_state

# Output channel j of the network is CelebAMask-HQ class LABELS[j] (../shared/README.md).
LABELS = np.array([0, 11, 6, 1, 9, 5, 2, 16, 8, 3, 12, 7, 14, 13, 10, 17, 18, 4, 15], np.uint8)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True))


class LightUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2, self.bottleneck = _block(3, 32), _block(32, 64), _block(64, 128)
        self.up1, self.dec1 = nn.ConvTranspose2d(128, 64, 2, stride=2), _block(128, 64)
        self.up2, self.dec2 = nn.ConvTranspose2d(64, 32, 2, stride=2), _block(64, 32)
        self.out = nn.Conv2d(32, 19, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d1 = self.dec1(torch.cat([self.up1(b), e2], 1))
        d2 = self.dec2(torch.cat([self.up2(d1), e1], 1))
        return self.out(d2)


def UNetParser(weights: Path) -> SegmentationParser:
    model = LightUNet()
    model.load_state_dict(read_state(weights), strict=True)
    # two 2x poolings: any multiple of 4 runs
    return SegmentationParser(model, network_size=256, normalization=Normalization(), label_map=LABELS,
                              name="unet-test", weights=weights, size_multiple=4)


class SharedUNetPlugin:
    """Register with ``pm.register(SharedUNetPlugin(path), name=...)``."""

    def __init__(self, weights: Path):
        self.weights = weights

    @hookimpl
    def register_parsers(self, register):
        register("unet-test", lambda context: UNetParser(self.weights),
                 description="test-only U-Net parser from ../shared")
