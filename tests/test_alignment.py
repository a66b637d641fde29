"""Alignment to the FFHQ template and the inverse transform used for paste-back."""

import cv2
import numpy as np

from facefix import alignment


def test_template_landmarks_map_onto_themselves():
    for size in (64, 512, 1024):
        affine = alignment.estimate_affine(alignment.template(size), size)
        assert np.allclose(affine, [[1, 0, 0], [0, 1, 0]], atol=1e-4)


def test_affine_recovers_a_known_similarity():
    rotation, scale, shift = np.deg2rad(17), 0.45, np.array([321.0, 77.0])
    matrix = scale * np.array([[np.cos(rotation), -np.sin(rotation)], [np.sin(rotation), np.cos(rotation)]])
    landmarks = alignment.template(512) @ matrix.T + shift  # the face as it sits in a photo
    affine = alignment.estimate_affine(landmarks, 512)
    mapped = landmarks @ affine[:, :2].T + affine[:, 2]
    assert np.abs(mapped - alignment.template(512)).max() < 1e-3


def test_inverse_affine_lands_restored_pixels_on_the_canvas():
    landmarks = np.array([[100, 120], [140, 118], [121, 142], [104, 165], [137, 163]], np.float32)
    affine = alignment.estimate_affine(landmarks, 256)
    for face_scale, upscale in ((1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (4.0, 3.0)):
        inverse = alignment.inverse_affine(affine, face_scale, upscale)
        # the template point in the restored face must land on the landmark at output scale,
        # with OpenCV's pixel-centre convention: a resize by s maps x to s*(x+0.5)-0.5
        crop_points = alignment.template(256)
        points = crop_points * face_scale + 0.5 * (face_scale - 1)
        canvas = points @ inverse[:, :2].T + inverse[:, 2]
        back = cv2.invertAffineTransform(affine)
        image_points = crop_points @ back[:, :2].T + back[:, 2]
        expected = image_points * upscale + 0.5 * (upscale - 1)
        assert np.abs(canvas - expected).max() < 1e-6


def test_warp_face_fills_outside_with_ffhq_grey():
    image = np.zeros((50, 50, 3), np.uint8)
    affine = np.array([[1.0, 0, 300], [0, 1.0, 300]])  # image lands outside the crop
    crop = alignment.warp_face(image, affine, 64)
    assert tuple(crop[0, 0]) == alignment.BORDER_VALUE


def test_resize_to_uses_exact_target_size_and_keeps_channels():
    image = np.random.default_rng(0).integers(0, 255, (31, 47, 4), np.uint8)
    up = alignment.resize_to(image, 94, 62)
    assert up.shape == (62, 94, 4)
    gray = image[:, :, 0]
    assert alignment.resize_to(gray, 20, 10).shape == (10, 20)
    assert alignment.resize_to(image, 47, 31) is image
    assert cv2.PSNR(alignment.resize_to(up, 47, 31)[:, :, :3], image[:, :, :3]) > 20
