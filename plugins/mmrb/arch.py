"""The MMRB pose-varied face restorer (Hu et al. 2022, arXiv 2205.14377), as
``../shared/docs/mmrb-spec.md`` reads the paper (section numbers below are the spec's).

An asymmetric codec feeds a StyleGAN2 prior:

* the **encoder** has one equalized down-conv per scale (GPEN's) and, at every scale
  but the first and the last, one **MMRB** (mixed multi-path residual block: half the
  channels through a 3x3 path, half through a 5x5 path, both again at full width, a
  1x1 reduction, a residual); its 4x4 features give the latent **z**;
* the **decoder** has one bilinear up-conv per scale, U-Net skips from the encoder and
  no MMRB ("one less" than the encoder); each scale also has an RGB head, used only by
  the pyramid L1 loss;
* the **prior** is a StyleGAN2 whose w (``z`` through the 8-layer mapping network, the
  same w for every style input) renders the face, and whose noise inputs are the
  decoder's features **concatenated** to its own (GPEN's ``isconcat``), so every conv
  after the first and every ToRGB takes twice the channels.

Nothing is random at inference: the "noise" is the decoder's output. ``fidelity``
scales the injected decoder features: 1 is the network's own output, 0 renders the
prior from z alone (§1.8, U9). ``mmrb=False`` puts plain residual blocks (two 3x3
convs) where the MMRBs are, for the paper's ablation (Table 5 a).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from facefix.nn.stylegan2 import (
    ConstantInput,
    ConvLayer,
    ConvUpLayer,
    EqualConv2d,
    EqualLinear,
    FidelityControl,
    FusedLeakyReLU,
    ModulatedConv2d,
    ToRGB,
    channel_plan,
    mapping_network,
)


class MMRB(nn.Module):
    """Mixed multi-path residual block (§1.3, eq. 4–10), ``C → C``, C even.

    The last 1x1 conv starts at zero, so the block starts as the identity (U3): without
    normalisation layers this keeps the deep encoder trainable from scratch.
    """

    def __init__(self, channels: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"MMRB needs an even channel count, got {channels}")
        half = channels // 2
        self.conv3_1 = nn.Conv2d(half, half, 3, padding=1)
        self.conv5_1 = nn.Conv2d(half, half, 5, padding=2)
        self.conv3_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv5_2 = nn.Conv2d(channels, channels, 5, padding=2)
        self.reduce = nn.Conv2d(2 * channels, channels, 1)
        self.act3_1, self.act5_1, self.act3_2, self.act5_2, self.act_out = (nn.PReLU() for _ in range(5))
        nn.init.zeros_(self.reduce.weight)
        nn.init.zeros_(self.reduce.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        mixed = torch.cat([self.act3_1(self.conv3_1(first)), self.act5_1(self.conv5_1(second))], dim=1)
        paths = torch.cat([self.act3_2(self.conv3_2(mixed)), self.act5_2(self.conv5_2(mixed))], dim=1)
        return x + self.act_out(self.reduce(paths))


class PlainResidualBlock(nn.Module):
    """Two 3x3 convs with a PReLU between and a residual: the ablation's stand-in for an MMRB."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class StyleConvCat(nn.Module):
    """Modulated conv whose output is concatenated with the (scaled) injected features,
    then biased and activated over both halves (GPEN's ``StyledConv`` with ``isconcat``).

    ``noise_weight`` (a scalar, zero at first) scales the injected features; the
    ``2 * out_channels`` bias lives in the fused activation.
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, demodulate=True,
                                              sample_mode="upsample" if upsample else None, flavour="original")
        # 1, not StyleGAN2's 0: the injected features are the only path from the input to the
        # pixels, and a zero scalar in front of them starves the decoder of gradient (U13)
        self.noise_weight = nn.Parameter(torch.ones(1))
        self.activate = FusedLeakyReLU(2 * out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, injected: torch.Tensor) -> torch.Tensor:
        return self.activate(torch.cat([self.modulated_conv(x, style), self.noise_weight * injected], dim=1))


class ConcatPrior(nn.Module):
    """StyleGAN2 synthesis (original ops) whose noise inputs are concatenated features (§1.6).

    ``forward(w, injected)``: ``w`` ``(B, D)`` goes to every style input; ``injected`` is
    one feature map per style conv (15 at 512 px: ``[d4, d8, d8, d16, d16, …]``).
    """

    def __init__(self, out_size: int, style_dim: int, num_mlp: int, channels: dict[int, int], lr_mlp: float = 0.01):
        super().__init__()
        self.log_size = int(math.log2(out_size))
        self.style_mlp = mapping_network(style_dim, num_mlp, lr_mlp, "original")
        width = channels[4]
        self.constant_input = ConstantInput(width, 4)
        self.style_conv1 = StyleConvCat(width, width, style_dim)
        self.to_rgb1 = ToRGB(2 * width, style_dim, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for log_res in range(3, self.log_size + 1):
            out_width = channels[2**log_res]
            self.style_convs.append(StyleConvCat(2 * width, out_width, style_dim, upsample=True))
            self.style_convs.append(StyleConvCat(2 * out_width, out_width, style_dim))
            self.to_rgbs.append(ToRGB(2 * out_width, style_dim, upsample=True))
            width = out_width

    def forward(self, w: torch.Tensor, injected: list[torch.Tensor]) -> torch.Tensor:
        features = self.style_conv1(self.constant_input(w), w, injected[0])
        rgb = self.to_rgb1(features, w)
        for level, to_rgb in enumerate(self.to_rgbs):
            index = 2 * level + 1
            features = self.style_convs[2 * level](features, w, injected[index])
            features = self.style_convs[2 * level + 1](features, w, injected[index + 1])
            rgb = to_rgb(features, w, rgb)
        return rgb


class MMRBNet(FidelityControl, nn.Module):
    """Face in, face out (``(B, 3, S, S)`` RGB in [-1, 1]); see the module docstring.

    ``forward(x, return_rgb=True)`` returns ``(image, [rgb_8, …, rgb_S] or None)``: the
    decoder's RGB heads feed the pyramid L1 loss in training.
    """

    def __init__(self, out_size: int = 512, style_dim: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 narrow: float = 1.0, mmrb: bool = True, lr_mlp: float = 0.01, fidelity: float = 1.0):
        super().__init__()
        self.log_size = int(math.log2(out_size))
        if 2**self.log_size != out_size or out_size < 16:
            raise ValueError(f"out_size must be a power of two >= 16, got {out_size}")
        self.out_size = out_size
        self.config: dict[str, Any] = dict(out_size=out_size, style_dim=style_dim, num_mlp=num_mlp,
                                           channel_multiplier=channel_multiplier, narrow=narrow, mmrb=mmrb,
                                           lr_mlp=lr_mlp)
        ch = channel_plan(channel_multiplier, narrow)
        self.channels = ch
        block = MMRB if mmrb else PlainResidualBlock
        inner = [2**log_res for log_res in range(self.log_size - 1, 1, -1)]  # S/2 … 4
        self.ecd0 = ConvLayer(3, ch[out_size], 1)
        self.encoder_convs = nn.ModuleList(ConvLayer(ch[2 * r], ch[r], 3, downsample=True) for r in inner)
        # one block at every scale but the first (S) and the last (4): 6 at 512 px
        self.blocks = nn.ModuleList(block(ch[r]) for r in inner[:-1])
        self.final_linear = EqualLinear(ch[4] * 4 * 4, style_dim, activation="fused_lrelu")
        self.final_conv = ConvLayer(ch[4], ch[4], 3)
        outer = [2**log_res for log_res in range(3, self.log_size + 1)]  # 8 … S
        self.decoder = nn.ModuleList(ConvUpLayer(ch[r // 2], ch[r], 3, padding=1) for r in outer)
        self.to_rgbs = nn.ModuleList(EqualConv2d(ch[r], 3, 1) for r in outer)
        self.prior = ConcatPrior(out_size, style_dim, num_mlp, ch, lr_mlp)
        self.fidelity = fidelity

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(z, [e_S/2, …, e_4])``: the latent and the encoder's skip features."""
        features = self.ecd0(x)
        skips = []
        for index, conv in enumerate(self.encoder_convs):
            features = conv(features)
            if index < len(self.blocks):
                features = self.blocks[index](features)
            skips.append(features)
        return self.final_linear(features.flatten(1)), skips

    def decode(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder's features ``[d_4, d_8, …, d_S]`` (additive U-Net skips)."""
        features = self.final_conv(skips[-1])
        decoded = [features]
        for up, skip in zip(self.decoder, reversed(skips)):
            features = up(features + skip)
            decoded.append(features)
        return decoded

    def forward(self, x: torch.Tensor, return_rgb: bool = True) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        z, skips = self.encode(x)
        decoded = self.decode(skips)
        w = self.prior.style_mlp(z)
        unscaled = not isinstance(self._fidelity, torch.Tensor) and self._fidelity == 1.0
        scaled = decoded if unscaled else [self._fidelity * d for d in decoded]
        injected = [scaled[0]] + [d for d in scaled[1:] for _ in range(2)]
        image = self.prior(w, injected)
        rgbs = [head(d) for head, d in zip(self.to_rgbs, decoded[1:])] if return_rgb else None
        return image, rgbs


#: The paper's network (§1.9): 134.7 M parameters at 512 px.
FULL_CONFIG: dict[str, Any] = dict(out_size=512, style_dim=512, num_mlp=8, channel_multiplier=2, narrow=1.0,
                                   mmrb=True, lr_mlp=0.01)
#: The CPU-sized configuration of §5.1: 6.63 M parameters at 128 px.
CPU128_CONFIG: dict[str, Any] = dict(out_size=128, style_dim=128, num_mlp=8, channel_multiplier=1, narrow=0.25,
                                     mmrb=True, lr_mlp=0.01)
