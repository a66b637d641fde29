"""Built-in paste-back blenders: ``soft``, ``parse`` and ``poisson``.

Each blender implements :class:`facefix.components.Blender`: it pastes one restored face
into a float32 canvas and returns a new canvas, touching only the face's footprint. The
geometry and mask helpers live in :mod:`facefix.blending` so third-party blenders can
reuse them.
"""

from __future__ import annotations

import cv2
import numpy as np

from facefix.blending import (
    IMAGE_INTERPOLATION,
    MASK_INTERPOLATION,
    Roi,
    alpha_composite,
    parse_mask,
    roi_is_empty,
    soft_square_mask,
    warp_face_to_canvas,
)
from facefix.components import ComponentContext
from facefix.errors import ComponentError
from facefix.hookspecs import hookimpl

#: A face whose binarised paste mask has fewer pixels than this is soft-blended:
#: Poisson cloning needs an interior to solve over.
MIN_POISSON_PIXELS = 10
#: Reflect padding around the ROI so seamlessClone's mask never touches the border.
POISSON_PAD = 8


def _warp_face(face: np.ndarray, inverse_affine: np.ndarray, canvas_shape: tuple[int, ...]) -> tuple[Roi, np.ndarray]:
    """Warp the face image (cubic, edge-replicated) and clip cubic overshoot.

    Replicating the edge (instead of a black border) keeps the half-covered rim pixels
    face-coloured, so even a mask reaching the footprint's edge shows no dark fringe.
    """
    face = np.asarray(face, dtype=np.float32)
    roi, warped = warp_face_to_canvas(
        face, inverse_affine, canvas_shape, interpolation=IMAGE_INTERPOLATION, border_mode=cv2.BORDER_REPLICATE
    )
    if warped.size:
        # Cubic interpolation rings slightly past the source's extremes; never invent values.
        np.clip(warped, float(face.min()), float(face.max()), out=warped)
    return roi, warped


class _SquareMaskBlender:
    """What every built-in blender does first: warp the face into its footprint and
    build facexlib's feathered square mask; :meth:`paste` decides the rest."""

    needs_parsing = False

    def blend(
        self,
        image: np.ndarray,
        face: np.ndarray,
        inverse_affine: np.ndarray,
        parsing: np.ndarray | None,
        upscale: float,
    ) -> np.ndarray:
        if self.needs_parsing and parsing is None:
            raise ComponentError(f"the {self.name} blender needs a parsing map: choose a parser with --parser")
        canvas = np.asarray(image, dtype=np.float32)
        roi, warped = _warp_face(face, inverse_affine, canvas.shape)
        if roi_is_empty(roi):
            return canvas
        mask_roi, soft = soft_square_mask(face.shape[:2], inverse_affine, canvas.shape, upscale)
        assert mask_roi == roi  # both come from footprint_roi with the same border
        return self.paste(canvas, roi, warped, soft, face, inverse_affine, parsing)

    def paste(self, canvas, roi, warped, soft, face, inverse_affine, parsing) -> np.ndarray:
        raise NotImplementedError


class SoftBlender(_SquareMaskBlender):
    """facexlib's default paste: a feathered square mask."""

    name = "soft"

    def paste(self, canvas, roi, warped, soft, face, inverse_affine, parsing) -> np.ndarray:
        return alpha_composite(canvas, roi, warped, soft, in_place=True)


class ParseBlender(_SquareMaskBlender):
    """Paste only the face's own classes: min(soft square mask, warped parse mask)."""

    name = "parse"
    needs_parsing = True

    def paste(self, canvas, roi, warped, soft, face, inverse_affine, parsing) -> np.ndarray:
        face_mask = parse_mask(parsing, face.shape[:2])
        _, warped_mask = warp_face_to_canvas(face_mask, inverse_affine, canvas.shape, interpolation=MASK_INTERPOLATION)
        # CodeFormer's rule: the parse mask may only narrow the square's feathered edge,
        # never widen it past the aligned crop.
        mask = np.minimum(soft, np.clip(warped_mask, 0.0, 1.0))
        return alpha_composite(canvas, roi, warped, mask, in_place=True)


class PoissonBlender(_SquareMaskBlender):
    """Gradient-domain paste (cv2.seamlessClone, NORMAL_CLONE) inside the soft mask.

    seamlessClone only takes 8-bit images, so it is used for what it computes, a linear
    correction: ``clone(src, dst) = src + clone(0, dst - src)``. The clone runs on
    ``128 + k * (dst - src)`` against a flat 128 source, with ``k`` chosen so the seam's
    colour mismatch fills the 8-bit range, and the recovered correction is added to the
    full-precision face. 8-bit and 16-bit canvases are treated alike, the face keeps its
    full precision, and the correction's quantisation is ~0.4% of the seam mismatch.
    The result is laid in with the soft mask, so pixels outside the footprint stay
    bit-identical.
    """

    name = "poisson"

    def paste(self, canvas, roi, warped, soft, face, inverse_affine, parsing) -> np.ndarray:
        binary = cv2.erode((soft > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8))
        if int(binary.sum()) < MIN_POISSON_PIXELS:
            return alpha_composite(canvas, roi, warped, soft, in_place=True)
        y0, y1, x0, x1 = roi
        dst = canvas[y0:y1, x0:x1]
        cloned = _poisson_clone(warped, dst, binary)
        return alpha_composite(canvas, roi, cloned, soft, in_place=True)


def _poisson_clone(src: np.ndarray, dst: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """NORMAL_CLONE of ``src`` into ``dst`` where ``binary``, at float precision."""
    # Outside the mask the source is the destination, so dst - src is non-zero only
    # where the clone needs it and the 8-bit range is spent on the seam's mismatch.
    near = cv2.dilate(binary, np.ones((3, 3), np.uint8)).astype(bool)
    source = np.where(near[:, :, None], src, dst).astype(np.float32)
    diff = dst - source
    pad = POISSON_PAD
    source_p = cv2.copyMakeBorder(source, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    diff_p = cv2.copyMakeBorder(diff, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    mask_p = cv2.copyMakeBorder(binary * 255, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    # Only differences outside the mask's interior reach the solution (boundary values
    # and the destination's gradients); the interior may saturate harmlessly.
    outer = cv2.erode(mask_p, np.ones((5, 5), np.uint8)) == 0
    largest = float(np.abs(diff_p[outer]).max()) if outer.any() else 0.0
    if not np.isfinite(largest):
        raise ComponentError("poisson blender: the face or image contains non-finite values")
    if largest <= 1e-6:
        # Face and canvas already agree along the seam: nothing to correct.
        result = source_p
    else:
        gain = 120.0 / largest
        dst8 = np.clip(np.rint(128.0 + gain * diff_p), 0, 255).astype(np.uint8)
        src8 = np.full_like(dst8, 128)
        x, y, w, h = cv2.boundingRect(mask_p)
        center = (x + w // 2, y + h // 2)  # maps the mask's box onto itself
        # seamlessClone inverts the mask in place: hand it a copy.
        clone8 = cv2.seamlessClone(src8, dst8, mask_p.copy(), center, cv2.NORMAL_CLONE)
        result = source_p + (clone8.astype(np.float32) - 128.0) / gain
    result = result[pad:-pad, pad:-pad]
    low = min(float(src.min()), float(dst.min()))
    high = max(float(src.max()), float(dst.max()))
    return np.clip(result, low, high).astype(np.float32, copy=False)


def _soft(context: ComponentContext) -> SoftBlender:
    return SoftBlender()


def _parse(context: ComponentContext) -> ParseBlender:
    return ParseBlender()


def _poisson(context: ComponentContext) -> PoissonBlender:
    return PoissonBlender()


@hookimpl
def register_blenders(register):
    register("soft", _soft, description="feathered square mask, like facexlib's default paste", rank=10)
    register(
        "parse",
        _parse,
        description="face classes from the parsing map, min with the soft square (CodeFormer); needs --parser",
    )
    register(
        "poisson",
        _poisson,
        description="gradient-domain seamless clone inside the soft mask: hides seams, but pulls the "
        "surrounding colour (background, hair) into the face",
    )
