"""Discriminators shared by the training recipes.

* :class:`StyleGAN2Discriminator`: the global discriminator of GFP-GAN, MMRB and
  CFGPFSSR (residual FIR-downsampling blocks, minibatch standard deviation). Built from
  :mod:`facefix.nn.stylegan2` blocks with basicsr's key names (``conv_body.*``,
  ``final_conv.*``, ``final_linear.*``), so a released ``GFPGANv1_net_d.pth`` loads.
* :class:`MultiScalePatchDiscriminator`: PSFR-GAN's discriminator: ``num_d`` patch
  discriminators on an image pyramid (3x3 average pooling, stride 2, between scales),
  spectral norm, returning every intermediate feature map for feature matching.
* :class:`FacialComponentDiscriminator`: GFP-GAN's small VGG-style local discriminator
  for eye and mouth crops, returning ``(logits, [features])``; key names follow the
  reference (``conv1`` … ``conv5``, ``final_conv``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from facefix.nn.stylegan2 import BLUR_TAPS, ConvLayer, EqualLinear, ResBlock, channel_plan


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """Append ``num_features`` channels holding the feature spread within sample groups.

    Samples ``i, i + B/G, i + 2B/G, …`` form a group of ``G = min(B, group_size)``
    (reference layout). When ``B`` is not a multiple of ``G`` the largest divisor of
    ``B`` not above ``G`` is used instead (the reference would fail).
    """
    batch, channels, height, width = x.shape
    group = min(batch, group_size)
    while batch % group:
        group -= 1
    spread = x.reshape(group, -1, num_features, channels // num_features, height, width)
    spread = torch.sqrt(spread.var(0, unbiased=False) + 1e-8)
    spread = spread.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # (B/G, F, 1, 1)
    spread = spread.repeat(group, 1, height, width)
    return torch.cat([x, spread], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's residual discriminator for ``size x size`` RGB images (32 … 1024).

    Returns logits ``(B, 1)``. ``channel_multiplier`` and ``narrow`` follow
    :func:`facefix.nn.stylegan2.channel_plan` (basicsr's table).
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: float = 1,
        narrow: float = 1.0,
        stddev_group: int = 4,
        blur_taps: Sequence[float] = BLUR_TAPS,
        input_channels: int = 3,
    ) -> None:
        super().__init__()
        log_size = int(math.log2(size))
        if 2**log_size != size or not 32 <= size <= 1024:
            raise ValueError(f"StyleGAN2Discriminator: size must be a power of two in 32..1024, got {size}")
        channels = channel_plan(channel_multiplier, narrow)
        self.size = size
        self.stddev_group = stddev_group
        self.stddev_feat = 1
        width = channels[size]
        body: list[nn.Module] = [ConvLayer(input_channels, width, 1)]
        for log_res in range(log_size, 2, -1):
            out_width = channels[2 ** (log_res - 1)]
            body.append(ResBlock(width, out_width, blur_taps))
            width = out_width
        self.conv_body = nn.Sequential(*body)
        self.final_conv = ConvLayer(width + self.stddev_feat, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_body(x)
        out = minibatch_stddev(out, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        return self.final_linear(out.flatten(1))


class _PatchLayer(nn.Sequential):
    """Reflection pad → 3x3 conv [→ 2x2 average pool] → leaky ReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, spectral_norm: bool) -> None:
        conv = nn.Conv2d(in_channels, out_channels, 3)
        nn.init.normal_(conv.weight, 0.0, 0.02)
        nn.init.zeros_(conv.bias)
        if spectral_norm:
            conv = nn.utils.spectral_norm(conv)
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), conv]
        if downsample:
            layers.append(nn.AvgPool2d(2, 2))
        layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)


class PatchDiscriminator(nn.Module):
    """One PSFR-GAN patch discriminator: returns ``[feature_1, …, feature_{n+1}, logits]``.

    A first 3x3 layer to ``base_channels``, then ``n_layers`` layers that double the
    width (capped at ``max_channels``) and halve the size, then a 3x3 conv to one
    channel without padding (patch logits).
    """

    def __init__(
        self,
        input_channels: int = 3,
        base_channels: int = 64,
        n_layers: int = 4,
        max_channels: int = 1024,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        layers = [_PatchLayer(input_channels, base_channels, False, spectral_norm)]
        width = base_channels
        for index in range(n_layers):
            out_width = min(base_channels * 2 ** (index + 1), max_channels)
            layers.append(_PatchLayer(width, out_width, True, spectral_norm))
            width = out_width
        self.body = nn.Sequential(*layers)
        score = nn.Conv2d(width, 1, 3)
        nn.init.normal_(score.weight, 0.0, 0.02)
        nn.init.zeros_(score.bias)
        self.score = nn.utils.spectral_norm(score) if spectral_norm else score

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.body:
            x = layer(x)
            features.append(x)
        # The unpadded score conv needs 3x3: pad tiny maps (only at the coarsest scales).
        if x.shape[-1] < 3 or x.shape[-2] < 3:
            x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        features.append(self.score(x))
        return features


class MultiScalePatchDiscriminator(nn.Module):
    """PSFR-GAN's multi-scale discriminator.

    ``forward(x)`` returns one list per scale (full size first), each
    ``[features…, logits]``; use ``out[i][-1]`` for the GAN loss and the rest for
    :func:`facefix.training.losses.feature_matching_loss`. To condition on parsing,
    pass ``input_channels=3 + 19`` and feed ``torch.cat([image, one_hot_parse], 1)``.
    """

    def __init__(
        self,
        num_d: int = 3,
        n_layers: int = 4,
        base_channels: int = 64,
        input_channels: int = 3,
        spectral_norm: bool = True,
        max_channels: int = 1024,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(input_channels, base_channels, n_layers, max_channels, spectral_norm)
            for _ in range(num_d)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outputs = []
        for index, discriminator in enumerate(self.discriminators):
            if index:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs


class FacialComponentDiscriminator(nn.Module):
    """GFP-GAN's local discriminator for one facial component (VGG-style, fixed width).

    ``forward(x)`` returns ``(logits (B, 1, h, w), [feature after conv3, feature after conv5])``;
    the two features feed the component Gram style loss.
    """

    def __init__(self, input_channels: int = 3, blur_taps: Sequence[float] = BLUR_TAPS) -> None:
        super().__init__()
        self.conv1 = ConvLayer(input_channels, 64, 3)
        self.conv2 = ConvLayer(64, 128, 3, downsample=True, blur_taps=blur_taps)
        self.conv3 = ConvLayer(128, 128, 3)
        self.conv4 = ConvLayer(128, 256, 3, downsample=True, blur_taps=blur_taps)
        self.conv5 = ConvLayer(256, 256, 3)
        self.final_conv = ConvLayer(256, 1, 3, activate=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        first = self.conv3(self.conv2(self.conv1(x)))
        second = self.conv5(self.conv4(first))
        return self.final_conv(second), [first, second]


__all__ = [
    "FacialComponentDiscriminator", "MultiScalePatchDiscriminator", "PatchDiscriminator",
    "StyleGAN2Discriminator", "minibatch_stddev",
]  # fmt: skip
