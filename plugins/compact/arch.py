"""The compact restorer: a small residual U-Net that runs on a laptop CPU.

Designed for facefix's default: a few megabytes, well under a second per 512 px face
on two CPU cores, and never worse than doing nothing. Three choices serve that:

* the face is folded 2x2 into channels (pixel unshuffle) before the first conv, so
  no layer runs at full resolution;
* most of the work happens at 1/16 of the face size, where the receptive field
  covers the strongest blur the degradation model produces;
* the output is the input plus a correction whose last layer starts at zero, so an
  untrained network returns its input and a clean face stays clean.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        # Each block starts as the identity: without normalisation layers, this keeps
        # the deep path well-conditioned early in training (it diverged without it).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class Upsample(nn.Module):
    """Bilinear x2, then a 3x3 conv (no checkerboard artefacts of transposed convs)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.leaky_relu(self.conv(x), 0.2)


class CompactUNet(nn.Module):
    """``channels[i]`` features at 1/2^(i+1) of the input size; ``blocks[i]`` residual
    blocks there on the way down (the deepest level's are the bottleneck) and
    ``up_blocks[i]`` on the way back up. Input and output: RGB in [-1, 1]."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 192), blocks: Sequence[int] = (0, 2, 2, 4),
                 up_blocks: Sequence[int] = (0, 1, 1)):
        super().__init__()
        if len(channels) != len(blocks) or len(up_blocks) != len(channels) - 1:
            raise ValueError("channels and blocks need one entry per level, up_blocks one fewer")
        self.channels, self.blocks, self.up_blocks = tuple(channels), tuple(blocks), tuple(up_blocks)
        self.head = nn.Conv2d(12, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            nn.Sequential(*(ResidualBlock(c) for _ in range(n))) for c, n in zip(channels, blocks)
        )
        self.downsamples = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1) for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.upsamples = nn.ModuleList(Upsample(c_in, c_out) for c_in, c_out in zip(channels[1:], channels[:-1]))
        self.up_stages = nn.ModuleList(
            nn.Sequential(*(ResidualBlock(c) for _ in range(n))) for c, n in zip(channels[:-1], up_blocks)
        )
        self.tail = nn.Conv2d(channels[0], 12, 3, padding=1)
        # Start as the identity: the correction is exactly zero until training moves it.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.leaky_relu(self.head(F.pixel_unshuffle(x, 2)), 0.2)
        skips = []
        for level, stage in enumerate(self.down_blocks):
            features = stage(features)
            if level < len(self.downsamples):
                skips.append(features)
                features = F.leaky_relu(self.downsamples[level](features), 0.2)
        for level in reversed(range(len(self.upsamples))):
            features = self.up_stages[level](self.upsamples[level](features) + skips[level])
        return x + F.pixel_shuffle(self.tail(features), 2)

    def config(self) -> dict[str, list[int]]:
        return {"channels": list(self.channels), "blocks": list(self.blocks), "up_blocks": list(self.up_blocks)}


def build(config: dict) -> CompactUNet:
    """The network a (stored or inferred) config describes."""
    return CompactUNet(**config)


def infer_config(state: dict) -> dict[str, list[int]]:
    """The config whose layout ``state`` has: widths from the head and the strided convs,
    block counts from the numbered residual blocks of each level."""
    levels = 1 + sum(1 for key in state if key.startswith("downsamples.") and key.endswith(".weight"))
    channels = [int(state["head.weight"].shape[0])]
    channels += [int(state[f"downsamples.{level}.weight"].shape[0]) for level in range(levels - 1)]

    def blocks(prefix: str, count: int) -> list[int]:
        return [len({key.split(".")[2] for key in state if key.startswith(f"{prefix}.{level}.")}) for level in range(count)]

    return {"channels": channels, "blocks": blocks("down_blocks", levels), "up_blocks": blocks("up_stages", levels - 1)}
