"""GFP-GAN networks with the released checkpoints' state-dict layout.

Two architectures, matching ``gfpgan`` 1.3.8 (``gfpgan/archs/gfpganv1_arch.py`` and
``gfpganv1_clean_arch.py``) key for key and, for the same weights and input, output
for output (``randomize_noise=False``):

* :class:`GFPGANv1` — ``GFPGANv1.pth``: StyleGAN2 decoder with the original ops
  (FIR resampling, fused leaky ReLU; plain PyTorch here), equalized-lr U-Net.
* :class:`GFPGANv1Clean` — ``GFPGANCleanv1-NoCE-C2.pth``, ``GFPGANv1.2/1.3/1.4.pth``:
  plain convolutions and bilinear resampling everywhere.

Both are a U-Net whose bottleneck gives one w code per StyleGAN2 layer
(``different_w``) and whose decoder features give, at every resolution, a spatial
scale and shift applied to (half of) the StyleGAN2 features after the upsampling
conv (channel-split SFT).

Fidelity: ``fidelity`` in ``[0, 1]`` scales the SFT conditions toward identity
(``scale → 1 + f·(scale − 1)``, ``shift → f·shift``). 1 (default) is the reference
network exactly; 0 renders the StyleGAN2 prior from the encoder's latent alone, with
no spatial conditioning (smoother, more "generated", less faithful to the input);
values between trade one for the other. The reference's ``weight`` argument did
nothing; this one changes the output.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from facefix.nn.stylegan2 import (
    BLUR_TAPS,
    LRELU_SLOPE,
    ConvLayer,
    ConvUpLayer,
    EqualConv2d,
    EqualLinear,
    FidelityControl,
    ResBlock,
    ScaledLeakyReLU,
    StyleGAN2Generator,
    channel_plan,
    channel_split_sft,
    check_fidelity,
    conditioned,
)

#: Constructor options of the released checkpoints (``gfpgan.utils.GFPGANer``).
OFFICIAL_CONFIGS: dict[str, dict[str, Any]] = {
    # GFPGANv1.pth
    "original": dict(
        out_size=512, num_style_feat=512, channel_multiplier=1, decoder_load_path=None, fix_decoder=True,
        num_mlp=8, lr_mlp=0.01, input_is_latent=True, different_w=True, narrow=1, sft_half=True,
    ),
    # GFPGANCleanv1-NoCE-C2.pth, GFPGANv1.2.pth, GFPGANv1.3.pth, GFPGANv1.4.pth
    "clean": dict(
        out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=True,
        num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True,
    ),
}  # fmt: skip


class _GFPGAN(FidelityControl, nn.Module):
    """What both architectures share: the forward pass and the fidelity control.

    Subclasses build ``conv_body_first``, ``conv_body_down``, ``final_conv``,
    ``conv_body_up``, ``toRGB``, ``final_linear``, ``stylegan_decoder``,
    ``condition_scale`` and ``condition_shift`` and define :meth:`_stem` / :meth:`_bottleneck`.
    """

    def __init__(
        self, out_size: int, num_style_feat: int, input_is_latent: bool, different_w: bool, sft_half: bool,
        fidelity: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.out_size = out_size
        self.log_size = int(math.log2(out_size))
        self.num_style_feat = num_style_feat
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.sft_half = sft_half
        self.fidelity = fidelity

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _bottleneck(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _load_decoder(self, path: str | Path | None, freeze: bool) -> None:
        if path:
            from facefix.checkpoints import read_checkpoint

            self.stylegan_decoder.load_state_dict(read_checkpoint(path).state)
        if freeze:
            for parameter in self.stylegan_decoder.parameters():
                parameter.requires_grad = False

    def forward(
        self,
        x: torch.Tensor,
        return_latents: bool = False,
        return_rgb: bool = True,
        randomize_noise: bool = False,
        fidelity: float | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Restore ``x`` (``(B, 3, S, S)``, RGB in ``[-1, 1]``).

        Returns ``(image, rgbs)``: the restored faces and, with ``return_rgb``, the
        U-Net's intermediate RGB predictions from 8x8 up to ``S`` (the reference's
        pyramid-loss outputs). ``return_latents`` is accepted for compatibility and,
        as in the reference, changes nothing. ``randomize_noise=True`` draws fresh
        noise (training); the default uses the fixed noise buffers. ``fidelity``
        overrides :attr:`fidelity` for this call. Extra keyword arguments (the
        reference's ``weight``) are ignored.
        """
        strength = self.fidelity if fidelity is None else check_fidelity(fidelity)
        features = self._stem(x)
        skips = []
        for block in self.conv_body_down:
            features = block(features)
            skips.append(features)
        features = self._bottleneck(features)

        codes = self.final_linear(features.flatten(1))
        if self.different_w:
            codes = codes.reshape(codes.shape[0], -1, self.num_style_feat)

        conditions: list[tuple[torch.Tensor, torch.Tensor]] = []
        rgbs: list[torch.Tensor] = []
        if conditioned(strength) or return_rgb:  # the U-Net decoder is needed only for these
            for level, block in enumerate(self.conv_body_up):
                features = block(features + skips[-1 - level])
                if conditioned(strength):
                    conditions.append((self.condition_scale[level](features), self.condition_shift[level](features)))
                if return_rgb:
                    rgbs.append(self.toRGB[level](features))

        def sft(level: int, decoder_features: torch.Tensor) -> torch.Tensor:
            if level >= len(conditions):
                return decoder_features
            scale, shift = conditions[level]
            return channel_split_sft(decoder_features, scale, shift, half=self.sft_half, strength=strength)

        image, _ = self.stylegan_decoder(
            codes, input_is_latent=self.input_is_latent, randomize_noise=randomize_noise, feature_hook=sft
        )
        return image, rgbs


def _sft_branches(channels: dict[int, int], log_size: int, sft_half: bool, make_branch) -> tuple[nn.ModuleList, ...]:
    scale, shift = nn.ModuleList(), nn.ModuleList()
    for log_res in range(3, log_size + 1):
        width = channels[2**log_res]
        out_width = width if sft_half else 2 * width
        scale.append(make_branch(width, out_width, 1.0))
        shift.append(make_branch(width, out_width, 0.0))
    return scale, shift


# --------------------------------------------------------------------------- GFPGANv1 (original ops)


class ResUpBlock(nn.Module):
    """Upsampling residual block of the GFPGANv1 U-Net: ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, padding=1)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class GFPGANv1(_GFPGAN):
    """GFP-GAN v1 (``GFPGANv1.pth``): equalized-lr U-Net + original-ops StyleGAN2 decoder.

    Arguments as in the reference (see :data:`OFFICIAL_CONFIGS` ``["original"]`` for the
    released model). ``decoder_load_path``: a StyleGAN2 checkpoint for the decoder;
    ``fix_decoder``: freeze it. ``fidelity``: see the module docstring.
    """

    def __init__(
        self,
        out_size: int,
        num_style_feat: int = 512,
        channel_multiplier: float = 1,
        resample_kernel: tuple[int, ...] = BLUR_TAPS,
        decoder_load_path: str | Path | None = None,
        fix_decoder: bool = True,
        num_mlp: int = 8,
        lr_mlp: float = 0.01,
        input_is_latent: bool = False,
        different_w: bool = False,
        narrow: float = 1,
        sft_half: bool = False,
        fidelity: float = 1.0,
    ) -> None:
        super().__init__(out_size, num_style_feat, input_is_latent, different_w, sft_half, fidelity)
        unet = channel_plan(channel_multiplier, narrow * 0.5)  # the U-Net is half as wide

        self.conv_body_first = ConvLayer(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList(
            ResBlock(unet[2**log_res], unet[2 ** (log_res - 1)], resample_kernel)
            for log_res in range(self.log_size, 2, -1)
        )
        self.final_conv = ConvLayer(unet[4], unet[4], 3)
        self.conv_body_up = nn.ModuleList(
            ResUpBlock(unet[2 ** (log_res - 1)], unet[2**log_res]) for log_res in range(3, self.log_size + 1)
        )
        self.toRGB = nn.ModuleList(EqualConv2d(unet[2**log_res], 3, 1) for log_res in range(3, self.log_size + 1))
        num_codes = (2 * self.log_size - 2) if different_w else 1
        self.final_linear = EqualLinear(unet[4] * 4 * 4, num_codes * num_style_feat)
        self.stylegan_decoder = StyleGAN2Generator(
            out_size, num_style_feat, num_mlp, channel_multiplier, narrow, lr_mlp, "original", resample_kernel
        )
        self._load_decoder(decoder_load_path, fix_decoder)

        def branch(width: int, out_width: int, bias_init: float) -> nn.Sequential:
            return nn.Sequential(
                EqualConv2d(width, width, 3, padding=1),
                ScaledLeakyReLU(),
                EqualConv2d(width, out_width, 3, padding=1, bias_init=bias_init),
            )

        self.condition_scale, self.condition_shift = _sft_branches(unet, self.log_size, sft_half, branch)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_body_first(x)

    def _bottleneck(self, features: torch.Tensor) -> torch.Tensor:
        return self.final_conv(features)


# --------------------------------------------------------------------------- GFPGANv1Clean


class BilinearResBlock(nn.Module):
    """Residual block of the clean U-Net, resampling bilinearly by ``scale`` (0.5 or 2).

    ``lrelu(conv2(resize(lrelu(conv1(x))))) + skip(resize(x))``; keys ``conv1``,
    ``conv2``, ``skip`` (1x1, no bias).
    """

    def __init__(self, in_channels: int, out_channels: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        out = F.leaky_relu(self.conv2(self._resize(out)), LRELU_SLOPE)
        return out + self.skip(self._resize(x))


class GFPGANv1Clean(_GFPGAN):
    """GFP-GAN "clean" (v1.2 / v1.3 / v1.4, CleanV1-NoCE-C2): plain convs, bilinear resampling.

    Arguments as in the reference (see :data:`OFFICIAL_CONFIGS` ``["clean"]`` for the
    released models). ``fidelity``: see the module docstring.
    """

    def __init__(
        self,
        out_size: int,
        num_style_feat: int = 512,
        channel_multiplier: float = 1,
        decoder_load_path: str | Path | None = None,
        fix_decoder: bool = True,
        num_mlp: int = 8,
        input_is_latent: bool = False,
        different_w: bool = False,
        narrow: float = 1,
        sft_half: bool = False,
        fidelity: float = 1.0,
    ) -> None:
        super().__init__(out_size, num_style_feat, input_is_latent, different_w, sft_half, fidelity)
        unet = channel_plan(channel_multiplier, narrow * 0.5)

        self.conv_body_first = nn.Conv2d(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList(
            BilinearResBlock(unet[2**log_res], unet[2 ** (log_res - 1)], 0.5) for log_res in range(self.log_size, 2, -1)
        )
        self.final_conv = nn.Conv2d(unet[4], unet[4], 3, padding=1)
        self.conv_body_up = nn.ModuleList(
            BilinearResBlock(unet[2 ** (log_res - 1)], unet[2**log_res], 2.0) for log_res in range(3, self.log_size + 1)
        )
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[2**log_res], 3, 1) for log_res in range(3, self.log_size + 1))
        num_codes = (2 * self.log_size - 2) if different_w else 1
        self.final_linear = nn.Linear(unet[4] * 4 * 4, num_codes * num_style_feat)
        self.stylegan_decoder = StyleGAN2Generator(
            out_size, num_style_feat, num_mlp, channel_multiplier, narrow, flavour="clean"
        )
        self._load_decoder(decoder_load_path, fix_decoder)

        def branch(width: int, out_width: int, bias_init: float) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1),
                nn.LeakyReLU(LRELU_SLOPE),
                nn.Conv2d(width, out_width, 3, padding=1),
            )

        self.condition_scale, self.condition_shift = _sft_branches(unet, self.log_size, sft_half, branch)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv_body_first(x), LRELU_SLOPE)

    def _bottleneck(self, features: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.final_conv(features), LRELU_SLOPE)


def official_gfpgan(arch: str, **overrides: Any) -> GFPGANv1 | GFPGANv1Clean:
    """The network of a released checkpoint: ``arch`` is ``"original"`` (GFPGANv1.pth) or ``"clean"``."""
    if arch not in OFFICIAL_CONFIGS:
        raise ValueError(f"unknown GFPGAN arch {arch!r}; expected one of {', '.join(OFFICIAL_CONFIGS)}")
    options = {**OFFICIAL_CONFIGS[arch], **overrides}
    return GFPGANv1(**options) if arch == "original" else GFPGANv1Clean(**options)


__all__ = [
    "OFFICIAL_CONFIGS", "BilinearResBlock", "ConvUpLayer", "GFPGANv1", "GFPGANv1Clean", "ResUpBlock",
    "official_gfpgan",
]  # fmt: skip
