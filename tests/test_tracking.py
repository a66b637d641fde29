"""Face tracks and landmark smoothing (facefix/video/tracking.py) on synthetic tracks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefix.components import DetectedFace
from facefix.video.tracking import FaceTracker, OneEuroFilter, box_iou, follow_points

FPS = 25.0
#: A 200 px face's five landmarks around its centre.
SHAPE = np.array([[-30, -20], [30, -20], [0, 15], [-25, 45], [25, 45]], np.float64)
SCALE = 200.0


def noisy_track(centres: np.ndarray, sigma: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    truth = SHAPE[None] + centres[:, None, :]
    rng = np.random.default_rng(seed)
    return truth, truth + rng.normal(0.0, sigma, truth.shape)


def smooth(observations: np.ndarray, times: np.ndarray, **params) -> np.ndarray:
    one_euro = OneEuroFilter(**params)
    return np.array([one_euro(x / SCALE, t) * SCALE for x, t in zip(observations, times)])


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=-1))))


def jitter(track: np.ndarray) -> float:
    """RMS frame-to-frame acceleration: what the eye sees as shimmer."""
    return float(np.sqrt(np.mean(np.sum(np.diff(track, 2, axis=0) ** 2, axis=-1))))


def test_one_euro_halves_the_noise_of_a_still_face():
    times = np.arange(250) / FPS
    truth, observed = noisy_track(np.tile([[320.0, 240.0]], (250, 1)), sigma=1.5)
    smoothed = smooth(observed, times)
    assert rms(smoothed[25:], truth[25:]) < 0.45 * rms(observed[25:], truth[25:])
    assert jitter(smoothed - truth) < 0.2 * jitter(observed - truth)


def test_one_euro_follows_a_moving_face_without_lagging_behind_the_noise():
    # 60 px sway at 0.5 Hz: about one face size per second at its fastest
    times = np.arange(250) / FPS
    centres = np.stack([320 + 60 * np.sin(np.pi * times), 240 + 30 * np.cos(np.pi * times)], axis=1)
    truth, observed = noisy_track(centres, sigma=1.5, seed=1)
    smoothed = smooth(observed, times)
    assert jitter(smoothed - truth) < 0.7 * jitter(observed - truth)
    assert rms(smoothed, truth) < 0.02 * SCALE  # the lag stays under 2% of the face
    # a plain low-pass at the same resting cutoff lags by tens of pixels: beta is what helps
    assert rms(smooth(observed, times, beta=0.0), truth) > 5 * rms(smoothed, truth)


def test_one_euro_uses_real_time_steps():
    # variable frame rate: a face drifting at 40 px/s, sampled evenly or unevenly, lags
    # behind by the same distance, because the filter's time constants are in seconds
    regular = np.arange(150) / 30.0
    uneven = np.cumsum(np.where(np.arange(150) % 3 == 0, 2 / 30.0, 1 / 30.0)) - 1 / 30.0
    lags = []
    for times in (regular, uneven):
        truth, _ = noisy_track(np.stack([300 + 40 * times, np.full_like(times, 200)], axis=1), sigma=0.0)
        lags.append(rms(smooth(truth, times)[-1], truth[-1]))
    assert 0.1 < lags[0] < 3.0
    assert abs(lags[0] - lags[1]) < 0.1 * lags[0]
    one_euro = OneEuroFilter()
    first = one_euro(np.array([1.0, 2.0]), 0.0)
    assert np.array_equal(one_euro(np.array([5.0, 5.0]), 0.0), first)  # no time passed: no move
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)


def face_at(x: float, y: float, size: float = SCALE) -> DetectedFace:
    landmarks = (SHAPE * size / SCALE + [x, y]).astype(np.float32)
    return DetectedFace(box=(x - size / 2, y - size / 2, x + size / 2, y + size / 2), score=0.99,
                        landmarks=landmarks)


def test_tracker_keeps_ids_across_frames_and_holds_a_missed_face():
    tracker = FaceTracker(max_missed=2)
    ids_seen = []
    for index in range(20):
        faces = [face_at(200 + 3 * index, 300), face_at(700 - 3 * index, 310)]
        if index % 2:
            faces.reverse()  # detectors don't promise an order
        tracked = tracker.update(faces, index / FPS)
        by_position = sorted(tracked, key=lambda face: face.box[0])
        ids_seen.append([face.track_id for face in by_position])
        assert all(face.detected for face in tracked)
    assert all(ids == [0, 1] for ids in ids_seen)

    # the left face is missed for two frames: still there (held), then found again
    for index in (20, 21):
        tracked = tracker.update([face_at(700 - 3 * index, 310)], index / FPS)
        assert [face.track_id for face in tracked] == [0, 1]
        assert [face.detected for face in tracked] == [False, True]
    tracked = tracker.update([face_at(266, 300), face_at(634, 310)], 22 / FPS)
    assert [face.track_id for face in tracked] == [0, 1]

    # gone for longer than max_missed: the track ends; a newcomer gets a fresh id
    for index in range(23, 26):
        tracked = tracker.update([face_at(700 - 3 * index, 310)], index / FPS)
    assert [face.track_id for face in tracked] == [1]
    tracked = tracker.update([face_at(700 - 3 * 26, 310), face_at(150, 500, size=120)], 26 / FPS)
    assert [face.track_id for face in tracked] == [1, 2]


def test_tracker_smooths_each_track_in_its_own_face_units():
    rng = np.random.default_rng(3)
    big, small = [], []
    tracker = FaceTracker()
    for index in range(100):
        faces = [face_at(300, 300, size=300), face_at(800, 300, size=60)]
        for face in faces:
            face.landmarks[:] += rng.normal(0, 1.0, face.landmarks.shape).astype(np.float32)
        tracked = tracker.update(faces, index / FPS)
        big.append(tracked[0].landmarks)
        small.append(tracked[1].landmarks)
    truth_big = face_at(300, 300, size=300).landmarks
    truth_small = face_at(800, 300, size=60).landmarks
    assert rms(np.array(big[20:]), truth_big) < 0.6
    assert rms(np.array(small[20:]), truth_small) < 0.9  # a small face's noise is larger relative to it
    unsmoothed = FaceTracker(smoothing=False)
    tracked = unsmoothed.update([face_at(300, 300)], 0.0)
    assert np.array_equal(tracked[0].landmarks, tracked[0].raw_landmarks)


def textured_frame(dx: float, dy: float) -> np.ndarray:
    rng = np.random.default_rng(4)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (480, 640)).astype(np.uint8), (5, 5), 0)
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(texture, matrix, (640, 480), borderMode=cv2.BORDER_REFLECT)


def test_optical_flow_carries_tracks_between_detections():
    points = SHAPE + [320, 240]
    moved = follow_points(textured_frame(0, 0), textured_frame(4, -3), points)
    assert moved is not None
    assert np.allclose(moved - points, [4, -3], atol=0.2)
    # an unrelated frame loses the points
    assert follow_points(textured_frame(0, 0), np.zeros((480, 640), np.uint8), points) is None

    tracker = FaceTracker(smoothing=False)
    tracker.update([face_at(320, 240)], 0.0, textured_frame(0, 0))
    tracked = tracker.update(None, 1 / FPS, textured_frame(5, 2))  # a frame the detector skips
    assert [face.track_id for face in tracked] == [0] and not tracked[0].detected
    assert np.allclose(tracked[0].landmarks - face_at(320, 240).landmarks, [5, 2], atol=0.2)
    assert box_iou(tracked[0].box, face_at(325, 242).box) > 0.98


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
