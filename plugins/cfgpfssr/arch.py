"""CFGPFSSR (Liu et al. 2024): 16x face super-resolution from a StyleGAN2 prior bank,
modulated by channel-split SFT whose scale and shift come from encoder features and a
face-parsing map. Section and V-numbers below are ``../shared/docs/cfgpfssr-spec.md``'s.

The network is GLEAN's layout with GFP-GAN's CS-SFT in place of GLEAN's concatenation:

* **encoder** (E0–E5): an RRDB trunk at the input size (ESRGAN's RRDBNet without its
  upsampler) and a conv to the bank's width, then stride-2 stages down to 4x4, then a
  conv and one linear layer giving the W+ codes (18 at 1024 px; one per block with
  ``latent_per_block``), which go straight to the bank's modulations (no mapping MLP);
* **prior bank**: facefix's StyleGAN2 generator (original ops, fixed noise buffers),
  normally frozen; after each block's second conv its output is modulated by CS-SFT
  (V2) and fed to the next block. Its ToRGB layers are never run (V11);
* **CS-SFT**: at every resolution up to the input size, scale and shift from the
  encoder feature of that size concatenated with the parsing map; above it, from the
  parsing map alone (V1). Every branch starts as the identity (V4), so the untrained
  network is the paper's "Baseline" (latents only);
* **decoder** (D0–D4): pixel-shuffle stages from the RRDB features, each fusing the
  bank's modulated features of its size, then a two-conv RGB head.

``features=False`` / ``parsing=False`` drop one source of the SFT conditions, for the
paper's ablation (Table 3: both off is its "Baseline"). ``fidelity`` scales every
CS-SFT toward the identity: 1 is the network's own output, 0 the latents alone.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from facefix.nn.parsing import PARSE_CLASSES
from facefix.nn.stylegan2 import FidelityControl, StyleGAN2Generator, channel_plan, channel_split_sft

LRELU = 0.2


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs with dense connections; ``x + 0.2 * out`` (ESRGAN's RDB)."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels + index * growth, growth, 3, padding=1) for index in range(4))
        self.fuse = nn.Conv2d(channels + 4 * growth, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs:
            features.append(F.leaky_relu(conv(torch.cat(features, dim=1)), LRELU))
        return x + 0.2 * self.fuse(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Three residual dense blocks inside one more residual: ``x + 0.2 * rdbs(x)``."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(channels, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class RRDBTrunk(nn.Module):
    """ESRGAN's RRDBNet body without the upsampler: ``f + conv(rrdbs(f))``, ``f = conv(x)``."""

    def __init__(self, in_channels: int, channels: int, blocks: int, growth: int):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(channels, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv_first(x)
        return features + self.conv_body(self.body(features))


def _conv_lrelu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.LeakyReLU(LRELU)]


class SFTBranch(nn.Sequential):
    """conv3x3 → LeakyReLU → conv3x3 to half the bank's channels (V3). The last conv starts
    at weight 0 and bias ``bias`` (1 for a scale, 0 for a shift): an identity SFT (V4)."""

    def __init__(self, in_channels: int, width: int, bias: float):
        super().__init__(nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(LRELU),
                         nn.Conv2d(width, width // 2, 3, padding=1))
        nn.init.zeros_(self[2].weight)
        nn.init.constant_(self[2].bias, bias)


def resize_parsing(parsing: torch.Tensor, size: int) -> torch.Tensor:
    """The parsing map at ``size``: bicubic when enlarging (the paper's), an area average
    when shrinking, where bicubic without antialiasing would only sample every n-th pixel
    (and an antialiased resize does not export to ONNX)."""
    current = int(parsing.shape[-1])  # a constant when traced for ONNX: maps come at a fixed size
    if current == size:
        return parsing
    if current > size:
        if current % size:
            raise ValueError(f"a {current} px parsing map does not shrink evenly to {size} px")
        return F.avg_pool2d(parsing, current // size)
    return F.interpolate(parsing, size=(size, size), mode="bicubic", align_corners=False)


class CFGPFSSRNet(FidelityControl, nn.Module):
    """``forward(lr, parsing)``: ``lr`` ``(B, 3, in, in)`` RGB in [-1, 1], ``parsing`` a
    ``(B, 19, s, s)`` map of any size (None without ``parsing``) → ``(B, 3, out, out)``.

    Args:
        out_size: output resolution (1024 in the paper); ``in_size`` its input (64).
        rrdb_blocks, rrdb_channels, rrdb_growth: the RRDB trunk (23, 64, 32: GLEAN's; V7).
        channel_multiplier, narrow, style_dim: the bank's StyleGAN2 (2, 1, 512: config-f).
        latent_per_block: one code per bank block instead of W+'s one per layer (V9).
        features, parsing: the two sources of the SFT conditions (the ablation switches).
        head_channels: width of the RGB head's hidden conv (64, GLEAN's).
    """

    def __init__(self, out_size: int = 1024, in_size: int = 64, rrdb_blocks: int = 23, rrdb_channels: int = 64,
                 rrdb_growth: int = 32, channel_multiplier: float = 2, narrow: float = 1.0, style_dim: int = 512,
                 num_mlp: int = 8, latent_per_block: bool = False, features: bool = True, parsing: bool = True,
                 head_channels: int = 64, parse_classes: int = PARSE_CLASSES, fidelity: float = 1.0):
        super().__init__()
        log_out, log_in = int(math.log2(out_size)), int(math.log2(in_size))
        if 2**log_out != out_size or 2**log_in != in_size or not 8 <= in_size < out_size:
            raise ValueError(f"sizes must be powers of two with 8 <= in_size < out_size, got {in_size} → {out_size}")
        self.config: dict[str, Any] = dict(
            out_size=out_size, in_size=in_size, rrdb_blocks=rrdb_blocks, rrdb_channels=rrdb_channels,
            rrdb_growth=rrdb_growth, channel_multiplier=channel_multiplier, narrow=narrow, style_dim=style_dim,
            num_mlp=num_mlp, latent_per_block=latent_per_block, features=features, parsing=parsing,
            head_channels=head_channels, parse_classes=parse_classes)
        self.out_size, self.in_size = out_size, in_size
        self.uses_parsing = parsing
        ch = channel_plan(channel_multiplier, narrow)
        self.channels = ch

        # E0 … E5
        self.trunk = RRDBTrunk(3, rrdb_channels, rrdb_blocks, rrdb_growth)
        self.trunk_out = nn.Sequential(*_conv_lrelu(rrdb_channels, ch[in_size]))
        downs = [2**log_res for log_res in range(log_in, 2, -1)]  # in … 8: each halves
        self.encoder = nn.ModuleList(nn.Sequential(*_conv_lrelu(ch[r], ch[r // 2], stride=2),
                                                   *_conv_lrelu(ch[r // 2], ch[r // 2])) for r in downs)
        self.bank = StyleGAN2Generator(out_size, style_dim, num_mlp, channel_multiplier, narrow, flavour="original")
        # the codes each style conv reads: W+ (conv1 w0; level L w[2L+1], w[2L+2]), or one per block
        blocks = log_out - 1  # 4x4, then 8 … out
        self.num_codes = blocks if latent_per_block else self.bank.num_latent
        self.code_of_conv = [0] + ([level + 1 for level in range(blocks - 1) for _ in range(2)] if latent_per_block
                                   else list(range(1, 2 * blocks - 1)))
        self.to_latent = nn.Sequential(*_conv_lrelu(ch[4], ch[4]), nn.Flatten(),
                                       nn.Linear(16 * ch[4], self.num_codes * style_dim))

        # CS-SFT conditions per resolution (keys are the resolution)
        self.sft_scale, self.sft_shift = nn.ModuleDict(), nn.ModuleDict()
        for log_res in range(2, log_out + 1):
            r = 2**log_res
            cond = (ch[r] if features and r <= in_size else 0) + (parse_classes if parsing else 0)
            if cond:
                self.sft_scale[str(r)] = SFTBranch(cond, ch[r], 1.0)
                self.sft_shift[str(r)] = SFTBranch(cond, ch[r], 0.0)
        self.uses_features = features

        # D0 … D3: pixel-shuffle stages (no activation, V10); D4: the RGB head
        ups = [2**log_res for log_res in range(log_in, log_out)]  # in … out/2: each doubles
        self.decoder = nn.ModuleList(
            nn.Conv2d(ch[r] * (1 if r == in_size else 2), 4 * ch[2 * r], 3, padding=1) for r in ups)
        self.head = nn.Sequential(nn.Conv2d(2 * ch[out_size], head_channels, 3, padding=1), nn.LeakyReLU(LRELU),
                                  nn.Conv2d(head_channels, 3, 3, padding=1))
        self.fidelity = fidelity

    def prior_parameters(self) -> list[nn.Parameter]:
        return list(self.bank.parameters())

    def encode(self, lr: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """``(codes (B, num_codes, D), {resolution: encoder feature})``."""
        feature = self.trunk_out(self.trunk(lr))
        features = {self.in_size: feature}
        for index, stage in enumerate(self.encoder):
            feature = stage(feature)
            features[self.in_size // 2 ** (index + 1)] = feature
        codes = self.to_latent(feature).view(lr.shape[0], self.num_codes, -1)
        return codes, features

    def _sft(self, x: torch.Tensor, size: int, features: dict[int, torch.Tensor],
             parsing: torch.Tensor | None) -> torch.Tensor:
        # sizes are Python ints from the config, never read off tensors: ONNX tracing keeps them constant
        key = str(size)
        if key not in self.sft_scale:
            return x
        parts = []
        if self.uses_features and size in features:
            parts.append(features[size])
        if self.uses_parsing:
            parts.append(resize_parsing(parsing, size).to(x.dtype))
        condition = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return channel_split_sft(x, self.sft_scale[key](condition), self.sft_shift[key](condition), half=True,
                                 strength=self._fidelity)

    def forward(self, lr: torch.Tensor, parsing: torch.Tensor | None = None) -> torch.Tensor:
        if self.uses_parsing and parsing is None:
            raise ValueError("this CFGPFSSR network is conditioned on a parsing map: pass one")
        codes, features = self.encode(lr)
        bank = self.bank
        noise = bank.noises.maps()
        styles = [codes[:, index] for index in self.code_of_conv]
        x = bank.style_conv1(bank.constant_input(codes), styles[0], noise[0])
        x = self._sft(x, 4, features, parsing)
        prior_features = {}
        for level in range(len(bank.to_rgbs)):
            conv, size = 2 * level + 1, 2 ** (level + 3)
            x = bank.style_convs[2 * level](x, styles[conv], noise[conv])
            x = bank.style_convs[2 * level + 1](x, styles[conv + 1], noise[conv + 1])
            x = self._sft(x, size, features, parsing)
            if size > self.in_size:
                prior_features[size] = x
        decoded = features[self.in_size]
        for index, conv in enumerate(self.decoder):
            if index:
                decoded = torch.cat([decoded, prior_features[self.in_size * 2**index]], dim=1)
            decoded = F.pixel_shuffle(conv(decoded), 2)
        return self.head(torch.cat([decoded, prior_features[self.out_size]], dim=1))


#: The paper's network, 64 → 1024 (§1.9: 189.1 M parameters, 852 GFLOP).
FULL_CONFIG: dict[str, Any] = dict(out_size=1024, in_size=64, rrdb_blocks=23, rrdb_channels=64, rrdb_growth=32,
                                   channel_multiplier=2, narrow=1.0, style_dim=512, num_mlp=8)
#: The same network for 32 → 512 faces.
HALF_CONFIG: dict[str, Any] = {**FULL_CONFIG, "out_size": 512, "in_size": 32}
#: The CPU-sized configuration of §5.1: 16 → 256, ~4.2 M parameters.
CPU256_CONFIG: dict[str, Any] = dict(out_size=256, in_size=16, rrdb_blocks=2, rrdb_channels=32, rrdb_growth=16,
                                     channel_multiplier=2, narrow=0.125, style_dim=128, num_mlp=8)
