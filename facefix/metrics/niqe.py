"""NIQE: the no-reference Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik
2013), computed as the authors' MATLAB release (``niqe_release``, ``computequality.m``)
does; lower is more natural.

The image becomes MATLAB's ``rgb2gray`` (rounded to 8 bits), cropped to whole 96x96
blocks. At two scales (the image, then MATLAB's ``imresize(im, 0.5)``: bicubic with
antialiasing), it is normalised by a local 7x7 Gaussian mean and deviation (σ = 7/6,
replicated borders) and each block gives 18 features: the generalised-Gaussian shape
and spread of the normalised values, and asymmetric generalised-Gaussian fits of the
products of horizontally, vertically and diagonally adjacent values. A multivariate
Gaussian fitted to the blocks' 36 features is compared with the pristine model
(``niqe_pris_params.npz``: its mean and covariance) by
``sqrt((μ_p - μ)ᵀ pinv((Σ_p + Σ)/2) (μ_p - μ))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import gamma as gamma_function

from facefix.errors import WeightsError
from facefix.metrics.pixel import luminance

BLOCK = 96
#: The shape parameters tried when fitting a generalised Gaussian (the MATLAB grid).
_SHAPES = np.arange(0.2, 10.001, 0.001)
_GGD_RATIO = gamma_function(2 / _SHAPES) ** 2 / (gamma_function(1 / _SHAPES) * gamma_function(3 / _SHAPES))


class NIQE:
    """NIQE with a pristine model read from a ``.npz`` (``mu_pris_param``, ``cov_pris_param``)."""

    def __init__(self, path: Path | str):
        try:
            with np.load(path) as params:
                self.mu = np.asarray(params["mu_pris_param"], np.float64).reshape(-1)
                self.cov = np.asarray(params["cov_pris_param"], np.float64)
        except (OSError, ValueError, KeyError) as error:
            raise WeightsError(f"{path}: not NIQE pristine parameters (mu_pris_param, cov_pris_param): "
                               f"{type(error).__name__}: {error}") from None
        if self.mu.shape != (36,) or self.cov.shape != (36, 36):
            raise WeightsError(f"{path}: NIQE parameters of shapes {self.mu.shape}, {self.cov.shape}; "
                               "expected (36,) and (36, 36)")

    def __call__(self, bgr: np.ndarray) -> float:
        """NIQE of one BGR (or gray) ``uint8`` image at least 96 px on each side."""
        image = luminance(bgr).astype(np.float64)
        rows, cols = image.shape[0] // BLOCK, image.shape[1] // BLOCK
        if rows == 0 or cols == 0:
            raise ValueError(f"NIQE needs at least {BLOCK}x{BLOCK} pixels, got {image.shape[1]}x{image.shape[0]}")
        image = image[: rows * BLOCK, : cols * BLOCK]
        features = []
        for scale in (1, 2):
            normalised = _normalise(image)
            size = BLOCK // scale
            features.append(np.array([
                _block_features(normalised[r * size:(r + 1) * size, c * size:(c + 1) * size])
                for c in range(cols) for r in range(rows)  # blkproc's column-major order
            ]))
            if scale == 1:
                image = imresize_half(image)
        blocks = np.concatenate(features, axis=1)
        complete = blocks[~np.isnan(blocks).any(axis=1)]  # nanmean / nancov drop incomplete rows
        if len(complete) == 0:
            return float("nan")
        mu = complete.mean(axis=0)
        # one block (images under 192 px a side): MATLAB's cov of a single observation is 0, numpy's NaN
        cov = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros((mu.size, mu.size))
        difference = self.mu - mu
        return float(np.sqrt(difference @ np.linalg.pinv((self.cov + cov) / 2) @ difference))


def _gaussian_taps(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)`` (which is separable:
    its tiny-value cut-off never bites at this size)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _filter_replicate(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """MATLAB's ``imfilter(image, window, 'replicate')`` with the separable window ``taps ⊗ taps``."""
    from scipy.ndimage import correlate1d

    return correlate1d(correlate1d(image, taps, axis=0, mode="nearest"), taps, axis=1, mode="nearest")


#: Below this many levels, ``I - μ`` is the rounding noise of a flat neighbourhood.
FLAT = 1e-9


def _normalise(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients: ``(I - μ) / (σ + 1)``.

    Where the neighbourhood is flat, ``I - μ`` is exactly 0 in exact arithmetic but about
    1e-12 in floating point, and the distribution fits would model that noise (a
    posterised image is 30% such pixels). It is set to 0: that reproduces the MATLAB
    release on the TID2013 pairs (I19: 8.67 against 8.64; 9.13 otherwise).
    """
    taps = _gaussian_taps()
    mu = _filter_replicate(image, taps)
    sigma = np.sqrt(np.abs(_filter_replicate(image * image, taps) - mu * mu))
    centred = image - mu
    centred[np.abs(centred) < FLAT] = 0
    return centred / (sigma + 1)


def _aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape, left and right scale)."""
    left = values[values < 0]
    right = values[values > 0]
    left_std = np.sqrt(np.mean(left**2)) if left.size else np.nan
    right_std = np.sqrt(np.mean(right**2)) if right.size else np.nan
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    if np.isnan(r_norm):
        return np.nan, np.nan, np.nan
    shape = _SHAPES[np.argmin((_GGD_RATIO - r_norm) ** 2)]
    spread = np.sqrt(gamma_function(1 / shape) / gamma_function(3 / shape))
    return shape, left_std * spread, right_std * spread


def _block_features(block: np.ndarray) -> list[float]:
    """``computefeature.m``: 2 features of the coefficients, 4 of each neighbour product."""
    shape, left, right = _aggd(block.ravel(order="F"))
    features = [shape, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        pairs = block * np.roll(block, shift, axis=(0, 1))  # circshift within the block
        shape, left, right = _aggd(pairs.ravel(order="F"))
        mean = (right - left) * gamma_function(2 / shape) / gamma_function(1 / shape)
        features += [shape, mean, left, right]
    return features


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_weights(length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize``'s bicubic weights and (mirrored) source indices along one axis."""
    width = 4.0 / scale  # antialiasing widens the kernel when shrinking
    out_length = int(np.ceil(length * scale))
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = scale * _cubic(scale * (u[:, None] - indices))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(length), np.arange(length)[::-1]])
    indices = mirror[(indices.astype(np.int64) - 1) % (2 * length)]
    return weights, indices


def imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB's ``imresize(image, 0.5)`` of a 2-D float image: bicubic, antialiased."""
    for axis in (0, 1):
        weights, indices = _resize_weights(image.shape[axis], 0.5)
        moved = np.moveaxis(image, axis, 0)
        image = np.moveaxis(np.einsum("ot,ot...->o...", weights, moved[indices]), 0, axis)
    return image
