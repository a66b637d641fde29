"""Full-reference pixel metrics (PSNR, SSIM, MS-SSIM) for validation and ``facefix eval``.

The numpy metrics take two ``H x W x C`` (or ``H x W``) ``uint8`` images of the same
shape (any channel order: every channel is treated alike) and compute in float64.

SSIM follows Wang et al. (2004) as basicsr's ``calculate_ssim`` and most face
restoration papers report it: an 11x11 Gaussian window with σ = 1.5, constants
``C1 = (0.01 L)²`` and ``C2 = (0.03 L)²`` with ``L = 255``, population (not sample)
covariances, statistics only where the window fits inside the image ("valid"), SSIM
computed per channel and averaged over channels (RGB, not the Y channel). That equals
scikit-image's ``structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Weights of the five MS-SSIM scales (Wang, Simoncelli & Bovik 2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected H x W or H x W x C images, got shape {a.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    return a, b


#: MATLAB's rgb2gray weights (R, G, B): the luminance the IQA toolbox scores SSIM on.
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def luminance(bgr: np.ndarray) -> np.ndarray:
    """MATLAB's ``rgb2gray`` of a BGR ``uint8`` image, rounded to ``uint8`` as MATLAB does.

    ``facefix eval --y-channel`` scores this: the reference IQA toolbox (and MATLAB's own
    SSIM script) compare luminance, while facefix's default compares RGB.
    """
    if bgr.ndim == 2:
        return bgr
    b, g, r = (bgr[..., index].astype(np.float64) for index in range(3))
    gray = RGB2GRAY[0] * r + RGB2GRAY[1] * g + RGB2GRAY[2] * b
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels; ``inf`` when identical."""
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian taps (the 2-D window is their outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable correlation of ``H x W x C`` with ``taps`` along both axes, 'valid' region."""
    k = len(taps)
    rows = image.shape[0] - k + 1
    cols = image.shape[1] - k + 1
    out = sum(taps[i] * image[i : i + rows] for i in range(k))
    return sum(taps[j] * out[:, j : j + cols] for j in range(k))


def _ssim_maps(a: np.ndarray, b: np.ndarray, data_range: float, window: int, sigma: float):
    size = min(window, a.shape[0], a.shape[1])
    if size % 2 == 0:
        size -= 1  # an odd window that fits (only on tiny images, e.g. coarse MS-SSIM scales)
    taps = gaussian_window(size, sigma)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a = _filter_valid(a, taps)
    mu_b = _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a**2
    var_b = _filter_valid(b * b, taps) - mu_b**2
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_a + var_b + c2)
    return luminance, contrast_structure


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM, per channel then averaged over channels (see the module docstring)."""
    a, b = _pair(a, b)
    luminance, contrast_structure = _ssim_maps(a, b, data_range, window, sigma)
    return float((luminance * contrast_structure).mean(axis=(0, 1)).mean())


def _halve(image: np.ndarray) -> np.ndarray:
    """2x2 average pooling (odd trailing rows/columns dropped)."""
    rows, cols = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    image = image[:rows, :cols]
    return (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2]) / 4


def ms_ssim(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float = 255.0,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    window: int = 11,
    sigma: float = 1.5,
) -> float:
    """Multi-scale SSIM: ``Π_j cs_j^{w_j}`` over the first scales times ``ssim_M^{w_M}``
    at the coarsest, with 2x2 average pooling between the (default five) scales.

    Per-channel values are averaged over channels at each scale; negative values are
    clamped to 0 before the power. Scales smaller than the window use the largest odd
    window that fits (the standard needs images of at least 176 px for 5 scales).
    """
    a, b = _pair(a, b)
    if min(a.shape[:2]) < 2 ** (len(weights) - 1):
        raise ValueError(f"ms_ssim: {a.shape[1]}x{a.shape[0]} is too small for {len(weights)} scales")
    result = 1.0
    for scale, weight in enumerate(weights):
        luminance, contrast_structure = _ssim_maps(a, b, data_range, window, sigma)
        if scale == len(weights) - 1:
            value = (luminance * contrast_structure).mean(axis=(0, 1)).mean()
        else:
            value = contrast_structure.mean(axis=(0, 1)).mean()
            a, b = _halve(a), _halve(b)
        result *= max(float(value), 0.0) ** weight
    return float(result)


def batch_psnr(output: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image PSNR (dB) of ``(B, C, H, W)`` tensors, ``(B,)``; ``data_range`` 2 for ``[-1, 1]``.

    Computed in float32 without quantisation; identical images give ``inf``.
    """
    if output.shape != target.shape:
        raise ValueError(f"batch_psnr: shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}")
    mse = (output.detach().float() - target.detach().float()).square().flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


__all__ = ["MS_SSIM_WEIGHTS", "batch_psnr", "gaussian_window", "luminance", "ms_ssim", "psnr", "ssim"]
