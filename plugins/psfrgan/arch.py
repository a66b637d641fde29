"""PSFR-GAN networks with the released checkpoints' state-dict layout.

Matches the reference implementation (github.com/chaofengc/PSFRGAN, ``models/networks.py``,
``models/psfrnet.py``, ``models/blocks.py``) key for key and, for the same weights and
input, output for output:

* :class:`PSFRParseNet` — the LQ face parsing network (``parse_multi_iter_90000.pth``):
  an encoder / residual body / decoder with batch norm and leaky ReLU that maps an RGB
  face in ``[-1, 1]`` to 19-class parsing logits (and an auxiliary RGB image).
* :class:`PSFRGenerator` — the restoration network (``psfrgan_epoch15_net_G.pth``): a
  learned constant ``1024×16×16`` tensor is upsampled (nearest + conv) to the output size;
  after each step a residual block whose instance-normalised features get a per-pixel
  scale and shift computed from the LQ image concatenated with its one-hot parsing map,
  both resized (bicubic) to that scale. Every convolution is spectrally normalised with
  the ``torch.nn.utils.spectral_norm`` layout (``weight_orig``, ``weight_u``, ``weight_v``).

Inputs are RGB in ``[-1, 1]`` (``img / 255 * 2 - 1``); the generator's output is in the same
range (unclamped). Use :func:`parsing_onehot` to turn parsing logits into the generator's
conditioning map exactly as the reference does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from facefix.nn.parsing import PARSE_CLASSES, parsing_onehot  # noqa: F401 (parsing_onehot: part of this API)

#: Negative slope of every leaky ReLU in both networks.
LRELU_SLOPE = 0.2
#: Hidden width of the conditioning convs in each style-transformation block.
COND_HIDDEN = 64

#: Constructor options of the released checkpoints (reference ``define_P`` / ``define_G``).
OFFICIAL_PARSER_CONFIG: dict[str, Any] = dict(
    in_size=512, out_size=512, min_feat_size=32, base_ch=64, parsing_ch=PARSE_CLASSES, res_depth=10, ch_range=(32, 256)
)
OFFICIAL_GENERATOR_CONFIG: dict[str, Any] = dict(
    out_size=512, min_feat_size=16, parse_ch=PARSE_CLASSES, in_ch=3, out_ch=3, ch_range=(32, 1024)
)


def _clip(channels: int, ch_range: tuple[int, int]) -> int:
    low, high = ch_range
    return max(low, min(channels, high))


def _log2_steps(big: int, small: int) -> int:
    steps = int(math.log2(big // small))
    if small * 2**steps != big:
        raise ValueError(f"{big} is not {small} times a power of two")
    return steps


# =========================================================================== parser


class _Conv(nn.Module):
    """Reflection-padded 3x3 conv with optional nearest 2x upsampling before / stride 2,
    then optional batch norm and leaky ReLU (the reference's ``ConvLayer``).

    Key layout: ``conv2d.{weight,bias}``, ``norm.norm.*`` (batch norm).
    """

    def __init__(self, cin: int, cout: int, resample: str = "none", batch_norm: bool = False, act: bool = False):
        super().__init__()
        self.upsample = resample == "up"
        self.conv2d = nn.Conv2d(cin, cout, 3, stride=2 if resample == "down" else 1, bias=not batch_norm)
        self.norm = nn.Module()
        if batch_norm:
            self.norm.norm = nn.BatchNorm2d(cout)
        self.batch_norm = batch_norm
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        if self.batch_norm:
            x = self.norm.norm(x)
        if self.act:
            x = F.leaky_relu(x, LRELU_SLOPE)
        return x


class _ParseResBlock(nn.Module):
    """``x' = shortcut(x) + conv2(conv1(x))``; the resampling sits in conv1 (up) or conv2 (down)."""

    def __init__(self, cin: int, cout: int, resample: str = "none"):
        super().__init__()
        self.shortcut_func = None if (resample == "none" and cin == cout) else _Conv(cin, cout, resample)
        first, second = {"up": ("up", "none"), "down": ("none", "down"), "none": ("none", "none")}[resample]
        self.conv1 = _Conv(cin, cout, first, batch_norm=True, act=True)
        self.conv2 = _Conv(cout, cout, second, batch_norm=True, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut_func is None else self.shortcut_func(x)
        return skip + self.conv2(self.conv1(x))


class PSFRParseNet(nn.Module):
    """LQ face parsing network; ``forward`` returns ``(parsing_logits, image)``."""

    def __init__(
        self,
        in_size: int = 512,
        out_size: int = 512,
        min_feat_size: int = 32,
        base_ch: int = 64,
        parsing_ch: int = PARSE_CLASSES,
        res_depth: int = 10,
        ch_range: tuple[int, int] = (32, 256),
    ):
        super().__init__()
        ch_range = tuple(ch_range)
        self.config = dict(
            in_size=in_size, out_size=out_size, min_feat_size=min_feat_size, base_ch=base_ch,
            parsing_ch=parsing_ch, res_depth=res_depth, ch_range=ch_range,
        )  # fmt: skip
        min_feat_size = min(in_size, min_feat_size)
        width = base_ch  # unclipped nominal width, as the reference tracks it

        encoder: list[nn.Module] = [_Conv(3, base_ch)]
        for _ in range(_log2_steps(in_size, min_feat_size)):
            encoder.append(_ParseResBlock(_clip(width, ch_range), _clip(width * 2, ch_range), "down"))
            width *= 2
        self.encoder = nn.Sequential(*encoder)
        body_ch = _clip(width, ch_range)
        self.body = nn.Sequential(*[_ParseResBlock(body_ch, body_ch) for _ in range(res_depth)])
        decoder = []
        for _ in range(_log2_steps(out_size, min_feat_size)):
            decoder.append(_ParseResBlock(_clip(width, ch_range), _clip(width // 2, ch_range), "up"))
            width //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = _Conv(_clip(width, ch_range), 3)
        self.out_mask_conv = _Conv(_clip(width, ch_range), parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        features = self.decoder(features + self.body(features))
        return self.out_mask_conv(features), self.out_img_conv(features)


# =========================================================================== generator


class SNConv2d(nn.Module):
    """Conv2d with spectral normalisation, stored as ``torch.nn.utils.spectral_norm`` does.

    State dict: ``bias``, ``weight_orig`` (parameters), ``weight_u``, ``weight_v`` (buffers).
    In training mode one power iteration refreshes ``u`` / ``v`` per call (like the torch
    hook); in eval mode the stored vectors are used as they are, so the forward pass is
    a fixed function of the state dict (and exports to ONNX as plain ops).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, eps: float = 1e-12):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
        self.padding = kernel_size // 2
        self.eps = eps
        self.bias = conv.bias
        self.weight_orig = conv.weight
        self.register_buffer("weight_u", F.normalize(torch.randn(cout), dim=0, eps=eps))
        self.register_buffer("weight_v", F.normalize(torch.randn(cin * kernel_size**2), dim=0, eps=eps))

    @property
    def weight(self) -> torch.Tensor:
        """The spectrally normalised kernel ``weight_orig / sigma``."""
        matrix = self.weight_orig.flatten(1)
        u, v = self.weight_u, self.weight_v
        if self.training:
            with torch.no_grad():
                v = F.normalize(torch.mv(matrix.t(), u), dim=0, eps=self.eps)
                u = F.normalize(torch.mv(matrix, v), dim=0, eps=self.eps)
                self.weight_u.copy_(u)
                self.weight_v.copy_(v)
            u, v = u.clone(), v.clone()
        sigma = torch.dot(u, torch.mv(matrix, v))
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class _StyleTransform(nn.Module):
    """Instance norm, then per-pixel ``gamma * x + beta`` predicted from the condition map
    (the reference's ``SPADENorm``; keys ``conv1.0``, ``gamma_conv``, ``beta_conv``)."""

    def __init__(self, channels: int, cond_ch: int):
        super().__init__()
        self.conv1 = nn.Sequential(SNConv2d(cond_ch, COND_HIDDEN))
        self.gamma_conv = SNConv2d(COND_HIDDEN, channels)
        self.beta_conv = SNConv2d(COND_HIDDEN, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        hidden = F.leaky_relu(self.conv1[0](cond), LRELU_SLOPE)
        return F.instance_norm(x, eps=1e-5) * self.gamma_conv(hidden) + self.beta_conv(hidden)


class _StyleResBlock(nn.Module):
    """``x + conv_1(act(norm_1(conv_0(act(norm_0(x))))))`` (the reference's ``SPADEResBlock``)."""

    def __init__(self, channels: int, cond_ch: int):
        super().__init__()
        self.conv_0 = SNConv2d(channels, channels)
        self.conv_1 = SNConv2d(channels, channels)
        self.norm_0 = _StyleTransform(channels, cond_ch)
        self.norm_1 = _StyleTransform(channels, cond_ch)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        residual = self.conv_0(F.leaky_relu(self.norm_0(x, cond), LRELU_SLOPE))
        residual = self.conv_1(F.leaky_relu(self.norm_1(residual, cond), LRELU_SLOPE))
        return x + residual


class _UpStage(nn.Sequential):
    """Keys ``{1: conv, 2: res block}``; index 0 (the reference's ``nn.Upsample``) has none."""

    def __init__(self, cin: int, cout: int, cond_ch: int):
        super().__init__(nn.Upsample(scale_factor=2.0, mode="nearest"), SNConv2d(cin, cout), _StyleResBlock(cout, cond_ch))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self[2](self[1](self[0](x)), cond)


class PSFRGenerator(nn.Module):
    """PSFR-GAN generator: ``forward(lq, parsing_onehot) -> image``.

    ``lq`` is the degraded face in ``[-1, 1]`` and ``parsing`` its ``parse_ch``-channel
    one-hot parsing map (same spatial size as ``lq``; any square size: both are resized
    to every feature scale). Output: ``out_ch × out_size × out_size``.
    """

    def __init__(
        self,
        out_size: int = 512,
        min_feat_size: int = 16,
        parse_ch: int = PARSE_CLASSES,
        in_ch: int = 3,
        out_ch: int = 3,
        ch_range: tuple[int, int] = (32, 1024),
    ):
        super().__init__()
        ch_range = tuple(ch_range)
        self.config = dict(
            out_size=out_size, min_feat_size=min_feat_size, parse_ch=parse_ch, in_ch=in_ch, out_ch=out_ch,
            ch_range=ch_range,
        )  # fmt: skip
        cond_ch = in_ch + parse_ch
        steps = _log2_steps(out_size, min_feat_size)
        # As in the reference: the start width is 16K / min_feat_size clipped to ch_range, then
        # the nominal width halves at every upsampling step (clipped again where used).
        start = _clip(1024 * 16 // min_feat_size, ch_range)
        widths = [start // 2**i for i in range(steps + 1)]
        self.scales = [min_feat_size * 2**i for i in range(steps + 1)]
        self.const_input = nn.Parameter(torch.randn(1, start, min_feat_size, min_feat_size))
        # Registration order gives the reference's state-dict order: img_out before head / body.
        self.img_out = SNConv2d(_clip(widths[-1], ch_range), out_ch)
        self.head = nn.Sequential(SNConv2d(start, start), _StyleResBlock(start, cond_ch))
        self.body = nn.Sequential(
            *[_UpStage(_clip(cin, ch_range), _clip(cin // 2, ch_range), cond_ch) for cin in widths[:-1]]
        )

    @staticmethod
    def _resize(cond: torch.Tensor, size: int) -> torch.Tensor:
        if cond.shape[-1] == size:  # static (shape) test, as in the reference
            return cond
        return F.interpolate(cond, size=(size, size), mode="bicubic", align_corners=False)

    def forward(self, lq: torch.Tensor, parsing: torch.Tensor) -> torch.Tensor:
        cond = torch.cat((lq, parsing), dim=1)
        features = self.const_input.expand(lq.shape[0], -1, -1, -1)
        features = self.head[1](self.head[0](features), self._resize(cond, self.scales[0]))
        for stage, size in zip(self.body, self.scales[1:]):
            features = stage(features, self._resize(cond, size))
        return self.img_out(features)


def official_parser(**overrides: Any) -> PSFRParseNet:
    """The architecture of ``parse_multi_iter_90000.pth`` (options may be overridden)."""
    return PSFRParseNet(**{**OFFICIAL_PARSER_CONFIG, **overrides})


def official_generator(**overrides: Any) -> PSFRGenerator:
    """The architecture of ``psfrgan_epoch15_net_G.pth`` (options may be overridden)."""
    return PSFRGenerator(**{**OFFICIAL_GENERATOR_CONFIG, **overrides})
