"""Real-ESRGAN's two networks, with the key names and shapes of its released files.

* :class:`RRDBNet` (ESRGAN's generator, as extended by Real-ESRGAN for x2 and x1: the input
  is pixel-unshuffled 2x2 or 4x4 first, so the trunk always works at a quarter of the
  output size): ``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1/2``,
  ``conv_hr``, ``conv_last``.
* :class:`SRVGGNetCompact` (realesr-general-x4v3, realesr-animevideov3): plain 3x3 convs
  and activations in ``body``, a pixel shuffle, plus the nearest-neighbour enlargement
  of the input (the network learns the residual).

Both map RGB in [0, 1] to RGB in [0, 1] (unclamped). :func:`infer_rrdb` and
:func:`infer_srvgg` read a configuration off a state dict's names and shapes.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facefix.errors import WeightsError

#: input channels of conv_first (3 colours, pixel-unshuffled) -> output scale
_SCALE_BY_IN = {3: 4, 12: 2, 48: 1}


class DenseBlock(nn.Module):
    """Five 3x3 convs, each fed every earlier output; the result scaled by 0.2 and added."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        for index in range(1, 6):
            inputs = channels + (index - 1) * growth
            setattr(self, f"conv{index}", nn.Conv2d(inputs, channels if index == 5 else growth, 3, 1, 1))
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for index in range(1, 5):
            features.append(self.lrelu(getattr(self, f"conv{index}")(torch.cat(features, 1))))
        return x + 0.2 * self.conv5(torch.cat(features, 1))


class RRDB(nn.Module):
    """Three dense blocks in a residual scaled by 0.2."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.rdb1 = DenseBlock(channels, growth)
        self.rdb2 = DenseBlock(channels, growth)
        self.rdb3 = DenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        for conv in (self.conv_up1, self.conv_up2):
            features = self.lrelu(conv(F.interpolate(features, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(features)))


def _activation(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1, inplace=True)
    raise ValueError(f"unknown activation {kind!r} (prelu, relu or leakyrelu)")


class SRVGGNetCompact(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4, act_type: str = "prelu"):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


def build_rrdb(config: Mapping[str, Any]) -> RRDBNet:
    return RRDBNet(**config)


def build_srvgg(config: Mapping[str, Any]) -> SRVGGNetCompact:
    return SRVGGNetCompact(**config)


def infer_rrdb(state: Mapping[str, Any]) -> dict[str, Any]:
    first = tuple(state["conv_first.weight"].shape)
    blocks = {int(match.group(1)) for key in state if (match := re.match(r"body\.(\d+)\.rdb1\.conv1\.weight$", key))}
    if first[1] not in _SCALE_BY_IN:
        raise WeightsError(f"conv_first takes {first[1]} channels: not 3, 12 or 48 (RRDBNet x4, x2, x1)")
    return {
        "num_in_ch": 3, "num_out_ch": int(state["conv_last.weight"].shape[0]), "scale": _SCALE_BY_IN[first[1]],
        "num_feat": int(first[0]), "num_block": len(blocks),
        "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0]),
    }


def infer_srvgg(state: Mapping[str, Any]) -> dict[str, Any]:
    convs = sorted(int(match.group(1)) for key in state
                   if (match := re.match(r"body\.(\d+)\.weight$", key)) and len(state[key].shape) == 4)
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs) - 1, 2)):
        raise WeightsError("body convolutions are not at every other index, as SRVGGNetCompact's are")
    if "body.1.weight" not in state:  # relu and leakyrelu carry no weights: nothing tells them apart
        raise WeightsError("no PReLU weights (body.1.weight): a relu or leakyrelu file must store its 'config'")
    first, last = state["body.0.weight"].shape, state[f"body.{convs[-1]}.weight"].shape
    out_channels = 3
    scale = round((int(last[0]) / out_channels) ** 0.5)
    if scale * scale * out_channels != int(last[0]):
        raise WeightsError(f"the last conv gives {last[0]} channels: not 3 x scale^2")
    return {"num_in_ch": int(first[1]), "num_out_ch": out_channels, "num_feat": int(first[0]),
            "num_conv": len(convs) - 2, "upscale": scale, "act_type": "prelu"}


def srvgg_receptive_radius(config: Mapping[str, Any]) -> int:
    """Input pixels each output pixel sees on every side: one per 3x3 conv."""
    return int(config.get("num_conv", 16)) + 2
