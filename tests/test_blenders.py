"""Paste-back blenders (plugins/blenders) and their helpers (facefix/blending.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facefix import blending
from facefix.components import Blender, ComponentContext
from facefix.errors import ComponentError
from facefix.hookspecs import hookimpl
from facefix.plugins import get_component, pm

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PHOTO = SHARED / "photos" / "gfpgan__inputs_whole_imgs_00.jpg"

FACE = 512
CANVAS_W, CANVAS_H = 600, 800
FOOTPRINT = 240.0  # the face's side in the canvas, in pixels
CENTRE = (300.0, 350.0)  # x, y of the face's centre in the canvas
ANGLE = 10.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def make_canvas() -> np.ndarray:
    """A real photo when ../shared is here, else a textured gradient (float32 BGR)."""
    image = cv2.imread(str(PHOTO)) if PHOTO.is_file() else None
    if image is not None:
        return cv2.resize(image, (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_AREA).astype(np.float32)
    y, x = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float32)
    texture = 20 * np.sin(x / 7.0) * np.cos(y / 11.0)
    channels = [60 + 0.2 * x + texture, 40 + 0.2 * y - texture, 200 - 0.1 * (x + y) + texture]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.float32)


def forward_affine(scale: float = 1.0) -> np.ndarray:
    """Canvas -> face similarity transform (what alignment computes)."""
    s = FACE / (FOOTPRINT * scale)
    a = np.deg2rad(ANGLE)
    matrix = np.array([[s * np.cos(a), -s * np.sin(a), 0.0], [s * np.sin(a), s * np.cos(a), 0.0]])
    centre = np.array(CENTRE) * scale
    matrix[:, 2] = FACE / 2 - matrix[:, :2] @ centre
    return matrix


def align(canvas: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(canvas, matrix, (FACE, FACE), flags=cv2.INTER_LINEAR)


def far_mask(shape: tuple[int, ...], inverse: np.ndarray, size: int = FACE, margin: int = 6) -> np.ndarray:
    """True for canvas pixels more than ``margin`` px outside the face's footprint."""
    corners = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], np.float64)
    mapped = corners @ inverse[:, :2].T + inverse[:, 2]
    footprint = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(footprint, np.round(mapped).astype(np.int32), 1)
    footprint = cv2.dilate(footprint, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return footprint == 0


def centre_of(inverse: np.ndarray, size: int = FACE) -> tuple[int, int]:
    x, y = inverse[:, :2] @ np.array([size / 2, size / 2]) + inverse[:, 2]
    return int(round(y)), int(round(x))


def build(name: str):
    return get_component("blender", name).build(ComponentContext())


@pytest.fixture(scope="module")
def scene():
    canvas = make_canvas()
    matrix = forward_affine()
    return canvas, align(canvas, matrix), cv2.invertAffineTransform(matrix)


def skin_parsing() -> np.ndarray:
    """Skin ellipse, eyes and mouth, hair around: roughly a real parse map."""
    labels = np.full((FACE, FACE), 13, np.uint8)
    cv2.ellipse(labels, (256, 280), (170, 210), 0, 0, 360, 1, -1)
    cv2.circle(labels, (190, 240), 20, 4, -1)
    cv2.circle(labels, (320, 240), 20, 5, -1)
    cv2.ellipse(labels, (256, 380), (50, 20), 0, 0, 360, 11, -1)
    return labels


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["soft", "parse", "poisson"])
def test_unmodified_face_round_trips(scene, name):
    canvas, face, inverse = scene
    blender = build(name)
    assert isinstance(blender, Blender)
    drawn = canvas.copy()
    out = blender.blend(drawn, face, inverse, skin_parsing(), 1.0)
    assert out is drawn  # drawn on the pipeline's canvas in place, not on a copy of it
    assert out.shape == canvas.shape and out.dtype == np.float32
    assert psnr(out, canvas) >= 40.0
    y0, y1, x0, x1 = blending.footprint_roi(FACE, inverse, canvas.shape)
    assert psnr(out[y0:y1, x0:x1], canvas[y0:y1, x0:x1]) >= 40.0  # the face itself, too
    far = far_mask(canvas.shape, inverse)
    np.testing.assert_array_equal(out[far], canvas[far])


@pytest.mark.parametrize("name", ["soft", "parse", "poisson"])
def test_constant_face_fills_the_footprint_centre(scene, name):
    canvas, _, inverse = scene
    colour = np.array([30.0, 200.0, 90.0], np.float32)
    face = np.broadcast_to(colour, (FACE, FACE, 3)).astype(np.float32)
    parsing = np.ones((FACE, FACE), np.uint8)
    out = build(name).blend(canvas.copy(), face, inverse, parsing, 1.0)
    cy, cx = centre_of(inverse)
    centre = out[cy - 5 : cy + 6, cx - 5 : cx + 6]
    if name == "poisson":
        # Gradient-domain: a flat face takes the colours of its surroundings, so only
        # "it changed and stays finite" is a property.
        assert np.isfinite(out).all()
        assert np.abs(out - canvas)[cy - 40 : cy + 40, cx - 40 : cx + 40].mean() > 1.0
    else:
        np.testing.assert_allclose(centre, np.broadcast_to(colour, centre.shape), atol=0.5)
    far = far_mask(canvas.shape, inverse)
    np.testing.assert_array_equal(out[far], canvas[far])


def test_upscale_two(scene):
    canvas, _, inverse = scene
    big = cv2.resize(canvas, (2 * CANVAS_W, 2 * CANVAS_H), interpolation=cv2.INTER_CUBIC)
    # Scale the face -> canvas map by 2, with OpenCV's half-pixel shift for resize.
    inverse2 = inverse * 2.0
    inverse2[:, 2] += 0.5
    face = align(big, cv2.invertAffineTransform(inverse2))
    out = build("soft").blend(big.copy(), face, inverse2, None, 2.0)
    assert psnr(out, big) >= 40.0
    far = far_mask(big.shape, inverse2)
    np.testing.assert_array_equal(out[far], big[far])
    # The face aligned from the 1x canvas pasted into the 2x canvas lines up as well.
    out1 = build("soft").blend(big.copy(), scene[1], inverse2, None, 2.0)
    assert psnr(out1, big) >= 35.0
    # First erosion is int(2 * upscale): at the same geometry, upscale 2 eats more rim.
    roi1, mask1 = blending.soft_square_mask(FACE, inverse2, big.shape, 1.0)
    roi2, mask2 = blending.soft_square_mask(FACE, inverse2, big.shape, 2.0)
    assert roi1 == roi2
    assert mask2.sum() < mask1.sum()
    assert np.all(mask2 <= mask1 + 1e-6)


# --- mask helpers ------------------------------------------------------------------


def test_warp_is_limited_to_the_footprint(scene):
    _, face, inverse = scene
    huge = (6000, 8000, 3)
    roi, warped = blending.warp_face_to_canvas(face, inverse, huge)
    y0, y1, x0, x1 = roi
    assert warped.shape == (y1 - y0, x1 - x0, 3)
    # A 240 px face rotated 10 degrees covers about 278 px; far from 6000 x 8000.
    assert warped.shape[0] < 300 and warped.shape[1] < 300
    # The ROI warp equals the full-canvas warp inside the ROI.
    canvas_shape = (CANVAS_H, CANVAS_W, 3)
    roi, warped = blending.warp_face_to_canvas(face, inverse, canvas_shape)
    y0, y1, x0, x1 = roi
    full = cv2.warpAffine(face, inverse, (CANVAS_W, CANVAS_H), flags=blending.IMAGE_INTERPOLATION)
    np.testing.assert_allclose(warped, full[y0:y1, x0:x1], atol=0.05)  # fixed-point rounding
    # Off the canvas entirely: empty ROI, no crash.
    away = inverse.copy()
    away[:, 2] += 10_000
    roi, warped = blending.warp_face_to_canvas(face, away, canvas_shape)
    assert blending.roi_is_empty(roi) and warped.size == 0
    out = build("soft").blend(scene[0].copy(), face, away, None, 1.0)
    np.testing.assert_array_equal(out, scene[0])


def test_soft_square_mask_feathering(scene):
    canvas, _, inverse = scene
    roi, mask = blending.soft_square_mask(FACE, inverse, canvas.shape, 1.0)
    assert mask.dtype == np.float32 and mask.min() >= 0.0 and mask.max() <= 1.0
    y0, y1, x0, x1 = roi
    cy, cx = centre_of(inverse)
    assert mask[cy - y0, cx - x0] == pytest.approx(1.0, abs=1e-5)
    # The ROI's rim (outside the footprint) is zero; a feather band exists.
    assert mask[0].max() == 0 and mask[-1].max() == 0 and mask[:, 0].max() == 0 and mask[:, -1].max() == 0
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 100
    # Tiny faces: kernels stay valid.
    tiny = np.array([[4 / FACE, 0, 20], [0, 4 / FACE, 20]], np.float64)
    _, small = blending.soft_square_mask(FACE, tiny, canvas.shape, 0.25)
    assert np.isfinite(small).all()


def test_parse_mask_classes_and_scaling():
    labels = np.zeros((FACE, FACE), np.uint8)
    labels[100:400, 50:250] = 1  # skin
    labels[100:400, 262:462] = 13  # hair
    mask = blending.parse_mask(labels, FACE)
    assert mask.shape == (FACE, FACE) and mask.dtype == np.float32
    assert mask[250, 150] > 0.99 and mask[250, 360] < 1e-3
    assert mask[:10].max() == 0 and mask[:, -10:].max() == 0
    for dropped in (0, 13, 14, 15, 16, 17, 18):
        assert blending.parse_mask(np.full((64, 64), dropped, np.uint8), 128).max() == 0
    for kept in range(1, 13):
        assert blending.parse_mask(np.full((64, 64), kept, np.uint8), 128)[64, 64] > 0.99
    # Parsing at another resolution is resized (nearest) to the face size.
    small = cv2.resize(labels, (256, 256), interpolation=cv2.INTER_NEAREST)
    resized = blending.parse_mask(small, FACE)
    assert resized.shape == (FACE, FACE)
    assert np.abs(resized - mask).max() < 0.05
    # Feathering scales with the face: the 50%-crossing band is narrower at 128 px.
    wide = blending.parse_mask(labels, FACE)[250]
    narrow = blending.parse_mask(cv2.resize(labels, (128, 128), interpolation=cv2.INTER_NEAREST), 128)[62]
    band = lambda row: int(((row > 0.05) & (row < 0.95)).sum())  # noqa: E731
    assert band(narrow) < band(wide)


def test_parse_blender_uses_the_parsing_map(scene):
    canvas, face, inverse = scene
    blender = build("parse")
    assert blender.needs_parsing is True
    assert build("soft").needs_parsing is False and build("poisson").needs_parsing is False
    flat = np.full((FACE, FACE, 3), 250.0, np.float32)
    hair = np.full((FACE, FACE), 13, np.uint8)
    np.testing.assert_array_equal(blender.blend(canvas.copy(), flat, inverse, hair, 1.0), canvas)
    skin = np.ones((256, 256), np.uint8)  # lower-resolution map
    out = blender.blend(canvas.copy(), flat, inverse, skin, 1.0)
    cy, cx = centre_of(inverse)
    np.testing.assert_allclose(out[cy, cx], [250.0, 250.0, 250.0], atol=0.5)
    with pytest.raises(ComponentError, match="--parser"):
        blender.blend(canvas.copy(), face, inverse, None, 1.0)


# --- poisson -----------------------------------------------------------------------


def test_poisson_pastes_a_different_face(scene):
    canvas, face, inverse = scene
    other = np.ascontiguousarray(face[::-1, ::-1]) * 0.7 + 40.0  # a clearly different face
    out = build("poisson").blend(canvas.copy(), other, inverse, None, 1.0)
    assert np.isfinite(out).all()
    cy, cx = centre_of(inverse)
    inside = (slice(cy - 60, cy + 60), slice(cx - 60, cx + 60))
    assert np.abs(out[inside] - canvas[inside]).mean() > 5.0
    far = far_mask(canvas.shape, inverse)
    np.testing.assert_array_equal(out[far], canvas[far])
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_poisson_degenerate_faces_do_not_crash(scene):
    canvas, face, _ = scene
    blender = build("poisson")
    tiny = np.array([[3 / FACE, 0, 100], [0, 3 / FACE, 100]], np.float64)
    out = blender.blend(canvas.copy(), face, tiny, None, 1.0)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:90], canvas[:90])
    # Half off the canvas edge.
    edge = np.array([[200 / FACE, 0, -100], [0, 200 / FACE, 300]], np.float64)
    out = blender.blend(canvas.copy(), face, edge, None, 1.0)
    assert np.isfinite(out).all() and out.shape == canvas.shape


# --- 16-bit ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["soft", "poisson"])
def test_sixteen_bit_canvas(scene, name):
    canvas8, face8, inverse = scene
    canvas = canvas8 * 257.0
    face = face8 * 257.0
    blender = build(name)
    out = blender.blend(canvas.copy(), face, inverse, None, 1.0)
    assert psnr(out, canvas, peak=65535.0) >= 40.0
    far = far_mask(canvas.shape, inverse)
    np.testing.assert_array_equal(out[far], canvas[far])
    other = np.ascontiguousarray(face[::-1]) * 0.8 + 3000.0
    out = blender.blend(canvas.copy(), other, inverse, None, 1.0)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 65535.0
    cy, cx = centre_of(inverse)
    assert np.abs(out - canvas)[cy - 40 : cy + 40, cx - 40 : cx + 40].mean() > 257.0
    np.testing.assert_array_equal(out[far], canvas[far])


# --- colour matching ---------------------------------------------------------------


def lab_mean(image: np.ndarray, value_range: float = 255.0) -> np.ndarray:
    lab = cv2.cvtColor(np.clip(image / value_range, 0, 1).astype(np.float32), cv2.COLOR_BGR2Lab)
    return lab.reshape(-1, 3).mean(0)


@pytest.mark.parametrize("value_range", [255.0, 65535.0])
def test_match_color(scene, value_range):
    reference = scene[1] * (value_range / 255.0)
    tinted = np.clip(reference * np.array([0.75, 1.0, 1.15], np.float32) + 0.03 * value_range, 0, value_range)
    out = blending.match_color(tinted, reference, value_range=value_range)
    assert out.dtype == np.float32 and out.shape == reference.shape
    assert out.min() >= 0.0 and out.max() <= value_range
    before = np.abs(lab_mean(tinted, value_range) - lab_mean(reference, value_range)).max()
    after = np.abs(lab_mean(out, value_range) - lab_mean(reference, value_range)).max()
    assert before > 3.0 and after < 1.0
    same = blending.match_color(reference, reference, value_range=value_range)
    np.testing.assert_allclose(same, reference, atol=1e-3 * value_range)
    # Statistics inside a mask only; a smaller reference is resized to the face.
    mask = np.zeros(reference.shape[:2], np.float32)
    mask[128:384, 128:384] = 1
    small_ref = cv2.resize(reference, (256, 256), interpolation=cv2.INTER_AREA)
    masked = blending.match_color(tinted, small_ref, mask=mask, value_range=value_range)
    inner = (slice(128, 384), slice(128, 384))
    gap = np.abs(lab_mean(masked[inner], value_range) - lab_mean(reference[inner], value_range)).max()
    assert gap < 1.5


def test_alpha_composite_copies():
    canvas = np.zeros((20, 20, 3), np.float32)
    face = np.full((4, 4, 3), 100.0, np.float32)
    mask = np.full((4, 4), 0.5, np.float32)
    out = blending.alpha_composite(canvas, (2, 6, 3, 7), face, mask)
    assert canvas.max() == 0.0
    assert out[3, 4, 0] == 50.0 and out[0, 0, 0] == 0.0 and out[2:6, 3:7].min() == 50.0
    assert (out > 0).sum() == 4 * 4 * 3


# --- plugin hook -------------------------------------------------------------------


def test_register_blenders_hook(scene):
    canvas, face, inverse = scene

    class HalfBlender:
        needs_parsing = False

        def blend(self, image, face, inverse_affine, parsing, upscale):
            roi, warped = blending.warp_face_to_canvas(face, inverse_affine, image.shape)
            _, mask = blending.soft_square_mask(face.shape[:2], inverse_affine, image.shape, upscale)
            return blending.alpha_composite(image, roi, warped, 0.5 * mask)

    class InlinePlugin:
        @hookimpl
        def register_blenders(self, register):
            register("inline-test", lambda context: HalfBlender(), description="half-strength soft paste")

    pm.register(InlinePlugin(), name="inline-blender-test")
    try:
        spec = get_component("blender", "inline-test")
        assert spec.plugin == "inline-blender-test"
        assert spec.description == "half-strength soft paste"
        blender = spec.build(ComponentContext())
        flat = np.zeros((FACE, FACE, 3), np.float32)
        out = blender.blend(canvas.copy(), flat, inverse, None, 1.0)
        cy, cx = centre_of(inverse)
        np.testing.assert_allclose(out[cy, cx], canvas[cy, cx] * 0.5, atol=0.5)
        # The built-ins are still there, registered by the blenders plugin.
        assert get_component("blender", "soft").plugin == "blenders"
    finally:
        pm.unregister(name="inline-blender-test")
    with pytest.raises(ComponentError):
        get_component("blender", "inline-test")


def test_alpha_composite_draws_in_place_only_when_asked(scene):
    canvas, face, inverse = scene
    roi, warped = blending.warp_face_to_canvas(face, inverse, canvas.shape)
    _, mask = blending.soft_square_mask(face.shape[:2], inverse, canvas.shape, 1.0)
    before = canvas.copy()
    copied = blending.alpha_composite(canvas, roi, warped, mask)
    np.testing.assert_array_equal(canvas, before)  # a copy by default: the input is kept
    drawn = blending.alpha_composite(canvas, roi, warped, mask, in_place=True)
    assert drawn is canvas
    np.testing.assert_array_equal(drawn, copied)  # the same pixels either way
    assert not np.array_equal(drawn, before)


def test_match_color_keeps_the_restored_contrast_unless_asked(scene):
    reference = scene[1]
    contrasty = np.clip((reference - reference.mean()) * 1.4 + reference.mean() + 8, 0, 255)

    def lightness_std(image: np.ndarray) -> float:
        return float(cv2.cvtColor((image / 255).astype(np.float32), cv2.COLOR_BGR2Lab)[..., 0].std())

    kept = blending.match_color(contrasty, reference)
    flattened = blending.match_color(contrasty, reference, lightness_spread=True)
    assert abs(lightness_std(kept) - lightness_std(contrasty)) < 0.05 * lightness_std(contrasty)
    assert abs(lightness_std(flattened) - lightness_std(reference)) < 0.05 * lightness_std(reference)
    assert abs(lab_mean(kept)[0] - lab_mean(reference)[0]) < 1.0  # the mean lightness is matched still
