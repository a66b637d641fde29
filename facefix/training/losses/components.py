"""GFP-GAN's facial-component losses: eye and mouth crops (ROI align), their
discriminators' GAN loss and a Gram style loss on their features."""

from __future__ import annotations


import torch
from torch import nn
from torch.nn import functional as F

from facefix.training.discriminators import FacialComponentDiscriminator
from facefix.training.losses.gan import GAN_KINDS, gan_loss
from facefix.training.losses.pixel import gram_matrix


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
