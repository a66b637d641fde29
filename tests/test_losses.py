"""Training losses, discriminators and metrics (facefix.training.*): formulas checked
against hand computations, weight loading through the registry with random stand-ins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from facefix.compat import ensure_torchvision
from facefix.errors import WeightsError
from facefix.training import losses
from facefix.training.discriminators import (
    FacialComponentDiscriminator,
    MultiScalePatchDiscriminator,
    StyleGAN2Discriminator,
)
from facefix.training.losses import (
    ArcFaceResNet18,
    FacialComponentLoss,
    IdentityLoss,
    LossTerms,
    PerceptualLoss,
    VGGFeatures,
    build_identity,
    build_perceptual,
    feature_matching_loss,
    gan_loss,
    gram_matrix,
    l1_loss,
    load_arcface,
    mse_loss,
    pyramid_l1,
    r1_penalty,
    semantic_style_loss,
)
from facefix.metrics.pixel import batch_psnr, ms_ssim, psnr, ssim
from facefix.weights import WeightsResolver, get_entry


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- pixel losses ------------------------------------------------------------------


def test_l1_and_mse_with_weights_and_reductions():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert l1_loss(pred, target).item() == pytest.approx((1 + 2 + 2 + 3) / 4)
    assert mse_loss(pred, target).item() == pytest.approx((1 + 4 + 4 + 9) / 4)
    assert l1_loss(pred, target, reduction="sum").item() == pytest.approx(8)
    assert l1_loss(pred, target, reduction="none").shape == (2, 2)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Weighted mean: over where the weight is.
    assert l1_loss(pred, target, weight).item() == pytest.approx((1 + 3) / 2)
    assert mse_loss(pred, target, weight, reduction="sum").item() == pytest.approx(1 + 9)
    with pytest.raises(ValueError):
        l1_loss(pred, target, reduction="max")


def test_pyramid_l1_zero_for_identical_and_halves_successively():
    target = torch.rand(2, 3, 64, 64) * 2 - 1
    sizes = [(8, 8), (16, 16), (32, 32), (64, 64)]
    levels = losses.image_pyramid(target, sizes)
    half = F.interpolate(target, scale_factor=0.5, mode="bilinear", align_corners=False)
    quarter = F.interpolate(half, scale_factor=0.5, mode="bilinear", align_corners=False)
    assert torch.equal(levels[1], quarter) and torch.equal(levels[3], target)
    assert pyramid_l1(levels, target).item() == 0.0
    noisy = [level + 0.1 for level in levels]
    assert pyramid_l1(noisy, target).item() == pytest.approx(0.4, rel=1e-5)  # 4 levels x 0.1


def test_feature_matching_zero_when_equal_and_real_detached():
    real = [[torch.rand(2, 4, 8, 8), torch.rand(2, 8, 4, 4), torch.rand(2, 1, 2, 2)] for _ in range(3)]
    assert feature_matching_loss(real, real).item() == 0.0
    fake = [[(f + 0.5).requires_grad_() for f in scale] for scale in real]
    real_grad = [[r.clone().requires_grad_() for r in scale] for scale in real]
    loss = feature_matching_loss(fake, real_grad)
    # Logits are left out: 2 features x 0.5 per discriminator, averaged over 3.
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert fake[0][0].grad is not None and fake[0][2].grad is None
    assert all(r.grad is None for scale in real_grad for r in scale)
    assert feature_matching_loss(fake, real, include_logits=True).item() == pytest.approx(1.5)


# --- GAN losses --------------------------------------------------------------------

LOGITS = [-2.0, 0.5, 3.0]


def _mean(values):
    return sum(values) / len(values)


def _softplus(v):
    return math.log1p(math.exp(v))


@pytest.mark.parametrize("for_discriminator", [True, False])
def test_softplus_and_vanilla_gan_losses(for_discriminator):
    x = torch.tensor([LOGITS])
    real = _mean([_softplus(-v) for v in LOGITS])
    fake = _mean([_softplus(v) for v in LOGITS])
    assert gan_loss(x, True, "softplus", for_discriminator).item() == pytest.approx(real, rel=1e-6)
    assert gan_loss(x, False, "softplus", for_discriminator).item() == pytest.approx(fake, rel=1e-6)
    sigmoid = [1 / (1 + math.exp(-v)) for v in LOGITS]
    bce_real = _mean([-math.log(s) for s in sigmoid])
    bce_fake = _mean([-math.log(1 - s) for s in sigmoid])
    assert gan_loss(x, True, "vanilla", for_discriminator).item() == pytest.approx(bce_real, rel=1e-6)
    assert gan_loss(x, False, "vanilla", for_discriminator).item() == pytest.approx(bce_fake, rel=1e-6)


def test_hinge_gan_loss():
    x = torch.tensor([LOGITS])
    assert gan_loss(x, True, "hinge", for_discriminator=True).item() == pytest.approx((3 + 0.5 + 0) / 3)
    assert gan_loss(x, False, "hinge", for_discriminator=True).item() == pytest.approx((0 + 1.5 + 4) / 3)
    assert gan_loss(x, True, "hinge", for_discriminator=False).item() == pytest.approx(-0.5)
    outputs = [[x], [x * 0]]  # per-scale lists, logits last
    assert losses.multiscale_gan_loss(outputs, True, "hinge", True).item() == pytest.approx((3.5 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        gan_loss(x, True, "wasserstein")


def test_r1_penalty_matches_linear_discriminator():
    weight = torch.randn(3, 8, 8)
    images = torch.randn(4, 3, 8, 8, requires_grad=True)
    logits = (images * weight).flatten(1).sum(1, keepdim=True)  # D(x) = <w, x>: gradient w
    penalty = r1_penalty(logits, images)
    assert penalty.item() == pytest.approx(weight.square().sum().item(), rel=1e-5)
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(logits, images.detach())


# --- VGG perceptual ----------------------------------------------------------------

# (channels, side) of each feature map for a 64x64 input
VGG19_SHAPES = {
    "conv1_2": (64, 64), "conv2_2": (128, 32), "conv3_4": (256, 16), "conv4_4": (512, 8), "conv5_4": (512, 4),
}  # fmt: skip
VGG16_SHAPES = {
    "conv1_2": (64, 64), "conv2_2": (128, 32), "conv3_3": (256, 16), "conv4_3": (512, 8), "conv5_3": (512, 4),
}  # fmt: skip


def _save_torchvision_vgg(arch: str, directory) -> tuple[str, dict]:
    """torchvision's randomly initialised VGG saved under the official file name.

    Only ``features.*`` (and one small classifier key, which loading ignores) are saved:
    the classifier would be 0.5 GB of temp files for nothing.
    """
    model = getattr(ensure_torchvision().models, arch)(weights=None)
    state = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    state["classifier.6.bias"] = model.classifier[6].bias.detach().clone()
    filename = get_entry(arch).filename
    torch.save(state, directory / filename)
    return filename, state


@pytest.mark.parametrize("arch,shapes", [("vgg19", VGG19_SHAPES), ("vgg16", VGG16_SHAPES)])
def test_vgg_features_load_torchvision_file(tmp_path, arch, shapes):
    filename, state = _save_torchvision_vgg(arch, tmp_path)
    path = WeightsResolver(model_dir=tmp_path, allow_download=False).resolve(arch)
    assert path.name == filename
    vgg = VGGFeatures(arch, tuple(shapes), path)
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    out = vgg(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert {name: (t.shape[1], t.shape[2]) for name, t in out.items()} == shapes
    # Features before activation: conv outputs keep their negative values.
    assert (out["conv1_2"] < 0).any()


def test_vgg_relu_names_and_normalisation():
    vgg = VGGFeatures("vgg19", ("conv1_2", "relu1_2", "relu3_1"))
    assert losses.vgg_layer_index("vgg19", "conv5_4") == 34 and losses.vgg_layer_index("vgg16", "conv5_3") == 28
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    out = vgg(x)
    assert torch.equal(out["relu1_2"], F.relu(out["conv1_2"]))  # no in-place ReLU clobbering
    assert out["relu3_1"].shape == (1, 256, 8, 8)
    mean = torch.tensor(losses.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(losses.IMAGENET_STD).view(1, 3, 1, 1)
    first = VGGFeatures("vgg19", ("conv1_1",))
    assert len(first.features) == 1  # layers past the deepest requested one are dropped
    normalised = ((x + 1) / 2 - mean) / std  # [-1, 1] -> [0, 1] -> ImageNet statistics
    assert torch.allclose(first(x)["conv1_1"], first.features[0](normalised), atol=1e-6)
    raw = VGGFeatures("vgg19", ("conv1_1",), normalize=False)
    raw.load_state_dict(first.state_dict())
    assert torch.allclose(raw(normalised)["conv1_1"], first(x)["conv1_1"], atol=1e-6)
    with pytest.raises(ValueError, match="no layer"):
        VGGFeatures("vgg16", ("conv3_4",))


def test_perceptual_loss_zero_for_identical_positive_otherwise(tmp_path):
    _save_torchvision_vgg("vgg19", tmp_path)
    resolver = WeightsResolver(model_dir=tmp_path, allow_download=False)
    loss = build_perceptual(resolver, "vgg19", style_weight=50.0)
    assert isinstance(loss, PerceptualLoss)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    perceptual, style = loss(x, x.clone())
    assert perceptual.item() == 0.0 and style.item() == 0.0
    y = (x + 0.2 * torch.randn_like(x)).clamp(-1, 1).requires_grad_()
    perceptual, style = loss(y, x)
    assert perceptual.item() > 0 and style.item() > 0
    (perceptual + style).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    only_style = PerceptualLoss(losses.GFPGAN_LAYER_WEIGHTS, style_weight=1.0, perceptual_weight=0.0, features=loss.vgg)
    assert only_style(y, x)[0].item() == 0.0


def test_gram_matrix_normalisation():
    f = torch.ones(1, 2, 3, 4)
    assert torch.allclose(gram_matrix(f), torch.full((1, 2, 2), 12 / (2 * 3 * 4)))


def test_build_perceptual_missing_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFIX_OFFLINE", "1")
    empty = tmp_path / "models"
    empty.mkdir()
    with pytest.raises(WeightsError) as caught:
        build_perceptual(WeightsResolver(model_dir=empty), "vgg19")
    message = str(caught.value)
    assert "\n" not in message
    assert "vgg19-dcbb9e9d.pth" in message and "--no-perceptual" in message
    with pytest.raises(WeightsError) as caught:
        build_identity(WeightsResolver(model_dir=empty))
    message = str(caught.value)
    assert "\n" not in message and "arcface_resnet18.pth" in message and "--no-identity" in message


def test_vgg_wrong_file_is_a_weights_error(tmp_path):
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "vgg16-397923af.pth")
    with pytest.raises(WeightsError) as caught:
        losses.build_vgg(WeightsResolver(model_dir=tmp_path, allow_download=False), "vgg16")
    assert tuple(losses.VGGFeatures("vgg16").layers) == tuple(losses.DEFAULT_LAYER_WEIGHTS["vgg16"])
    assert "not torchvision vgg16 weights" in str(caught.value) and "--no-perceptual" in str(caught.value)


def test_registry_entries_for_losses():
    vgg19, vgg16, arcface = get_entry("vgg19"), get_entry("vgg16"), get_entry("arcface-resnet18")
    assert vgg19.filename == "vgg19-dcbb9e9d.pth" and vgg19.component == "loss:perceptual"
    assert vgg19.sha256 == "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
    assert vgg16.sha256 == "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
    assert arcface.filename == "arcface_resnet18.pth" and not arcface.pinned
    assert arcface.component == "loss:identity"


# --- identity (ArcFace) ------------------------------------------------------------

#: From GFP-GAN's ResNetArcFace(block=IRBlock, layers=[2, 2, 2, 2], use_se=False).
ARCFACE_KEYS = {
    "conv1.weight": (64, 1, 3, 3),
    "bn1.running_mean": (64,),
    "prelu.weight": (1,),
    "layer1.0.bn0.weight": (64,),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.1.prelu.weight": (1,),
    "layer2.0.conv1.weight": (64, 64, 3, 3),
    "layer2.0.conv2.weight": (128, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_var": (128,),
    "layer4.1.conv2.weight": (512, 512, 3, 3),
    "bn4.weight": (512,),
    "fc5.weight": (512, 512 * 8 * 8),
    "fc5.bias": (512,),
    "bn5.running_mean": (512,),
}
ARCFACE_PARAMETERS = 25_627_081  # conv/BN/PReLU/fc weights, buffers not counted
ARCFACE_STATE_ENTRIES = 181


def test_arcface_layout_matches_reference():
    network = ArcFaceResNet18()
    state = network.state_dict()
    assert {k: tuple(state[k].shape) for k in ARCFACE_KEYS} == ARCFACE_KEYS
    assert len(state) == ARCFACE_STATE_ENTRIES
    assert sum(p.numel() for p in network.parameters()) == ARCFACE_PARAMETERS
    assert "layer1.0.downsample.0.weight" not in state and not any(".se." in k for k in state)
    network.eval()
    with torch.no_grad():
        assert network(torch.rand(2, 1, 128, 128) * 2 - 1).shape == (2, 512)


def test_arcface_file_loads_strict_and_identity_loss(tmp_path):
    reference = ArcFaceResNet18()
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}  # DataParallel-saved
    torch.save(state, tmp_path / "arcface_resnet18.pth")
    loss = build_identity(WeightsResolver(model_dir=tmp_path, allow_download=False))
    assert isinstance(loss, IdentityLoss)
    assert torch.equal(loss.network.fc5.weight, reference.fc5.weight)
    loss.train()
    assert not loss.network.training
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    assert loss(x, x.clone()).item() == 0.0
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_()
    value = loss(y, x)
    assert value.item() > 0
    value.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    gray = losses.gray_resize_for_identity(x)
    assert gray.shape == (2, 1, 128, 128)
    broken = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc5")}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(WeightsError, match="missing keys: fc5"):
        load_arcface(tmp_path / "broken.pth")


# --- semantic style ----------------------------------------------------------------


def _feats(batch=2):
    return [torch.rand(batch, 8, 16, 16), torch.rand(batch, 16, 8, 8)]


def test_semantic_style_loss():
    real = _feats()
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, :16] = 1
    masks[1, 16:, 16:] = 10
    assert semantic_style_loss(real, real, masks).item() == 0.0
    fake = [f + 0.3 * torch.randn_like(f) for f in real]
    value = semantic_style_loss(fake, real, masks)
    assert value.item() > 0
    # Absent classes play no part: more possible classes, same loss.
    assert semantic_style_loss(fake, real, masks, num_classes=25).item() == pytest.approx(value.item())
    # "all" divides by every (sample, class) pair instead: 2 x 19 vs the 5 present pairs.
    all_classes = semantic_style_loss(fake, real, masks, classes="all").item()
    present_pairs = 2 + 2 + 1  # classes 0 and 1 in both samples, 10 in the second (at every layer size)
    assert all_classes == pytest.approx(value.item() * present_pairs / (2 * 19), rel=1e-5)


def test_semantic_style_uniform_mask_is_plain_gram_loss():
    real, fake = _feats(), _feats()
    masks = torch.full((2, 32, 32), 3, dtype=torch.long)
    expected = sum(F.mse_loss(gram_matrix(f), gram_matrix(r)) for f, r in zip(fake, real))
    assert semantic_style_loss(fake, real, masks).item() == pytest.approx(expected.item(), rel=1e-5)
    fake = [f.requires_grad_() for f in fake]
    semantic_style_loss(fake, real, masks, criterion="l1").backward()
    assert fake[0].grad is not None


# --- discriminators ----------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128])
def test_stylegan2_discriminator(size):
    discriminator = StyleGAN2Discriminator(size, channel_multiplier=1, narrow=0.25)
    x = torch.randn(3, 3, size, size, requires_grad=True)  # 3: not a multiple of the group
    logits = discriminator(x)
    assert logits.shape == (3, 1)
    logits.sum().backward()
    assert x.grad is not None and discriminator.conv_body[0][0].weight.grad is not None
    keys = discriminator.state_dict()
    expected = {
        "conv_body.0.0.weight", "conv_body.0.1.bias", "conv_body.1.conv1.0.weight", "conv_body.1.skip.1.weight",
        "final_conv.0.weight", "final_linear.0.weight", "final_linear.1.bias",
    }  # fmt: skip
    assert expected <= set(keys)
    assert keys["final_conv.0.weight"].shape[1] == int(512 * 0.25) + 1  # + the stddev feature


def test_stylegan2_discriminator_full_width_channels():
    discriminator = StyleGAN2Discriminator(32)
    assert discriminator.conv_body[0][0].weight.shape == (512, 3, 1, 1)
    assert discriminator(torch.randn(4, 3, 32, 32)).shape == (4, 1)
    with pytest.raises(ValueError):
        StyleGAN2Discriminator(48)


def test_multiscale_patch_discriminator():
    discriminator = MultiScalePatchDiscriminator(num_d=3, n_layers=4, base_channels=16, input_channels=3 + 19)
    x = torch.randn(2, 22, 64, 64, requires_grad=True)
    outputs = discriminator(x)
    assert len(outputs) == 3
    assert all(len(scale) == 4 + 2 for scale in outputs)
    assert [scale[0].shape[-1] for scale in outputs] == [64, 32, 16]
    assert all(scale[-1].shape[1] == 1 for scale in outputs)
    assert any("weight_orig" in key for key in discriminator.state_dict())  # spectral norm
    sum(scale[-1].mean() for scale in outputs).backward()
    assert x.grad is not None


def test_facial_component_discriminator():
    discriminator = FacialComponentDiscriminator()
    logits, feats = discriminator(torch.randn(2, 3, 20, 20))
    assert logits.shape[:2] == (2, 1) and len(feats) == 2
    assert feats[0].shape[1] == 128 and feats[1].shape[1] == 256
    keys = set(discriminator.state_dict())
    assert {"conv1.0.weight", "conv2.1.weight", "conv5.1.bias", "final_conv.0.weight"} <= keys


# --- facial components -------------------------------------------------------------


def test_roi_align_crops_on_cpu():
    ramp = torch.arange(64, dtype=torch.float32).view(1, 1, 1, 64).expand(2, 3, 64, 64).contiguous()
    boxes = torch.tensor([[[8.0, 8, 24, 24], [40, 8, 56, 24], [16, 40, 48, 56]]]).repeat(2, 1, 1)
    crops = losses.roi_crops(ramp, boxes, eye_size=16, mouth_size=32)
    assert crops["left_eye"].shape == (2, 3, 16, 16) and crops["mouth"].shape == (2, 3, 32, 32)
    # Bilinear sampling of a linear ramp at bin centres (aligned=False, as in GFP-GAN).
    assert torch.allclose(crops["left_eye"][0, 0, 0], torch.arange(16) + 8.5)
    assert torch.allclose(crops["right_eye"][1, 0, 0], torch.arange(16) + 40.5)


def _torchvision_python_roi_align():
    """torchvision's pure-PyTorch ROI Align (the fallback used without its compiled
    kernels), unwrapped from its lazy ``torch.compile`` so the test stays fast."""
    import sys

    ensure_torchvision()
    module = sys.modules.get("torchvision.ops.roi_align")
    function = getattr(getattr(module, "_roi_align", None), "__wrapped__", None)
    if function is None:
        pytest.skip("torchvision's Python ROI Align is not available")
    return function


@pytest.mark.parametrize("aligned,sampling_ratio", [(False, -1), (True, -1), (False, 2)])
def test_roi_align_separable_matches_torchvision(aligned, sampling_ratio):
    reference = _torchvision_python_roi_align()
    images = torch.randn(2, 3, 24, 20, dtype=torch.float64)
    rois = torch.tensor(
        [[0, 2.3, 3.1, 14.7, 11.2], [1, 0.0, 0.0, 19.0, 23.0], [1, 5.5, 6.25, 7.0, 20.5], [0, 12.0, 2.0, 12.4, 2.2]],
        dtype=torch.float64,
    )
    expected = reference(images, rois, 0.5, 5, 7, sampling_ratio, aligned)
    actual = losses.roi_align_separable(images, rois, (5, 7), 0.5, sampling_ratio, aligned)
    assert torch.allclose(actual, expected, atol=1e-10)
    # The path roi_crops takes on this machine gives the same, and is differentiable.
    images.requires_grad_()
    losses.roi_align(images, rois, (5, 7), 0.5, sampling_ratio, aligned).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_facial_component_loss_runs_and_backpropagates():
    component = FacialComponentLoss()
    assert component.roi_sizes(128) == (20, 30)
    fake = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_()
    real = torch.rand(2, 3, 128, 128) * 2 - 1
    boxes = torch.tensor([[[38.0, 50, 58, 70], [70, 50, 90, 70], [44, 82, 84, 102]],
                          [[36.0, 48, 60, 72], [68, 48, 92, 72], [42, 80, 86, 104]]])  # fmt: skip
    gan, style = component(fake, real, boxes)
    assert torch.isfinite(gan) and torch.isfinite(style) and style.item() > 0
    (gan + style).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    same = component.generator_loss(fake, real, boxes)
    assert torch.equal(same[0], gan) and torch.equal(same[1], style)
    component.zero_grad()
    d_loss = component.discriminator_loss(fake, real, boxes)
    assert torch.isfinite(d_loss)
    d_loss.backward()
    assert component.discriminators["mouth"].conv1[0].weight.grad is not None


# --- metrics -----------------------------------------------------------------------


def test_psnr():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == math.inf
    b = np.full((8, 8, 3), 10, np.uint8)  # MSE 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[1] += 0.2  # MSE 0.04 over a range of 2
    values = batch_psnr(x, y)
    assert values[0].item() == math.inf and values[1].item() == pytest.approx(10 * math.log10(4 / 0.04), rel=1e-5)


def _slow_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM by definition: every 11x11 Gaussian window (σ 1.5) that fits,
    weighted statistics computed directly; mean over windows, then over channels."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    per_channel = []
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        values = []
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cxy = (w * (px - mx) * (py - my)).sum()
                values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        per_channel.append(np.mean(values))
    return float(np.mean(per_channel))


def test_ssim_against_slow_reference():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (21, 24, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    value = ssim(a, b)
    assert value < 1
    assert value == pytest.approx(_slow_ssim(a, b), abs=1e-3)
    smooth = np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (21, 1))[..., None].repeat(3, 2)
    shifted = np.clip(smooth.astype(int) + 3, 0, 255).astype(np.uint8)
    assert ssim(smooth, shifted) == pytest.approx(_slow_ssim(smooth, shifted), abs=1e-3)


def test_ms_ssim():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ms_ssim(a, b) < 1
    with pytest.raises(ValueError):
        ms_ssim(a[:8, :8], b[:8, :8])


def test_loss_terms_sum_weighted_terms_and_log_each_one():
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    terms = LossTerms()
    terms.add("a", a * a, 0.5)
    terms.add("b", b)
    total, parts = terms.result()
    assert float(total) == 0.5 * 4 + 3
    assert parts == {"a": 2.0, "b": 3.0, "g": 5.0}
    total.backward()
    assert float(a.grad) == 2.0 and float(b.grad) == 1.0  # d(0.5 a²)/da = a
    with pytest.raises(ValueError, match="no loss term"):
        LossTerms(total_name=None).result()
