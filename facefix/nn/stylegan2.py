"""StyleGAN2 building blocks, shared by every restorer built on a StyleGAN2 prior.

Two flavours exist because released checkpoints were trained with two layouts:

``"original"``
    The ops of the StyleGAN2 paper as ported by basicsr (``basicsr/archs/stylegan2_arch.py``):
    equalized learning rate (weights stored at unit scale, multiplied by
    ``1/sqrt(fan_in)`` at run time), FIR resampling with the ``[1, 3, 3, 1]`` kernel
    (``upfirdn2d``) and a fused "bias + leaky ReLU(0.2) x sqrt(2)" activation. Both ops
    were CUDA extensions in the reference; here they are plain PyTorch, so they run
    on any device and export to ONNX.
``"clean"``
    The variant of ``gfpgan/archs/stylegan2_clean_arch.py``: ordinary ``nn.Linear`` /
    pre-scaled weights, bilinear resampling, a separate bias and ``nn.LeakyReLU``.

State-dict key names and shapes follow those two reference files exactly (for
instance ``style_convs.0.modulated_conv.weight``, ``style_convs.0.weight`` for the
noise strength, ``style_convs.0.activate.bias`` (original) or ``style_convs.0.bias``
(clean), ``style_mlp.1.weight``, ``to_rgb1.bias``, ``constant_input.weight``,
``noises.noise0``), so released weights load with ``strict=True``.

Design points:

* Noise is deterministic by default: the generator owns one fixed noise map per
  style conv, registered as buffers (``noises.noise{i}``, saved in checkpoints). Fresh
  noise is only drawn when a caller explicitly asks for it (``randomize_noise=True``
  or :meth:`StyleGAN2Generator.make_noise`), never implicitly in a layer.
* Modulated convolutions scale the *input* channels by the style and the *output*
  channels by the demodulation factor around one convolution with the shared
  weight. That is the same linear map as building a weight per sample (the
  reference's grouped-convolution trick), but it needs no batch-dependent groups, so
  it exports to ONNX with a dynamic batch size and costs less memory.
* Nothing in a forward pass branches on tensor values; all branches are on Python
  configuration, fixed at construction or export time.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

FLAVOURS = ("original", "clean")
LRELU_SLOPE = 0.2
#: Gain that keeps unit variance through a leaky ReLU with slope 0.2 (StyleGAN2's choice).
LRELU_GAIN = math.sqrt(2.0)
#: 1-D taps of the FIR filter StyleGAN2 uses around every resampling.
BLUR_TAPS = (1, 3, 3, 1)

#: ``hook(level, features) -> features``, called by the generator after the first
#: (upsampling) conv of each resolution level: level 0 is 8x8, level 1 16x16, ...
FeatureHook = Callable[[int, torch.Tensor], torch.Tensor]


def _check_flavour(flavour: str) -> str:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown StyleGAN2 flavour {flavour!r}; expected one of {FLAVOURS}")
    return flavour


def channel_plan(channel_multiplier: float = 2, narrow: float = 1.0) -> dict[int, int]:
    """Feature channels per resolution (4 … 1024) of a StyleGAN2 generator."""
    wide = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {
        size: int(base * narrow) if size <= 32 else int(base * channel_multiplier * narrow)
        for size, base in wide.items()
    }


# --------------------------------------------------------------------------- activations


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = LRELU_SLOPE,
    gain: float = LRELU_GAIN,
) -> torch.Tensor:
    """``leaky_relu(x + bias) * gain`` with ``bias`` broadcast along dim 1 (channels).

    The plain-PyTorch equivalent of StyleGAN2's ``fused_bias_act`` CUDA kernel.
    """
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * gain


class FusedLeakyReLU(nn.Module):
    """Per-channel bias followed by a scaled leaky ReLU (key: ``bias``)."""

    def __init__(self, channels: int, negative_slope: float = LRELU_SLOPE, gain: float = LRELU_GAIN) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.gain)


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU times sqrt(2), without a bias."""

    def __init__(self, negative_slope: float = LRELU_SLOPE) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope) * LRELU_GAIN


class PixelNorm(nn.Module):
    """Scales each style vector to unit root-mean-square over dim 1.

    Dim 1 is the feature axis of a ``(B, D)`` code; the reference normalises dim 1 of
    any input, and so does this (it matters only for 3-D inputs to the mapping net).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


# --------------------------------------------------------------------------- FIR resampling


def make_blur_kernel(taps: Sequence[float] = BLUR_TAPS) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum 1 (float32)."""
    kernel = torch.as_tensor(taps, dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = torch.outer(kernel, kernel)
    return kernel / kernel.sum()


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR filter, then keep every ``down``-th sample.

    ``x`` is ``(B, C, H, W)``; ``kernel`` is 2-D and applied to every channel alike
    (true convolution, i.e. the kernel is flipped). ``pad = (before, after)`` is applied
    to both spatial axes after upsampling; negative values crop. Output size per axis:
    ``(n * up + before + after - k) // down + 1``.
    """
    batch, channels, height, width = x.shape
    # Every channel is filtered alike: fold channels into the batch so that the filter
    # is one static (1, 1, k, k) kernel (ONNX needs static kernel shapes).
    x = x.reshape(-1, 1, height, width)
    if up > 1:
        # Each sample is followed by up-1 zeros, along both axes.
        x = x.reshape(-1, 1, height, 1, width, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(-1, 1, height * up, width * up)
    before, after = pad
    x = F.pad(x, (max(before, 0), max(after, 0), max(before, 0), max(after, 0)))
    if before < 0 or after < 0:
        rows, cols = x.shape[2], x.shape[3]
        x = x[:, :, max(-before, 0) : rows - max(-after, 0), max(-before, 0) : cols - max(-after, 0)]
    taps = torch.flip(kernel, (0, 1)).to(x.dtype)
    out = F.conv2d(x, taps[None, None], stride=down)
    return out.reshape(batch, channels, out.shape[2], out.shape[3])


class Blur(nn.Module):
    """Fixed FIR filter (``upfirdn2d``) with the paddings StyleGAN2 uses around resampling.

    ``mode``:

    * ``"up"``: 2x upsampling by itself (ToRGB skip path): zero insertion + filter.
    * ``"after_up"``: smoothing after a stride-2 transposed conv of size ``conv_size``.
    * ``"before_down"``: smoothing before a stride-2 conv of size ``conv_size``.

    The kernel is a non-persistent buffer: it follows ``.to()`` but is not part of the
    state dict (the reference keeps it as a plain attribute).
    """

    def __init__(self, mode: str, taps: Sequence[float] = BLUR_TAPS, conv_size: int = 1, factor: int = 2) -> None:
        super().__init__()
        kernel = make_blur_kernel(taps)
        extra = kernel.shape[0] - factor  # taps beyond the resampling factor
        self.up = 1
        if mode == "up":
            kernel = kernel * factor**2  # zero insertion drops the mean by factor**2
            self.up = factor
            self.pad = ((extra + 1) // 2 + factor - 1, extra // 2)
        elif mode == "after_up":
            kernel = kernel * factor**2
            extra -= conv_size - 1
            self.pad = ((extra + 1) // 2 + factor - 1, extra // 2 + 1)
        elif mode == "before_down":
            extra += conv_size - 1
            self.pad = ((extra + 1) // 2, extra // 2)
        else:
            raise ValueError(f"unknown blur mode {mode!r}")
        self.mode = mode
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.up, pad=self.pad)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, pad={self.pad}"


def _bilinear(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- equalized layers


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (keys: ``weight``, ``bias``).

    The weight is stored divided by ``lr_mul`` and multiplied at run time by
    ``lr_mul / sqrt(in_features)``; the bias is multiplied by ``lr_mul``.
    ``activation="fused_lrelu"`` applies :func:`fused_leaky_relu` with the bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear: unsupported activation {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.lr_mul = lr_mul
        self.activation = activation
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        weight = self.weight * self.weight_gain
        if self.activation == "fused_lrelu":
            return fused_leaky_relu(F.linear(x, weight), bias)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, lr_mul={self.lr_mul}"


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (keys: ``weight``, ``bias``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        out_channels, in_channels, size, _ = self.weight.shape
        return (
            f"{in_channels}, {out_channels}, kernel_size={size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


class ConvLayer(nn.Sequential):
    """[FIR blur →] equalized conv [→ activation], as in the StyleGAN2 discriminator.

    Keys: without downsampling ``0.weight`` (+ ``1.bias`` with activation); with
    downsampling ``1.weight`` (+ ``2.bias``). The conv has its own bias only when there
    is no activation (the fused activation carries it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_taps: Sequence[float] = BLUR_TAPS,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            layers.append(Blur("before_down", blur_taps, conv_size=kernel_size))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Downsampling residual block of the StyleGAN2 discriminator (original ops).

    ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``; keys ``conv1.*``, ``conv2.*``, ``skip.1.weight``.
    """

    def __init__(self, in_channels: int, out_channels: int, blur_taps: Sequence[float] = BLUR_TAPS) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_taps=blur_taps)
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, blur_taps=blur_taps, bias=False, activate=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class ConvUpLayer(nn.Module):
    """Bilinear 2x upsampling, then an equalized conv, then an optional activation.

    Keys: ``weight``; ``bias`` only without activation; ``activation.bias`` with the
    fused activation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        bias_init: float = 0.0,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias and not activate else None
        if not activate:
            self.activation = None
        else:
            self.activation = FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, stride=self.stride, padding=self.padding)
        return x if self.activation is None else self.activation(x)


# --------------------------------------------------------------------------- style layers


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution, optionally demodulated and resampling by 2.

    Keys: ``weight`` ``(1, out, in, k, k)`` and ``modulation.{weight,bias}`` (style →
    per-input-channel scale, bias initialised to 1). No bias of its own.

    ``sample_mode``: None, ``"upsample"`` or ``"downsample"``. The original flavour
    resamples with a stride-2 (transposed) conv plus FIR smoothing, the clean flavour
    with bilinear interpolation before a same-size conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        sample_mode: str | None = None,
        flavour: str = "original",
        blur_taps: Sequence[float] = BLUR_TAPS,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if sample_mode not in (None, "upsample", "downsample"):
            raise ValueError(f"unknown sample_mode {sample_mode!r}")
        self.flavour = _check_flavour(flavour)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.sample_mode = sample_mode
        self.eps = eps
        fan_in = in_channels * kernel_size**2
        if flavour == "original":
            # Unit-scale storage; the equalized-lr gain is applied in forward.
            self.weight_gain = 1.0 / math.sqrt(fan_in)
            self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
            self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
            if sample_mode == "upsample":
                self.smooth = Blur("after_up", blur_taps, conv_size=kernel_size)
            elif sample_mode == "downsample":
                self.smooth = Blur("before_down", blur_taps, conv_size=kernel_size)
        else:
            # Clean layout: the weight is stored already scaled.
            self.weight_gain = 1.0
            self.weight = nn.Parameter(
                torch.randn(1, out_channels, in_channels, kernel_size, kernel_size) / math.sqrt(fan_in)
            )
            self.modulation = nn.Linear(style_dim, in_channels)
            nn.init.kaiming_normal_(self.modulation.weight, a=0, mode="fan_in", nonlinearity="linear")
            nn.init.constant_(self.modulation.bias, 1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, in, H, W)``; ``style``: ``(B, style_dim)``."""
        scales = self.modulation(style)  # (B, in)
        weight = self.weight[0]
        if self.weight_gain != 1.0:
            weight = weight * self.weight_gain
        x = x * scales[:, :, None, None]
        if self.sample_mode == "upsample":
            if self.flavour == "original":
                # conv_transpose2d wants (in, out, k, k)
                out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            else:
                out = F.conv2d(_bilinear(x, 2.0), weight, padding=self.kernel_size // 2)
        elif self.sample_mode == "downsample":
            if self.flavour == "original":
                out = F.conv2d(self.smooth(x), weight, stride=2)
            else:
                out = F.conv2d(_bilinear(x, 0.5), weight, padding=self.kernel_size // 2)
        else:
            out = F.conv2d(x, weight, padding=self.kernel_size // 2)
        if self.demodulate:
            # 1/||w * s|| per (sample, output channel): sum_i s_i^2 * sum_k w[o, i, k]^2
            energy = scales.square() @ weight.square().sum(dim=(2, 3)).t()
            out = out * torch.rsqrt(energy + self.eps)[:, :, None, None]
        if self.sample_mode == "upsample" and self.flavour == "original":
            out = self.smooth(out)  # per-channel linear filter: commutes with demodulation
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"demodulate={self.demodulate}, sample_mode={self.sample_mode}, flavour={self.flavour}"
        )


class StyleConv(nn.Module):
    """Modulated conv + noise injection + bias + activation.

    Keys: ``modulated_conv.*``; ``weight`` ``(1,)`` is the noise strength (the
    reference's name); the bias is ``activate.bias`` ``(C,)`` in the original flavour
    and ``bias`` ``(1, C, 1, 1)`` in the clean one.

    ``noise``: a tensor broadcastable to ``(B, 1, H, W)`` (usually a fixed buffer), or
    None for no noise at all. Layers never draw noise themselves.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        sample_mode: str | None = None,
        flavour: str = "original",
        blur_taps: Sequence[float] = BLUR_TAPS,
    ) -> None:
        super().__init__()
        self.flavour = _check_flavour(flavour)
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, demodulate, sample_mode, flavour, blur_taps
        )
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        if flavour == "original":
            self.activate = FusedLeakyReLU(out_channels)
        else:
            self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style)
        if self.flavour == "original":
            if noise is not None:
                out = out + self.weight * noise
            return self.activate(out)
        out = out * LRELU_GAIN  # the clean layout folds the activation gain in here
        if noise is not None:
            out = out + self.weight * noise
        return F.leaky_relu(out + self.bias, LRELU_SLOPE)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, added to the upsampled skip.

    Keys: ``modulated_conv.*``, ``bias`` ``(1, 3, 1, 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        style_dim: int,
        upsample: bool = True,
        flavour: str = "original",
        blur_taps: Sequence[float] = BLUR_TAPS,
    ) -> None:
        super().__init__()
        self.flavour = _check_flavour(flavour)
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False, flavour=flavour)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = upsample
        if upsample and flavour == "original":
            self.skip_upsample = Blur("up", blur_taps)

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            if self.upsample:
                skip = self.skip_upsample(skip) if self.flavour == "original" else _bilinear(skip, 2.0)
            out = out + skip
        return out


def check_fidelity(value: float) -> float:
    """A fidelity setting (how strongly the degraded face steers a StyleGAN2 prior: 0 is
    the prior alone, 1 the network's own output), as a float within [0, 1]."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"fidelity must be within [0, 1], got {value}")
    return value


class FidelityControl:
    """A checked ``fidelity`` attribute in [0, 1], for networks whose degraded-input
    conditioning can be weakened toward their prior (GFP-GAN's SFT, MMRB's injected
    features, CFGPFSSR's CS-SFT); each network decides what the number scales."""

    _fidelity: float = 1.0

    @property
    def fidelity(self) -> float:
        return self._fidelity

    @fidelity.setter
    def fidelity(self, value: float) -> None:
        self._fidelity = check_fidelity(value)

    @contextlib.contextmanager
    def fidelity_from(self, value: torch.Tensor) -> Iterator[None]:
        """Within: the fidelity is the tensor ``value``, an exported graph's input, so one
        ONNX file serves every setting (the networks compute with it, never branch on it)."""
        saved = self._fidelity
        self._fidelity = value  # type: ignore[assignment]
        try:
            yield
        finally:
            self._fidelity = saved


def conditioned(strength: float | torch.Tensor) -> bool:
    """Whether conditioning at ``strength`` can change the output: a tensor (a graph input
    of any value) always can."""
    return isinstance(strength, torch.Tensor) or strength > 0.0


class ConstantInput(nn.Module):
    """Learned ``(1, C, size, size)`` input of the synthesis network (key: ``weight``)."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int | torch.Tensor) -> torch.Tensor:
        """``batch``: an int, or a tensor whose first dim is the batch size."""
        count = batch.shape[0] if isinstance(batch, torch.Tensor) else batch
        # a copy, not an expand(): a view of a parameter made under no_grad still claims
        # requires_grad, which breaks autograd hooks such as FlopCounterMode's module tracker
        return self.weight.repeat(count, 1, 1, 1)


class NoiseBank(nn.Module):
    """Fixed noise maps, one per style conv, as buffers ``noise0 … noise{n-1}``.

    Map ``i`` is ``(1, 1, r, r)`` with ``r = 2 ** ((i + 5) // 2)``: 4, 8, 8, 16, 16, …
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        for index in range(num_layers):
            size = self.resolution(index)
            self.register_buffer(f"noise{index}", torch.randn(1, 1, size, size))

    @staticmethod
    def resolution(index: int) -> int:
        return 2 ** ((index + 5) // 2)

    def maps(self) -> list[torch.Tensor]:
        return [getattr(self, f"noise{index}") for index in range(self.num_layers)]


def mapping_network(
    style_dim: int = 512, num_layers: int = 8, lr_mul: float = 0.01, flavour: str = "original"
) -> nn.Sequential:
    """The style MLP z → w: PixelNorm then ``num_layers`` fully connected layers.

    Original flavour: equalized layers with fused leaky ReLU (keys ``1 … n``); clean:
    ``nn.Linear`` + ``nn.LeakyReLU`` pairs (keys ``1, 3, …, 2n-1``).
    """
    layers: list[nn.Module] = [PixelNorm()]
    for _ in range(num_layers):
        if _check_flavour(flavour) == "original":
            layers.append(EqualLinear(style_dim, style_dim, lr_mul=lr_mul, activation="fused_lrelu"))
        else:
            linear = nn.Linear(style_dim, style_dim)
            nn.init.kaiming_normal_(linear.weight, a=LRELU_SLOPE, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.LeakyReLU(LRELU_SLOPE)]
    return nn.Sequential(*layers)


def channel_split_sft(
    features: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    half: bool = True,
    strength: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Spatial feature transform ``f * scale + shift``, on all channels or only the second half.

    ``half=True`` is GFP-GAN's channel-split SFT: the first ``C // 2`` channels pass
    unchanged (identity-preserving prior), the rest are modulated. ``strength`` in
    ``[0, 1]`` moves the transform toward identity: ``scale → 1 + strength * (scale - 1)``,
    ``shift → strength * shift``; 1 applies the conditions exactly, 0 not at all. A tensor
    ``strength`` (an exported graph's fidelity input) is always applied by that formula.
    """
    if isinstance(strength, torch.Tensor) or 0.0 < strength < 1.0:
        scale = 1.0 + strength * (scale - 1.0)
        shift = strength * shift
    elif strength <= 0.0:
        return features
    if not half:
        return features * scale + shift
    middle = features.shape[1] // 2
    return torch.cat([features[:, :middle], features[:, middle:] * scale + shift], dim=1)


# --------------------------------------------------------------------------- generator


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 synthesis network with its mapping MLP.

    Submodules (state-dict prefixes) as in the references: ``style_mlp``,
    ``constant_input``, ``style_conv1``, ``to_rgb1``, ``style_convs`` (two per
    resolution from 8 up: upsampling conv, then same-size conv), ``to_rgbs``,
    ``noises``.

    Args:
        out_size: output resolution, a power of two ≥ 8.
        num_style_feat: width of z / w (512 in released models).
        num_mlp: number of mapping layers.
        channel_multiplier: widens resolutions ≥ 64 (1 for GFPGANv1, 2 for clean v1.3/1.4).
        narrow: scales every width.
        lr_mlp: equalized-lr multiplier of the mapping layers (original flavour only).
        flavour: ``"original"`` (FIR + fused act) or ``"clean"`` (bilinear, plain layers).
        blur_taps: 1-D FIR taps of the original flavour.
    """

    def __init__(
        self,
        out_size: int,
        num_style_feat: int = 512,
        num_mlp: int = 8,
        channel_multiplier: float = 2,
        narrow: float = 1.0,
        lr_mlp: float = 0.01,
        flavour: str = "original",
        blur_taps: Sequence[float] = BLUR_TAPS,
    ) -> None:
        super().__init__()
        self.flavour = _check_flavour(flavour)
        self.log_size = int(math.log2(out_size))
        if 2**self.log_size != out_size or out_size < 8:
            raise ValueError(f"out_size must be a power of two >= 8, got {out_size}")
        self.out_size = out_size
        self.num_style_feat = num_style_feat
        self.channels = channel_plan(channel_multiplier, narrow)
        self.num_layers = 2 * (self.log_size - 2) + 1  # style convs (= noise maps)
        self.num_latent = 2 * self.log_size - 2  # w vectors consumed (W+ length)

        self.style_mlp = mapping_network(num_style_feat, num_mlp, lr_mlp, flavour)
        width = self.channels[4]
        self.constant_input = ConstantInput(width, 4)
        self.style_conv1 = StyleConv(width, width, 3, num_style_feat, flavour=flavour, blur_taps=blur_taps)
        self.to_rgb1 = ToRGB(width, num_style_feat, upsample=False, flavour=flavour, blur_taps=blur_taps)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for log_res in range(3, self.log_size + 1):
            out_width = self.channels[2**log_res]
            self.style_convs.append(
                StyleConv(width, out_width, 3, num_style_feat, sample_mode="upsample", flavour=flavour,
                          blur_taps=blur_taps)
            )  # fmt: skip
            self.style_convs.append(StyleConv(out_width, out_width, 3, num_style_feat, flavour=flavour))
            self.to_rgbs.append(ToRGB(out_width, num_style_feat, upsample=True, flavour=flavour, blur_taps=blur_taps))
            width = out_width
        self.noises = NoiseBank(self.num_layers)

    # -- latents

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Map z ``(B, D)`` to w ``(B, D)``."""
        return self.style_mlp(z)

    @torch.no_grad()
    def mean_latent(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Average w of ``count`` random z (the truncation centre), ``(1, D)``."""
        device = self.constant_input.weight.device
        z = torch.randn(count, self.num_style_feat, device=device, generator=generator)
        return self.style_mlp(z).mean(0, keepdim=True)

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh random noise maps (for training or sampling), one per style conv."""
        device = self.constant_input.weight.device
        return [
            torch.randn(batch, 1, size, size, device=device, generator=generator)
            for size in map(NoiseBank.resolution, range(self.num_layers))
        ]

    def _latent_stack(
        self,
        styles: Sequence[torch.Tensor],
        input_is_latent: bool,
        truncation: float,
        truncation_latent: torch.Tensor | None,
        inject_index: int | None,
    ) -> torch.Tensor:
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (see mean_latent)")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) == 1:
            w = styles[0]
            return w if w.ndim == 3 else w[:, None, :].repeat(1, self.num_latent, 1)
        if len(styles) == 2:  # style mixing: first code up to inject_index, second after
            if inject_index is None:
                inject_index = int(torch.randint(1, self.num_latent, ()).item())
            first = styles[0][:, None, :].repeat(1, inject_index, 1)
            second = styles[1][:, None, :].repeat(1, self.num_latent - inject_index, 1)
            return torch.cat([first, second], dim=1)
        raise ValueError(f"expected one or two style codes, got {len(styles)}")

    # -- synthesis

    def synthesize(
        self,
        latent: torch.Tensor,
        noise: Sequence[torch.Tensor | None] | None = None,
        feature_hook: FeatureHook | None = None,
    ) -> torch.Tensor:
        """Render ``latent`` (``(B, num_latent, D)`` w+ codes) to an RGB image.

        ``noise``: one map per style conv (None entries: no noise); default: the fixed
        buffers. ``feature_hook(level, x)`` may replace the features after the
        upsampling conv of each level (level 0 = 8x8), e.g. for SFT modulation.
        """
        if noise is None:
            noise = self.noises.maps()
        features = self.constant_input(latent)
        features = self.style_conv1(features, latent[:, 0], noise[0])
        rgb = self.to_rgb1(features, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            index = 2 * level + 1  # latent / noise index of this level's first conv
            features = self.style_convs[2 * level](features, latent[:, index], noise[index])
            if feature_hook is not None:
                features = feature_hook(level, features)
            features = self.style_convs[2 * level + 1](features, latent[:, index + 1], noise[index + 1])
            rgb = to_rgb(features, latent[:, index + 2], rgb)
        return rgb

    def forward(
        self,
        styles: torch.Tensor | Sequence[torch.Tensor],
        input_is_latent: bool = False,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        inject_index: int | None = None,
        return_latents: bool = False,
        feature_hook: FeatureHook | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Generate images; returns ``(image, latent or None)`` like the references.

        ``styles``: a code ``(B, D)`` or ``(B, num_latent, D)``, or a list of one or
        two codes (two: style mixing at ``inject_index``). ``input_is_latent``: the
        codes are already w (skip the mapping MLP). Noise: explicit ``noise`` wins;
        otherwise the fixed buffers, or fresh random maps with ``randomize_noise=True``.
        """
        if isinstance(styles, torch.Tensor):
            styles = [styles]
        latent = self._latent_stack(styles, input_is_latent, truncation, truncation_latent, inject_index)
        if noise is None and randomize_noise:
            noise = self.make_noise(latent.shape[0])  # independent noise per sample
        image = self.synthesize(latent, noise, feature_hook)
        return image, (latent if return_latents else None)


__all__ = [
    "BLUR_TAPS", "FLAVOURS", "LRELU_GAIN", "LRELU_SLOPE", "Blur", "ConstantInput", "ConvLayer", "ConvUpLayer",
    "EqualConv2d", "EqualLinear", "FeatureHook", "FidelityControl", "FusedLeakyReLU", "ModulatedConv2d", "NoiseBank",
    "PixelNorm", "ResBlock", "ScaledLeakyReLU", "StyleConv", "StyleGAN2Generator", "ToRGB",
    "channel_plan", "channel_split_sft", "fused_leaky_relu", "make_blur_kernel", "mapping_network",
    "upfirdn2d",
]  # fmt: skip
