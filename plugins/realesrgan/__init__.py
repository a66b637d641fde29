"""Real-ESRGAN's background upsamplers: RRDBNet (x4plus, x2plus) and SRVGGNetCompact
(realesr-general-x4v3, realesr-animevideov3), under their release file names and URLs.

``facefix restore --bg-upsampler realesrgan-x2plus`` enlarges the background the way
GFPGAN's ``--bg_upsampler realesrgan`` does; ``facefix upscale`` runs them on whole images
and ``facefix export realesrgan`` / ``realesr-compact`` exports them. Real-ESRGAN
publishes no digests: the x4plus, x2plus and general-x4v3 files are unpinned (their
digest is printed when downloaded); realesr-animevideov3 is pinned to the digest of the
released file.
"""

from __future__ import annotations

from facefix import NetworkCard, StateRule, WeightsEntry, WeightsVariant, hookimpl, lazy

_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_LICENSE = "BSD-3-Clause (Real-ESRGAN)"

X4PLUS = WeightsEntry(
    name="realesrgan-x4plus", filename="RealESRGAN_x4plus.pth", urls=(f"{_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",),
    license=_LICENSE, component="upsampler:realesrgan-x4plus",
    description="Real-ESRGAN x4plus: RRDBNet 23 blocks, 4x, general photos")
X2PLUS = WeightsEntry(
    name="realesrgan-x2plus", filename="RealESRGAN_x2plus.pth", urls=(f"{_RELEASES}/v0.2.1/RealESRGAN_x2plus.pth",),
    license=_LICENSE, component="upsampler:realesrgan-x2plus",
    description="Real-ESRGAN x2plus: RRDBNet 23 blocks, 2x (GFPGAN's background upsampler)")
GENERAL_X4V3 = WeightsEntry(
    name="realesr-general-x4v3", filename="realesr-general-x4v3.pth",
    urls=(f"{_RELEASES}/v0.2.5.0/realesr-general-x4v3.pth",), license=_LICENSE,
    component="upsampler:realesr-general-x4v3",
    description="Real-ESRGAN general v3: SRVGGNetCompact 32 convs, 4x, small and fast")
ANIMEVIDEO_V3 = WeightsEntry(
    name="realesr-animevideov3", filename="realesr-animevideov3.pth",
    urls=(f"{_RELEASES}/v0.2.5.0/realesr-animevideov3.pth",),
    sha256="4e1e09ba96d08bd4b8455e8897c3242a3501e3766f359941ea894122e158a932", size=2334339, license=_LICENSE,
    component="upsampler:realesr-animevideov3",
    description="Real-ESRGAN anime video v3: SRVGGNetCompact 16 convs, 4x, for animation")

RRDB_CARD = NetworkCard(
    name="realesrgan", kind="upsampler", title="Real-ESRGAN RRDBNet",
    description="ESRGAN's RRDB generator as Real-ESRGAN trains it (x4, and x2 through pixel unshuffle)",
    architecture=lazy("facefix_plugins.realesrgan.arch:build_rrdb"),
    recognise=StateRule(all_of=("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_up1.weight",
                                "conv_hr.weight", "conv_last.weight")),
    infer_config=lazy("facefix_plugins.realesrgan.arch:infer_rrdb"),
    component=lazy("facefix_plugins.realesrgan.network:rrdb_upsampler"),
    precisions=("fp32",),
    rank=10,  # x4plus, for photos: `facefix upscale`'s default
    variants=(WeightsVariant("x4plus", X4PLUS, X4PLUS.description, names=("realesrgan-x4plus",)),
              WeightsVariant("x2plus", X2PLUS, X2PLUS.description, names=("realesrgan-x2plus",))),
    tiny_config={"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2},
)

COMPACT_CARD = NetworkCard(
    name="realesr-compact", kind="upsampler", title="Real-ESRGAN SRVGGNetCompact",
    description="Real-ESRGAN's compact VGG-style upsampler (convs at the input size, one pixel shuffle)",
    architecture=lazy("facefix_plugins.realesrgan.arch:build_srvgg"),
    recognise=StateRule(all_of=("body.0.weight", "body.0.bias"), none_of=("conv_first.weight",)),
    infer_config=lazy("facefix_plugins.realesrgan.arch:infer_srvgg"),
    component=lazy("facefix_plugins.realesrgan.network:srvgg_upsampler"),
    precisions=("fp32",),
    rank=20,  # general-x4v3; the anime model runs only when named
    variants=(WeightsVariant("general-x4v3", GENERAL_X4V3, GENERAL_X4V3.description, names=("realesr-general-x4v3",)),
              WeightsVariant("animevideov3", ANIMEVIDEO_V3, ANIMEVIDEO_V3.description, names=("realesr-animevideov3",))),
    tiny_config={"num_feat": 8, "num_conv": 2, "upscale": 2},
)


@hookimpl
def register_networks(register):
    register(RRDB_CARD)
    register(COMPACT_CARD)
