"""Training losses shared by every network plugin.

Images are ``(B, 3, H, W)`` RGB tensors in ``[-1, 1]`` (the networks' I/O range).
Loss weights from the papers (see docs) are applied by the recipes, not here, except
where a module's constructor takes a weight explicitly (:class:`PerceptualLoss`).

Pretrained helper networks are never downloaded from here: :func:`build_perceptual`,
:func:`build_vgg` and :func:`build_identity` resolve registry entries (``vgg19``,
``vgg16``, ``arcface-resnet18``) through a :class:`~facefix.weights.WeightsResolver`
and turn a missing file into a one-line :class:`~facefix.errors.WeightsError` that
says how to get it or how to train without the loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from facefix.errors import WeightsError
from facefix.training.discriminators import FacialComponentDiscriminator
from facefix.weights import WeightsResolver, load_state_dict

# --------------------------------------------------------------------------- pixel losses


def _reduce(loss: torch.Tensor, weight: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; expected mean, sum or none")
    if weight is not None:
        weight = weight.expand_as(loss)
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    # Weighted mean: average over where the weight is (basicsr's convention).
    return loss.sum() / weight.sum().clamp_min(1e-12)


def l1_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Elementwise ``|pred - target|``; ``weight`` broadcasts to it; a weighted mean divides by ``sum(weight)``."""
    return _reduce((pred - target).abs(), weight, reduction)


def mse_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Elementwise ``(pred - target)^2``; reductions as :func:`l1_loss`."""
    return _reduce((pred - target).square(), weight, reduction)


def image_pyramid(target: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """``target`` resized to each size, bilinear.

    Sizes reached by halving are built by successive 0.5x bilinear steps from the full
    image (GFP-GAN's ``construct_img_pyramid``); any other size is resized directly.
    """
    halvings = {tuple(target.shape[-2:]): target}
    current = target
    smallest = min((h * w for h, w in sizes), default=0)
    while current.shape[-2] % 2 == 0 and current.shape[-1] % 2 == 0 and current[0, 0].numel() > smallest:
        current = F.interpolate(current, scale_factor=0.5, mode="bilinear", align_corners=False)
        halvings[tuple(current.shape[-2:])] = current
    return [
        halvings[tuple(size)]
        if tuple(size) in halvings
        else F.interpolate(target, size=tuple(size), mode="bilinear", align_corners=False)
        for size in sizes
    ]


def pyramid_l1(outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """GFP-GAN's pyramid restoration loss: sum over intermediate RGB outputs of
    ``L1(output_i, target resized to output_i's size)`` (mean L1 per level)."""
    if not outputs:
        return target.new_zeros(())
    levels = image_pyramid(target, [tuple(out.shape[-2:]) for out in outputs])
    return sum(F.l1_loss(out, level) for out, level in zip(outputs, levels))


def _criterion(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "l1":
        return F.l1_loss
    if name in ("l2", "mse"):
        return F.mse_loss
    if name == "fro":  # basicsr's option: Frobenius norm of the difference
        return lambda a, b: torch.linalg.vector_norm(a - b)
    raise ValueError(f"unknown criterion {name!r}; expected l1, l2 (mse) or fro")


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, C, C)``: ``F Fᵀ / (C·H·W)``."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


# --------------------------------------------------------------------------- VGG features


def _vgg_names(blocks: Sequence[int]) -> tuple[str, ...]:
    """Layer names in the order of torchvision's ``features`` (index = position)."""
    names: list[str] = []
    for block, convs in enumerate(blocks, start=1):
        for conv in range(1, convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


#: Names of the layers of torchvision's ``vgg19().features`` / ``vgg16().features``,
#: by index: ``VGG_LAYERS["vgg19"].index("conv5_4") == 34``.
VGG_LAYERS: dict[str, tuple[str, ...]] = {"vgg19": _vgg_names((2, 2, 4, 4, 4)), "vgg16": _vgg_names((2, 2, 3, 3, 3))}
_VGG_CFG = {"vgg19": "E", "vgg16": "D"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: GFP-GAN's perceptual layer weights (VGG19, features before activation).
GFPGAN_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
#: Default layer weights per architecture: GFP-GAN's for VGG19, the same pattern on
#: the corresponding (last conv of each block) VGG16 layers.
DEFAULT_LAYER_WEIGHTS = {
    "vgg19": GFPGAN_LAYER_WEIGHTS,
    "vgg16": {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0},
}


def vgg_layer_index(arch: str, name: str) -> int:
    """Index in torchvision's ``features`` of a named VGG layer (``conv3_4``, ``relu4_1``, ``pool2``)."""
    if arch not in VGG_LAYERS:
        raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
    try:
        return VGG_LAYERS[arch].index(name)
    except ValueError:
        raise ValueError(f"{arch} has no layer {name!r}; layers: {', '.join(VGG_LAYERS[arch])}") from None


def _vgg_feature_stack(arch: str) -> nn.Sequential:
    from facefix.compat import ensure_torchvision

    torchvision = ensure_torchvision()
    vgg = torchvision.models.vgg
    if hasattr(vgg, "make_layers") and hasattr(vgg, "cfgs"):
        # The same ``features`` stack as torchvision.models.vgg19(weights=None), without
        # allocating the 120M-parameter classifier that the losses never use.
        return vgg.make_layers(vgg.cfgs[_VGG_CFG[arch]], batch_norm=False)
    return getattr(torchvision.models, arch)(weights=None).features


class VGGFeatures(nn.Module):
    """Frozen torchvision VGG ``features`` returning named intermediate maps.

    ``layers`` defaults to the keys of ``DEFAULT_LAYER_WEIGHTS[arch]``.

    ``conv*`` names are the conv outputs **before** the ReLU (what GFP-GAN's perceptual
    loss uses); ``relu*`` names after it (PSFR-GAN's semantic style loss uses
    ``relu3_1``, ``relu4_1``, ``relu5_1``); ``pool*`` after max pooling. Layers past the
    deepest requested one are dropped.

    Input: RGB in ``[-1, 1]``, mapped to ``[0, 1]`` and normalised with the ImageNet
    mean/std (``normalize=False`` skips both). ``weights_path``: torchvision's file
    (``vgg19-dcbb9e9d.pth`` / ``vgg16-397923af.pth``, ``features.*`` keys; classifier
    keys are ignored), loaded through :func:`facefix.weights.load_state_dict`. ``None``
    keeps the random initialisation (tests only: the loss is meaningless then).
    The module stays in eval mode and its parameters never require grad; gradients
    still flow to the input.
    """

    def __init__(
        self,
        arch: str = "vgg19",
        layers: Sequence[str] | None = None,
        weights_path: Path | str | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if arch not in VGG_LAYERS:
            raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
        if layers is None:
            layers = tuple(DEFAULT_LAYER_WEIGHTS[arch])
        if not layers:
            raise ValueError("VGGFeatures needs at least one layer name")
        self.arch = arch
        self.layers = tuple(layers)
        self._indices = {vgg_layer_index(arch, name): name for name in self.layers}
        last = max(self._indices)
        self.features = nn.Sequential(*list(_vgg_feature_stack(arch))[: last + 1])
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # an in-place ReLU would overwrite the stored conv outputs
        if weights_path is not None:
            self._load(Path(weights_path))
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path) -> None:
        state = load_state_dict(path)
        state = {key.removeprefix("module."): value for key, value in state.items()}
        wanted = self.features.state_dict()
        picked, problems = {}, []
        for key, param in wanted.items():
            value = state.get(f"features.{key}")
            if value is None:
                problems.append(f"missing features.{key}")
            elif tuple(value.shape) != tuple(param.shape):
                problems.append(f"features.{key} has shape {tuple(value.shape)}, expected {tuple(param.shape)}")
            else:
                picked[key] = value
        if problems:
            more = f" (+{len(problems) - 2} more)" if len(problems) > 2 else ""
            raise WeightsError(f"{path}: not torchvision {self.arch} weights: {'; '.join(problems[:2])}{more}")
        self.features.load_state_dict(picked, strict=True)

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._indices:
                out[self._indices[index]] = x
        return out


class PerceptualLoss(nn.Module):
    """Perceptual and Gram style losses on VGG features (basicsr's ``PerceptualLoss``).

    ``forward(x, gt)`` returns ``(perceptual, style)``:

    * perceptual = ``perceptual_weight * Σ_l w_l · criterion(φ_l(x), φ_l(gt))``
    * style = ``style_weight * Σ_l w_l · criterion(G(φ_l(x)), G(φ_l(gt)))`` with
      :func:`gram_matrix` (normalised by ``C·H·W``).

    ``gt`` features are computed without gradient. A zero weight skips that term
    (returns a zero tensor). ``features``: a prebuilt :class:`VGGFeatures` (it must
    provide every layer of ``layer_weights``); otherwise one is built from ``arch`` and
    ``weights_path``. ``layer_weights`` defaults to ``DEFAULT_LAYER_WEIGHTS[arch]``.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] | None = None,
        style_weight: float = 0.0,
        criterion: str = "l1",
        perceptual_weight: float = 1.0,
        arch: str = "vgg19",
        weights_path: Path | str | None = None,
        features: VGGFeatures | None = None,
    ) -> None:
        super().__init__()
        if features is not None:
            arch = features.arch
        if layer_weights is None:
            layer_weights = DEFAULT_LAYER_WEIGHTS[arch]
        self.layer_weights = dict(layer_weights)
        self.style_weight = float(style_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.criterion_name = criterion
        self.criterion = _criterion(criterion)
        if features is None:
            features = VGGFeatures(arch, tuple(self.layer_weights), weights_path)
        missing = set(self.layer_weights) - set(features.layers)
        if missing:
            raise ValueError(f"PerceptualLoss: the VGG features lack layers {', '.join(sorted(missing))}")
        self.vgg = features

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zero = x.new_zeros(())
        if self.perceptual_weight == 0 and self.style_weight == 0:
            return zero, zero
        x_features = self.vgg(x)
        with torch.no_grad():
            gt_features = self.vgg(gt.detach())
        perceptual, style = zero, zero
        if self.perceptual_weight:
            perceptual = self.perceptual_weight * sum(
                weight * self.criterion(x_features[name], gt_features[name])
                for name, weight in self.layer_weights.items()
            )
        if self.style_weight:
            style = self.style_weight * sum(
                weight * self.criterion(gram_matrix(x_features[name]), gram_matrix(gt_features[name]))
                for name, weight in self.layer_weights.items()
            )
        return perceptual, style


def _resolve_with_hint(
    resolver: WeightsResolver | None, name: str, hint: str, explicit: Path | str | None = None
) -> Path:
    resolver = resolver if resolver is not None else WeightsResolver()
    try:
        return resolver.resolve(name, explicit)
    except WeightsError as error:
        raise WeightsError(f"{error}; or train with {hint}") from None


def build_vgg(
    resolver: WeightsResolver | None = None,
    arch: str = "vgg19",
    layers: Sequence[str] | None = None,
    explicit: Path | str | None = None,
    hint: str = "--no-perceptual",
) -> VGGFeatures:
    """:class:`VGGFeatures` with the registry's torchvision weights (``vgg19`` or ``vgg16``).

    A missing or unreadable file raises a one-line :class:`WeightsError` naming the file,
    how to get it, and ``or train with {hint}``.
    """
    if arch not in VGG_LAYERS:
        raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
    path = _resolve_with_hint(resolver, arch, hint, explicit)
    try:
        return VGGFeatures(arch, layers, path)
    except WeightsError as error:
        raise WeightsError(f"{error}; or train with {hint}") from None


def build_perceptual(
    resolver: WeightsResolver | None = None,
    arch: str = "vgg19",
    layer_weights: Mapping[str, float] | None = None,
    style_weight: float = 0.0,
    criterion: str = "l1",
    perceptual_weight: float = 1.0,
    explicit: Path | str | None = None,
) -> PerceptualLoss:
    """:class:`PerceptualLoss` on pretrained VGG (resolved from the registry; see :func:`build_vgg`)."""
    if arch not in VGG_LAYERS:
        raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
    if layer_weights is None:
        layer_weights = DEFAULT_LAYER_WEIGHTS[arch]
    features = build_vgg(resolver, arch, tuple(layer_weights), explicit, "--no-perceptual")
    return PerceptualLoss(layer_weights, style_weight, criterion, perceptual_weight, features=features)


# --------------------------------------------------------------------------- GAN losses

GAN_KINDS = ("softplus", "hinge", "vanilla")


def gan_loss(
    logits: torch.Tensor, target_is_real: bool, kind: str = "softplus", for_discriminator: bool = False
) -> torch.Tensor:
    """Adversarial loss of one discriminator output (mean over all elements).

    * ``softplus`` (non-saturating logistic, StyleGAN2/GFP-GAN): real ``softplus(-x)``,
      fake ``softplus(x)``; the same for D and G (G uses ``target_is_real=True``).
    * ``hinge`` (PSFR-GAN): D real ``relu(1 - x)``, D fake ``relu(1 + x)``; G ``-x``
      (``+x`` if asked for a fake target).
    * ``vanilla``: binary cross-entropy with logits against 1 (real) or 0 (fake).
    """
    if kind == "softplus":
        return F.softplus(-logits).mean() if target_is_real else F.softplus(logits).mean()
    if kind == "hinge":
        if for_discriminator:
            return F.relu(1 - logits).mean() if target_is_real else F.relu(1 + logits).mean()
        return -logits.mean() if target_is_real else logits.mean()
    if kind == "vanilla":
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_KINDS)}")


def multiscale_gan_loss(
    outputs: Sequence[Sequence[torch.Tensor]],
    target_is_real: bool,
    kind: str = "hinge",
    for_discriminator: bool = False,
) -> torch.Tensor:
    """:func:`gan_loss` of each scale's logits (``outputs[i][-1]``), averaged over scales
    (PSFR-GAN divides its sums by the number of discriminators)."""
    return sum(gan_loss(out[-1], target_is_real, kind, for_discriminator) for out in outputs) / len(outputs)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 regulariser: ``mean_b ‖∂(Σ logits)/∂x_b‖²``.

    ``real_images`` must have ``requires_grad=True`` before the discriminator ran on them.
    The graph is kept (``create_graph``) so the penalty can be backpropagated. GFP-GAN
    scales it by ``r1_weight / 2 * d_reg_every`` at the recipe level.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: real_images must require grad (call requires_grad_() before the discriminator)")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def feature_matching_loss(
    fake_features: Sequence[Sequence[torch.Tensor]],
    real_features: Sequence[Sequence[torch.Tensor]],
    criterion: str = "l1",
    include_logits: bool = False,
) -> torch.Tensor:
    """Discriminator feature matching: per discriminator, the sum over its intermediate
    features of ``criterion(fake, real.detach())``; averaged over discriminators.

    Each inner list is a discriminator's output as :class:`MultiScalePatchDiscriminator`
    returns it (last entry = logits, left out unless ``include_logits``). PSFR-GAN's
    reference uses MSE here (``criterion="l2"``).
    """
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError("feature_matching_loss: need the same non-zero number of discriminators for fake and real")
    compare = _criterion(criterion)
    total = 0.0
    for fake, real in zip(fake_features, real_features):
        stop = None if include_logits else -1
        total = total + sum(compare(f, r.detach()) for f, r in zip(fake[:stop], real[:stop]))
    return total / len(fake_features)


# --------------------------------------------------------------------------- semantic style


def semantic_style_loss(
    fake_feats: Sequence[torch.Tensor],
    real_feats: Sequence[torch.Tensor],
    masks: torch.Tensor,
    num_classes: int = 19,
    criterion: str = "l2",
    classes: str = "present",
    eps: float = 1e-8,
) -> torch.Tensor:
    """PSFR-GAN's semantic-aware style loss.

    For each feature map (PSFR-GAN: VGG19 ``relu3_1``, ``relu4_1``, ``relu5_1``) and
    each parsing class ``k``, the masked Gram matrix
    ``G_k = (F·m_k)(F·m_k)ᵀ / (C · (Σ m_k + eps))`` with the label map resized to the
    feature size (nearest); ``criterion`` (``l2`` as in the reference, or ``l1``)
    compares fake and real Grams (real detached). Per layer the loss is the mean over
    the (sample, class) pairs where the class is present in that sample's resized mask
    (``classes="present"``), or over all ``num_classes`` classes of every sample
    (``classes="all"``, the reference's normalisation; absent classes add zeros).
    Layers are summed, as in the reference.

    ``masks``: ``(N, H, W)`` integer labels (values outside ``[0, num_classes)`` are ignored).
    """
    if classes not in ("present", "all"):
        raise ValueError(f"semantic_style_loss: classes must be 'present' or 'all', got {classes!r}")
    distance = {"l1": lambda a, b: (a - b).abs(), "l2": lambda a, b: (a - b).square()}.get(criterion)
    if distance is None:
        raise ValueError(f"semantic_style_loss: criterion must be l1 or l2, got {criterion!r}")
    labels = masks.long()
    if labels.ndim == 4:
        labels = labels.squeeze(1)
    total = fake_feats[0].new_zeros(())
    for fake, real in zip(fake_feats, real_feats):
        batch, channels, height, width = fake.shape
        resized = F.interpolate(labels[:, None].float(), size=(height, width), mode="nearest").long()
        resized = resized.reshape(batch, height * width)
        fake_flat = fake.reshape(batch, channels, height * width)
        real_flat = real.detach().reshape(batch, channels, height * width)
        layer_sum = fake.new_zeros(())
        pairs = 0
        for k in torch.unique(resized).tolist():
            if not 0 <= k < num_classes:
                continue
            mask = (resized == k).to(fake.dtype)[:, None, :]  # (B, 1, HW)
            area = mask.sum(dim=2, keepdim=True)  # (B, 1, 1)
            present = area.flatten() > 0
            fake_masked = fake_flat * mask
            real_masked = real_flat * mask
            fake_gram = torch.bmm(fake_masked, fake_masked.transpose(1, 2)) / (channels * (area + eps))
            real_gram = torch.bmm(real_masked, real_masked.transpose(1, 2)) / (channels * (area + eps))
            per_sample = distance(fake_gram, real_gram).mean(dim=(1, 2))
            layer_sum = layer_sum + per_sample[present].sum()
            pairs += int(present.sum())
        denominator = batch * num_classes if classes == "all" else max(pairs, 1)
        total = total + layer_sum / denominator
    return total


# --------------------------------------------------------------------------- identity (ArcFace)


class IRBlock(nn.Module):
    """Improved residual block of GFP-GAN's ArcFace ResNet (BN → conv → BN → PReLU → conv → BN [→ SE])."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, use_se: bool = False
    ) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, inplanes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.use_se = use_se
        if use_se:
            self.se = _SEBlock(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(self.bn0(x))))))
        if self.use_se:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


class _SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.PReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class ArcFaceResNet18(nn.Module):
    """GFP-GAN's identity network (``ResNetArcFace``: IRBlock, layers ``[2, 2, 2, 2]``, no SE).

    Input ``(B, 1, 128, 128)`` gray in ``[-1, 1]``; output ``(B, 512)`` embeddings.
    State-dict keys match ``arcface_resnet18.pth`` (``conv1``, ``bn1``, ``prelu``,
    ``layer1.0.bn0`` …, ``layer2.0.downsample.0``, ``bn4``, ``fc5``, ``bn5``).
    """

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), use_se: bool = False) -> None:
        super().__init__()
        self.use_se = use_se
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        self._inplanes = 64
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [IRBlock(self._inplanes, planes, stride, downsample, self.use_se)]
        self._inplanes = planes
        layers += [IRBlock(planes, planes, use_se=self.use_se) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def load_arcface(path: Path | str) -> ArcFaceResNet18:
    """``arcface_resnet18.pth`` (a plain state dict; a ``module.`` prefix is stripped),
    loaded strictly into a frozen, eval-mode :class:`ArcFaceResNet18`."""
    state = load_state_dict(path)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    for key in ("params", "params_ema", "state_dict"):  # tolerate basicsr-style wrappers
        if key in state and isinstance(state[key], dict):
            state = state[key]
    network = ArcFaceResNet18()
    expected = network.state_dict()
    # BatchNorm fills in num_batches_tracked for files saved before it existed.
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = [
            f"{label} {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise WeightsError(f"{path}: not GFP-GAN's ArcFace ResNet-18 weights ({'; '.join(parts)})")
    network.load_state_dict(state, strict=True)
    network.requires_grad_(False)
    return network.eval()


def gray_resize_for_identity(images: torch.Tensor, size: int = 128) -> torch.Tensor:
    """GFP-GAN's identity preprocessing: ``0.2989 R + 0.5870 G + 0.1140 B`` on the
    ``[-1, 1]`` values (no rescaling, no crop: the whole aligned face), then bilinear
    resize to ``size x size`` (``align_corners=False``, no antialias)."""
    gray = 0.2989 * images[:, 0] + 0.5870 * images[:, 1] + 0.1140 * images[:, 2]
    return F.interpolate(gray[:, None], size=(size, size), mode="bilinear", align_corners=False)


class IdentityLoss(nn.Module):
    """L1 between ArcFace embeddings of output and target (target detached).

    The network is kept frozen and in eval mode (BatchNorm running statistics, no
    dropout), whatever ``train()`` is called with.
    """

    def __init__(self, network: nn.Module, size: int = 128) -> None:
        super().__init__()
        self.network = network
        self.size = size
        self.network.requires_grad_(False)
        self.network.eval()

    def train(self, mode: bool = True) -> IdentityLoss:
        return super().train(False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_embedding = self.network(gray_resize_for_identity(target, self.size))
        return F.l1_loss(self.network(gray_resize_for_identity(output, self.size)), target_embedding)


def build_identity(resolver: WeightsResolver | None = None, explicit: Path | str | None = None) -> IdentityLoss:
    """:class:`IdentityLoss` with the registry's ``arcface-resnet18`` weights; a missing or
    unreadable file raises a one-line :class:`WeightsError` ending ``or train with --no-identity``."""
    path = _resolve_with_hint(resolver, "arcface-resnet18", "--no-identity", explicit)
    try:
        return IdentityLoss(load_arcface(path))
    except WeightsError as error:
        raise WeightsError(f"{error}; or train with --no-identity") from None


# --------------------------------------------------------------------------- facial components

COMPONENTS = ("left_eye", "right_eye", "mouth")
#: GFP-GAN's ROI sizes at 512 px (scaled with the training size).
EYE_ROI_512, MOUTH_ROI_512 = 80, 120


def _bilinear_axis_weights(
    coords: torch.Tensor, valid_samples: torch.Tensor, size: int, count: torch.Tensor
) -> torch.Tensor:
    """``(K, P, G)`` sample coordinates → ``(K, P, size)`` averaged bilinear weights along one axis.

    Mirrors torchvision's ROI Align kernel per axis: a sample outside ``[-1, size]`` counts
    as zero, coordinates are clamped at 0, and the last pixel is used on its own beyond
    ``size - 1``. ``valid_samples`` masks the unused slots of adaptive sampling grids;
    ``count`` ``(K,)`` is the number of samples per output bin along this axis.
    """
    inside = (coords >= -1.0) & (coords <= size)
    coords = coords.clamp(min=0)
    low = coords.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coords), coords - low.to(coords.dtype))
    keep = (inside & valid_samples).to(coords.dtype) / count[:, None, None].to(coords.dtype)
    weights = coords.new_zeros(*coords.shape[:2], size)
    weights.scatter_add_(2, low, (1 - frac) * keep)
    weights.scatter_add_(2, high, frac * keep)
    return weights


def roi_align_separable(
    images: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` (Mask R-CNN ROI Align, same arguments and result) in plain PyTorch.

    Axis-aligned boxes make the bilinear sampling grid separable, so every ROI is two
    small matrix products: ``A_y · image · A_xᵀ`` with ``A`` the bin-averaged bilinear
    weights. Exact, differentiable with respect to ``images``, and cheap at any image
    size (torchvision's own Python fallback samples every pixel per bin and compiles
    with ``torch.compile`` on first use).
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    batch, channels, height, width = images.shape
    rois = rois.detach().to(device=images.device, dtype=torch.float64)
    if rois.numel() == 0:
        return images.new_zeros(0, channels, out_h, out_w)
    offset = 0.5 if aligned else 0.0
    index = rois[:, 0].long()
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)

    def axis(start: torch.Tensor, length: torch.Tensor, bins: int, size: int) -> torch.Tensor:
        if sampling_ratio > 0:
            grid = torch.full_like(length, float(sampling_ratio))
        else:
            grid = torch.ceil(length / bins)
        slots = max(int(grid.max().item()), 1)
        bin_size = length / bins
        sample = torch.arange(slots, device=images.device, dtype=torch.float64)
        coords = (
            start[:, None, None]
            + torch.arange(bins, device=images.device, dtype=torch.float64)[None, :, None] * bin_size[:, None, None]
            + (sample[None, None, :] + 0.5) * (bin_size / grid.clamp(min=1))[:, None, None]
        )
        valid = sample[None, None, :] < grid[:, None, None]
        return _bilinear_axis_weights(coords, valid.expand_as(coords), size, grid.clamp(min=1))

    weights_y = axis(y1, roi_h, out_h, height).to(images.dtype)  # (K, out_h, H)
    weights_x = axis(x1, roi_w, out_w, width).to(images.dtype)  # (K, out_w, W)
    crops = torch.matmul(weights_y[:, None], images[index])  # (K, C, out_h, W)
    return torch.matmul(crops, weights_x[:, None].transpose(-1, -2))  # (K, C, out_h, out_w)


def roi_align(
    images: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` when torchvision's compiled kernels are loaded, else
    :func:`roi_align_separable` (same result; see there why not torchvision's fallback)."""
    from facefix.compat import ensure_torchvision

    torchvision = ensure_torchvision()
    from torchvision.extension import _has_ops

    if _has_ops():
        return torchvision.ops.roi_align(images, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return roi_align_separable(images, rois, output_size, spatial_scale, sampling_ratio, aligned)


def roi_crops(images: torch.Tensor, boxes: torch.Tensor, eye_size: int, mouth_size: int) -> dict[str, torch.Tensor]:
    """ROI-aligned crops of each component: ``boxes`` ``(N, 3, 4)`` ``x1, y1, x2, y2`` in
    pixels of ``images`` (left eye, right eye, mouth) → ``{name: (N, C, s, s)}``.

    Sampling as GFP-GAN: :func:`roi_align` with ``aligned=False``, adaptive sampling ratio.
    """
    if boxes.ndim != 3 or boxes.shape[1:] != (3, 4):
        raise ValueError(f"component boxes must be (N, 3, 4), got {tuple(boxes.shape)}")
    boxes = boxes.detach().to(device=images.device, dtype=images.dtype)
    index = torch.arange(boxes.shape[0], device=images.device, dtype=images.dtype)[:, None]
    eyes = torch.cat([torch.cat([index, boxes[:, 0]], 1), torch.cat([index, boxes[:, 1]], 1)], 0)
    eye_crops = roi_align(images, eyes, eye_size)
    mouth_crops = roi_align(images, torch.cat([index, boxes[:, 2]], 1), mouth_size)
    n = boxes.shape[0]
    return {"left_eye": eye_crops[:n], "right_eye": eye_crops[n:], "mouth": mouth_crops}


class FacialComponentLoss(nn.Module):
    """GFP-GAN's facial component losses with three local discriminators.

    ``discriminators`` (a ``ModuleDict``: ``left_eye``, ``right_eye``, ``mouth``) are
    :class:`FacialComponentDiscriminator` instances; train them with their own optimizer
    on :meth:`discriminator_loss`, and freeze them (``requires_grad_(False)``) while the
    generator's loss is backpropagated.

    ``forward(fake, real, boxes)`` (alias :meth:`generator_loss`) → ``(gan, style)``: ``gan`` sums over components the
    generator's adversarial loss (``gan_kind``, GFP-GAN: vanilla); ``style`` sums
    ``0.5 · L1(G(f₁), G(r₁)) + L1(G(f₂), G(r₂))`` over components, with ``f``/``r``
    the discriminator features of fake/real crops and :func:`gram_matrix` (weight 200
    in GFP-GAN is applied by the recipe). Crops are 80 (eyes) and 120 (mouth) pixels at
    512, scaled with the image size.
    """

    def __init__(self, gan_kind: str = "vanilla", eye_size: int | None = None, mouth_size: int | None = None) -> None:
        super().__init__()
        if gan_kind not in GAN_KINDS:
            raise ValueError(f"unknown GAN loss {gan_kind!r}; expected one of {', '.join(GAN_KINDS)}")
        self.gan_kind = gan_kind
        self.eye_size = eye_size
        self.mouth_size = mouth_size
        self.discriminators = nn.ModuleDict({name: FacialComponentDiscriminator() for name in COMPONENTS})

    def roi_sizes(self, image_size: int) -> tuple[int, int]:
        eye = self.eye_size or max(8, round(EYE_ROI_512 * image_size / 512))
        mouth = self.mouth_size or max(8, round(MOUTH_ROI_512 * image_size / 512))
        return eye, mouth

    def crops(self, images: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        return roi_crops(images, boxes, *self.roi_sizes(images.shape[-1]))

    def forward(
        self, fake: torch.Tensor, real: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.generator_loss(fake, real, boxes)

    def generator_loss(
        self, fake: torch.Tensor, real: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gan, style)`` for the generator (same as calling the module)."""
        fake_crops = self.crops(fake, boxes)
        with torch.no_grad():
            real_crops = self.crops(real.detach(), boxes)
        gan = fake.new_zeros(())
        style = fake.new_zeros(())
        for name in COMPONENTS:
            discriminator = self.discriminators[name]
            fake_logits, fake_feats = discriminator(fake_crops[name])
            gan = gan + gan_loss(fake_logits, True, self.gan_kind, for_discriminator=False)
            with torch.no_grad():
                _, real_feats = discriminator(real_crops[name])
            style = style + 0.5 * F.l1_loss(gram_matrix(fake_feats[0]), gram_matrix(real_feats[0]))
            style = style + F.l1_loss(gram_matrix(fake_feats[1]), gram_matrix(real_feats[1]))
        return gan, style

    def discriminator_loss(self, fake: torch.Tensor, real: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Σ over components of ``D(real) → real`` + ``D(fake) → fake`` (``fake`` is detached)."""
        fake_crops = self.crops(fake.detach(), boxes)
        real_crops = self.crops(real.detach(), boxes)
        total = fake.new_zeros(())
        for name in COMPONENTS:
            discriminator = self.discriminators[name]
            real_logits, _ = discriminator(real_crops[name])
            fake_logits, _ = discriminator(fake_crops[name])
            total = total + gan_loss(real_logits, True, self.gan_kind, for_discriminator=True)
            total = total + gan_loss(fake_logits, False, self.gan_kind, for_discriminator=True)
        return total


__all__ = [
    "COMPONENTS", "DEFAULT_LAYER_WEIGHTS", "GAN_KINDS", "GFPGAN_LAYER_WEIGHTS", "IMAGENET_MEAN", "IMAGENET_STD",
    "VGG_LAYERS", "ArcFaceResNet18", "FacialComponentLoss", "IRBlock", "IdentityLoss", "PerceptualLoss",
    "VGGFeatures", "build_identity", "build_perceptual", "build_vgg", "feature_matching_loss", "gan_loss",
    "gram_matrix", "gray_resize_for_identity", "image_pyramid", "l1_loss", "load_arcface", "mse_loss",
    "multiscale_gan_loss", "pyramid_l1", "r1_penalty", "roi_align", "roi_align_separable", "roi_crops",
    "semantic_style_loss", "vgg_layer_index",
]  # fmt: skip
