"""Paste-back helpers: put an aligned (restored) face back into the whole image.

Every helper works on ``float32`` arrays in the image's own value range (0-255, or
0-65535 for 16-bit inputs) and only ever touches the face's *region of interest*: the
bounding box of the face's footprint in the canvas plus a small margin. Warping or
masking the full canvas per face (what facexlib does) costs ``O(faces x pixels)``, which
makes group photos at 4K slow; the ROI keeps it ``O(face area)``.

Geometry convention: ``inverse_affine`` is the 2x3 matrix taking face pixel
coordinates to canvas pixel coordinates, with pixel centres at integers (OpenCV's
convention, so ``cv2.invertAffineTransform`` of the aligning matrix is exactly it).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: A region of the canvas as ``(y0, y1, x0, x1)``: ``canvas[y0:y1, x0:x1]``.
Roi = tuple[int, int, int, int]

#: Default interpolation for face *images*. Measured on a real 1297x1920 photo with a
#: 12-degree similarity round trip (canvas -> 512 face with INTER_LINEAR, as facexlib
#: aligns, -> canvas), PSNR over the footprint: LINEAR 46.9 dB, CUBIC 50.9 dB,
#: LANCZOS4 50.8 dB for a 250 px face (43.4 / 46.6 / 46.9 dB at 400 px). Cubic matches
#: Lanczos within noise at a quarter of the taps and with less ringing, so it is the
#: default. Masks use INTER_LINEAR (smooth already; no overshoot).
IMAGE_INTERPOLATION = cv2.INTER_CUBIC
MASK_INTERPOLATION = cv2.INTER_LINEAR

#: Extra canvas pixels kept around the footprint's bounding box: covers the
#: interpolation kernel's reach (cubic: 2 px) so the ROI warp equals a full warp.
DEFAULT_BORDER = 4

#: CelebAMask-HQ classes the parse mask keeps: skin, nose, eye_g, l_eye, r_eye, l_brow,
#: r_brow, l_ear, r_ear, mouth, u_lip, l_lip. Background, hair, hat, earring, necklace,
#: neck and cloth keep the original pixels (restorers hallucinate them badly and they
#: often reach past the aligned crop, which is where seams show).
PARSE_KEEP_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)


def _face_hw(face_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(face_size, (tuple, list)):
        return int(face_size[0]), int(face_size[1])
    return int(face_size), int(face_size)


def footprint_roi(
    face_size: int | tuple[int, int],
    inverse_affine: np.ndarray,
    canvas_shape: tuple[int, ...],
    border: int = DEFAULT_BORDER,
) -> Roi:
    """The canvas box covering the warped face (``face_size`` = S or ``(h, w)``).

    The four outer pixel *edges* of the face (-0.5 .. S-0.5) are mapped, their bounding
    box is grown by ``border`` and clipped to the canvas. An empty ROI (``y0 == y1`` or
    ``x0 == x1``) means the face lies entirely outside the canvas.
    """
    h, w = _face_hw(face_size)
    matrix = np.asarray(inverse_affine, dtype=np.float64).reshape(2, 3)
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    height, width = int(canvas_shape[0]), int(canvas_shape[1])
    if not np.all(np.isfinite(mapped)):
        return (0, 0, 0, 0)
    x0 = int(math.floor(mapped[:, 0].min())) - border
    x1 = int(math.ceil(mapped[:, 0].max())) + border + 1
    y0 = int(math.floor(mapped[:, 1].min())) - border
    y1 = int(math.ceil(mapped[:, 1].max())) + border + 1
    x0, x1 = max(0, x0), min(width, x1)
    y0, y1 = max(0, y0), min(height, y1)
    if x0 >= x1 or y0 >= y1:
        return (0, 0, 0, 0)
    return (y0, y1, x0, x1)


def roi_is_empty(roi: Roi) -> bool:
    y0, y1, x0, x1 = roi
    return y1 <= y0 or x1 <= x0


def warp_face_to_canvas(
    face: np.ndarray,
    inverse_affine: np.ndarray,
    canvas_shape: tuple[int, ...],
    border: int = DEFAULT_BORDER,
    interpolation: int = IMAGE_INTERPOLATION,
    border_mode: int = cv2.BORDER_CONSTANT,
    border_value: float = 0.0,
) -> tuple[Roi, np.ndarray]:
    """Warp an ``S x S`` (x C) face into canvas coordinates over its ROI only.

    Returns ``(roi, warped)`` with ``warped.shape[:2] == (y1 - y0, x1 - x0)``: the same
    values a full-canvas ``cv2.warpAffine`` would give inside the ROI, because the
    matrix's translation is shifted by the ROI's origin. Pixels outside the face are
    ``border_value``. For an empty ROI, ``warped`` has zero size.
    """
    roi = footprint_roi(face.shape[:2], inverse_affine, canvas_shape, border)
    y0, y1, x0, x1 = roi
    if roi_is_empty(roi):
        return roi, np.zeros((0, 0) + face.shape[2:], dtype=np.float32)
    matrix = np.asarray(inverse_affine, dtype=np.float64).reshape(2, 3).copy()
    matrix[0, 2] -= x0
    matrix[1, 2] -= y0
    source = np.ascontiguousarray(face, dtype=np.float32)
    channels = 1 if source.ndim == 2 else source.shape[2]
    value = (border_value,) * min(4, channels) if channels > 1 else border_value
    warped = cv2.warpAffine(
        source,
        matrix,
        (x1 - x0, y1 - y0),
        flags=interpolation,
        borderMode=border_mode,
        borderValue=value,
    )
    if source.ndim == 3 and warped.ndim == 2:  # OpenCV drops a trailing 1-channel axis
        warped = warped[:, :, None]
    return roi, warped


def _odd(value: float, minimum: int = 1) -> int:
    size = max(minimum, int(round(value)))
    return size if size % 2 == 1 else size + 1


def soft_square_mask(
    face_size: int | tuple[int, int],
    inverse_affine: np.ndarray,
    canvas_shape: tuple[int, ...],
    upscale: float,
    border: int = DEFAULT_BORDER,
) -> tuple[Roi, np.ndarray]:
    """facexlib's feathered square paste mask, computed over the ROI only.

    A ones mask is warped into the canvas, eroded by ``int(2 * upscale)`` (hides the
    interpolated, half-covered edge pixels), then by ``2 * w_edge`` with
    ``w_edge = int(sqrt(area)) // 20`` and blurred with a ``2 * w_edge + 1`` Gaussian,
    so the feather scales with the face's size in the canvas. Returns ``(roi, mask)``
    with ``mask`` float32 in [0, 1] of the ROI's size.
    """
    h, w = _face_hw(face_size)
    roi, mask = warp_face_to_canvas(
        np.ones((h, w), np.float32), inverse_affine, canvas_shape, border, MASK_INTERPOLATION
    )
    if mask.size == 0:
        return roi, mask.astype(np.float32)
    # Kernels of size 0 are not allowed; tiny faces and upscale < 0.5 get 1 (a no-op).
    first = max(1, int(2 * upscale))
    mask = cv2.erode(mask, np.ones((first, first), np.uint8))
    w_edge = int(math.sqrt(float(mask.sum()))) // 20
    second = max(1, 2 * w_edge)
    mask = cv2.erode(mask, np.ones((second, second), np.uint8))
    blur = 2 * w_edge + 1  # always odd
    if blur > 1:
        mask = cv2.GaussianBlur(mask, (blur, blur), 0)
    return roi, np.clip(mask, 0.0, 1.0).astype(np.float32, copy=False)


def parse_mask(parsing: np.ndarray, face_size: int | tuple[int, int]) -> np.ndarray:
    """A feathered ``S x S`` float32 mask of the face's own classes from a label map.

    Keeps :data:`PARSE_KEEP_CLASSES`. Feathering follows facexlib (Gaussian 101x101,
    sigma 11, twice, then a 10 px zero border) with every number given for 512 px
    faces and scaled by ``S / 512``. ``parsing`` may be at another resolution than the
    face: it is resized with nearest neighbour first (labels must not be averaged).
    """
    h, w = _face_hw(face_size)
    labels = np.asarray(parsing)
    if labels.ndim == 3:
        labels = labels[..., 0]
    if labels.shape != (h, w):
        labels = cv2.resize(labels.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    mask = np.isin(labels, PARSE_KEEP_CLASSES).astype(np.float32)
    scale = min(h, w) / 512.0
    kernel = _odd(101 * scale, minimum=3)
    sigma = max(0.5, 11.0 * scale)
    mask = cv2.GaussianBlur(mask, (kernel, kernel), sigma)
    mask = cv2.GaussianBlur(mask, (kernel, kernel), sigma)
    # The zero border hides aligned-crop edges (padding colour, cut-off hair).
    edge = max(1, int(round(10 * scale)))
    mask[:edge, :] = 0
    mask[-edge:, :] = 0
    mask[:, :edge] = 0
    mask[:, -edge:] = 0
    return np.clip(mask, 0.0, 1.0).astype(np.float32, copy=False)


# sRGB (D65) <-> CIE Lab, exact formulas in float64. OpenCV's float cvtColor uses
# table-based gamma whose Lab round trip is off by up to ~0.4% of the range (about one
# 8-bit level, ~280 16-bit levels), which would make matching a face to itself change it.
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ.sum(axis=1)  # D65 white point of the matrix above (X_n, Y_n, Z_n)
_EPSILON = (6.0 / 29.0) ** 3


def bgr_to_lab(bgr: np.ndarray) -> np.ndarray:
    """BGR in [0, 1] (sRGB-encoded) -> Lab (L in 0-100, a/b roughly -128..127), float64."""
    rgb = np.asarray(bgr, dtype=np.float64)[..., ::-1]
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _RGB_TO_XYZ.T) / _WHITE
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def lab_to_bgr(lab: np.ndarray) -> np.ndarray:
    """Inverse of :func:`bgr_to_lab`; the result is not clipped (out-of-gamut may leave 0-1)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    delta = 6.0 / 29.0
    xyz = np.where(f > delta, f**3, 3 * delta**2 * (f - 4.0 / 29.0)) * _WHITE
    linear = xyz @ _XYZ_TO_RGB.T
    linear = np.clip(linear, 0.0, None)  # negative light has no sRGB encoding
    rgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return rgb[..., ::-1]


def match_color(
    face: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray | None = None,
    value_range: float = 255.0,
    lightness_spread: bool = False,
) -> np.ndarray:
    """Give ``face`` the Lab mean of ``reference`` (both BGR), and the std of its a and b.

    ``reference`` is the aligned original crop; it (and ``mask``) is resized to the
    face's size when it differs. Lab separates lightness from chroma, so a restorer's
    tint or exposure drift is undone without flattening its detail. Values are divided
    by ``value_range`` (255 or 65535) for the conversion; ``mask`` restricts the
    statistics to pixels where ``mask > 0.5``. ``lightness_spread`` also matches the
    lightness std, which undoes the contrast a restorer brought back to a blurred face.
    Returns float32, same shape and range.
    """
    face_f = np.asarray(face, dtype=np.float32)
    h, w = face_f.shape[:2]
    ref_f = np.asarray(reference, dtype=np.float32)
    if ref_f.shape[:2] != (h, w):
        shrinking = ref_f.shape[0] > h
        ref_f = cv2.resize(ref_f, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    select = None
    if mask is not None:
        mask_f = np.asarray(mask, dtype=np.float32)
        if mask_f.ndim == 3:
            mask_f = mask_f[..., 0]
        if mask_f.shape != (h, w):
            mask_f = cv2.resize(mask_f, (w, h), interpolation=cv2.INTER_LINEAR)
        select = mask_f > 0.5
        if select.sum() < 2:  # nothing to measure: leave the face alone
            return face_f.copy()

    face_lab = bgr_to_lab(np.clip(face_f / float(value_range), 0.0, 1.0))
    ref_lab = bgr_to_lab(np.clip(ref_f / float(value_range), 0.0, 1.0))
    face_px = face_lab[select] if select is not None else face_lab.reshape(-1, 3)
    ref_px = ref_lab[select] if select is not None else ref_lab.reshape(-1, 3)
    face_mean, face_std = face_px.mean(0, dtype=np.float64), face_px.std(0, dtype=np.float64)
    ref_mean, ref_std = ref_px.mean(0, dtype=np.float64), ref_px.std(0, dtype=np.float64)
    # A flat channel has no spread to rescale: only shift its mean.
    gain = np.where(face_std > 1e-6, ref_std / np.maximum(face_std, 1e-6), 1.0)
    if not lightness_spread:  # the restorer's contrast is what it restored: keep it
        gain[0] = 1.0
    out_lab = (face_lab - face_mean) * gain + ref_mean
    out = lab_to_bgr(out_lab)
    return (np.clip(out, 0.0, 1.0) * float(value_range)).astype(np.float32)


def alpha_composite(
    canvas: np.ndarray, roi: Roi, warped_face: np.ndarray, mask: np.ndarray, *, in_place: bool = False
) -> np.ndarray:
    """``canvas`` with ``mask * face + (1 - mask) * canvas`` in ``roi``: a copy, or with
    ``in_place`` (a float32 canvas) ``canvas`` itself, drawn on.

    ``warped_face`` and ``mask`` are ROI-sized (``mask`` 2-D or with one channel).
    Where ``mask == 0`` the result is bit-identical to the canvas (``0 * face + 1 * canvas``
    is exact in floating point). In place, pasting a face costs its ROI, not a copy of a
    canvas that may hold 100+ MB at ``--upscale 2``.
    """
    if in_place and canvas.dtype == np.float32:
        out = canvas
    else:
        out = np.array(canvas, dtype=np.float32, copy=True)
    if roi_is_empty(roi):
        return out
    y0, y1, x0, x1 = roi
    alpha = np.asarray(mask, dtype=np.float32)
    if alpha.ndim == 2 and out.ndim == 3:
        alpha = alpha[:, :, None]
    face = np.asarray(warped_face, dtype=np.float32)
    if face.ndim == 2 and out.ndim == 3:
        face = face[:, :, None]
    region = out[y0:y1, x0:x1]
    region[...] = alpha * face + (1.0 - alpha) * region
    return out
