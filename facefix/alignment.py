"""Aligning faces to the FFHQ template and mapping restored faces back.

The template and the estimator follow facexlib (and so GFPGAN and CodeFormer): a
similarity transform (rotation, uniform scale, translation) fitted to the five
landmarks with LMEDS, the crop border filled with FFHQ's mean grey.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Five-point FFHQ template in pixels of a 512 x 512 crop (left eye, right eye, nose,
#: left mouth corner, right mouth corner).
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)
BORDER_VALUE = (135, 133, 132)


def template(size: int, points: np.ndarray | None = None) -> np.ndarray:
    """The five template points in pixels of a ``size`` x ``size`` crop: FFHQ's, or ``points``
    given as fractions of the crop (a restorer's own template, e.g. facefusion's arcface_128)."""
    if points is None:
        return FFHQ_TEMPLATE_512 * (size / 512.0)
    return (np.asarray(points, np.float32) * size).astype(np.float32)


def estimate_affine(landmarks: np.ndarray, size: int, points: np.ndarray | None = None) -> np.ndarray:
    """2x3 similarity matrix taking image coordinates to the aligned crop (FFHQ's template, or
    ``points`` as in :func:`template`)."""
    target = template(size, points)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), target, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks (all on a line): fall back to least squares
        matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), target)
    if matrix is None:
        raise ValueError("cannot align a face whose landmarks are degenerate")
    return matrix.astype(np.float64)


def warp_face(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """Cut the aligned ``size`` x ``size`` face out of a BGR image."""
    return cv2.warpAffine(
        image,
        affine,
        (size, size),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_VALUE,
    )


def paste_size(affine: np.ndarray, size: int, upscale: float) -> float:
    """How many output pixels wide a ``size`` px aligned crop is once pasted back into the
    input resized by ``upscale`` (what a paste mask needs, no more)."""
    return float(size * upscale / np.sqrt(abs(np.linalg.det(np.asarray(affine, np.float64)[:, :2]))))


def inverse_affine(affine: np.ndarray, face_scale: float, upscale: float) -> np.ndarray:
    """2x3 matrix from restored-face pixels to output-canvas pixels.

    ``affine`` maps the input image to the restorer's input crop; the restored face is
    ``face_scale`` (= output size / input size) times larger, and the canvas is the
    input image resized by ``upscale``.
    """
    face_from_image = np.vstack([scaled_affine(affine, face_scale), [0.0, 0.0, 1.0]])
    canvas_from_image = _pixel_scale(upscale)
    return (canvas_from_image @ np.linalg.inv(face_from_image))[:2]


def scaled_affine(affine: np.ndarray, scale: float) -> np.ndarray:
    """2x3 matrix from the image to the crop ``affine`` makes, resized ``scale`` times."""
    return (_pixel_scale(scale) @ np.vstack([affine, [0.0, 0.0, 1.0]]))[:2]


def _pixel_scale(scale: float) -> np.ndarray:
    """Resizing by ``scale`` as OpenCV does it: pixel centres map as s*(x+0.5)-0.5."""
    shift = 0.5 * (scale - 1.0)
    return np.array([[scale, 0.0, shift], [0.0, scale, shift], [0.0, 0.0, 1.0]])


def resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize for the background: Lanczos up, area down (no aliasing)."""
    if (image.shape[1], image.shape[0]) == (width, height):
        return image
    enlarging = width > image.shape[1]
    interpolation = cv2.INTER_LANCZOS4 if enlarging else cv2.INTER_AREA
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    if image.ndim == 3 and resized.ndim == 2:  # cv2 drops a single channel axis
        resized = resized[:, :, None]
    return resized
