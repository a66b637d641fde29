"""Face tracks across video frames, with landmark smoothing.

A detector run on each frame on its own gives landmarks that wobble by a pixel or two
even on a still face. The aligned crop follows them, and the restored face pasted back
shimmers: the flicker users see in frame-by-frame tools. Here each face gets a track:
detections are matched to tracks by box overlap, a track's landmarks go through a
One-Euro filter (heavy smoothing while the face is still, little lag when it moves),
and a track survives a few frames without a detection by following its landmarks with
optical flow, so a face doesn't blink out when the detector misses it once. The same
flow carries tracks across frames that are not detected at all (``detect_every > 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from facefix.components import DetectedFace

#: Defaults for the landmark filter, in face sizes (a track's scale) and seconds. On a
#: synthetic 200 px face at 25 fps with 1.5 px landmark noise they cut the frame-to-frame
#: shimmer of a still face 6.6x (error 2.1 -> 0.8 px RMS). A face swaying at about one
#: face size per second keeps 40% less shimmer for a 3 px lag (1.5% of the face), which
#: paste-back doesn't see: the crop and the paste use the same transform. The cutoff
#: rises from 0.5 Hz at rest to about 10 Hz at that speed. See tests/test_tracking.py.
DEFAULT_MIN_CUTOFF = 0.5
DEFAULT_BETA = 10.0
DEFAULT_D_CUTOFF = 1.0


def _smoothing_factor(cutoff: float, dt: float) -> float:
    """Exponential smoothing factor of a first-order low-pass at ``cutoff`` Hz."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) for arrays.

    A low-pass whose cutoff rises with the signal's speed: ``cutoff = min_cutoff +
    beta * |speed|``. Every element of the array shares one cutoff, set by the RMS of
    its rows' speeds (for ``(5, 2)`` landmarks: the RMS point speed), so the face's
    shape is smoothed as a whole rather than point by point. Timestamps are seconds and
    may be irregular (variable frame rate video).
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("One-Euro filter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._time: float | None = None

    def reset(self) -> None:
        self._value = self._speed = self._time = None

    def __call__(self, value: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(value, dtype=np.float64)
        if self._value is None or self._time is None:
            self._value, self._speed, self._time = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        # Two frames with one timestamp (it happens in broken files): no time has
        # passed, so the filtered value can't move.
        dt = float(t) - self._time
        if dt <= 0:
            return self._value.copy()
        speed = (x - self._value) / dt
        a_d = _smoothing_factor(self.d_cutoff, dt)
        self._speed = a_d * speed + (1.0 - a_d) * self._speed
        rows = self._speed.reshape(-1, self._speed.shape[-1]) if self._speed.ndim else self._speed.reshape(1, 1)
        magnitude = float(np.sqrt(np.mean(np.sum(rows**2, axis=1))))
        a = _smoothing_factor(self.min_cutoff + self.beta * magnitude, dt)
        self._value = a * x + (1.0 - a) * self._value
        self._time = float(t)
        return self._value.copy()


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class TrackedFace:
    """One face in one frame: its track and its smoothed landmarks."""

    track_id: int
    landmarks: np.ndarray  # (5, 2) float32, smoothed
    raw_landmarks: np.ndarray  # (5, 2) float32, as detected or followed this frame
    box: tuple[float, float, float, float]
    detected: bool  # False: carried by optical flow (not detected, or missed this frame)


@dataclass
class _Track:
    track_id: int
    raw: np.ndarray
    box: tuple[float, float, float, float]
    scale: float  # face size when the track began: the filter works in these units
    filter: OneEuroFilter | None
    missed: int = 0
    smoothed: np.ndarray = field(default_factory=lambda: np.zeros((5, 2), np.float32))


def follow_points(previous: np.ndarray, current: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """Where ``points`` (N x 2) of the gray frame ``previous`` moved in ``current``.

    Pyramidal Lucas-Kanade, checked forward then backward: a point whose round trip
    misses its start by more than a pixel is lost, and the track then is too (None).
    """
    start = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 1, 2)
    params = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, start, None, **params)
    if moved is None or not status.all():
        return None
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(current, previous, moved, None, **params)
    if back is None or not status_back.all():
        return None
    if float(np.abs(back - start).reshape(-1, 2).max()) > 1.0:
        return None
    return moved.reshape(-1, 2)


class FaceTracker:
    """Assigns detections to tracks and smooths each track's landmarks.

    Call :meth:`update` once per frame, in order. ``detections=None`` means the
    detector did not run on this frame: tracks move by optical flow alone. A track not
    matched by a detection is kept, moved by optical flow, for ``max_missed`` frames;
    then, or as soon as the flow loses it, it ends. Tracks come back sorted by id, and
    ids are never reused.
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.3,
        max_missed: int = 2,
        smoothing: bool = True,
        min_cutoff: float = DEFAULT_MIN_CUTOFF,
        beta: float = DEFAULT_BETA,
        d_cutoff: float = DEFAULT_D_CUTOFF,
    ):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.smoothing = smoothing
        self.filter_params = (min_cutoff, beta, d_cutoff)
        OneEuroFilter(*self.filter_params)  # validate now, not at the first face
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._previous_gray: np.ndarray | None = None

    @property
    def active(self) -> int:
        return len(self._tracks)

    def _follow(self, track: _Track, gray: np.ndarray | None) -> bool:
        """Move a track by optical flow to the current frame; False when it is lost."""
        if gray is None or self._previous_gray is None or self._previous_gray.shape != gray.shape:
            return True  # no flow to follow: the face is assumed not to have moved
        moved = follow_points(self._previous_gray, gray, track.raw)
        if moved is None:
            return False
        shift = (moved - track.raw).mean(axis=0)
        x1, y1, x2, y2 = track.box
        track.box = (x1 + shift[0], y1 + shift[1], x2 + shift[0], y2 + shift[1])
        track.raw = moved.astype(np.float32)
        return True

    def update(self, detections: Sequence[DetectedFace] | None, t: float,
               gray: np.ndarray | None = None) -> list[TrackedFace]:
        """Advance every track to the frame at time ``t`` (seconds); ``gray`` is that
        frame in grayscale, for optical flow (without it, undetected faces stay put)."""
        detected_ids: set[int] = set()
        if detections is None:
            self._tracks = [track for track in self._tracks if self._follow(track, gray)]
        else:
            pairs = sorted(
                ((box_iou(track.box, face.box), ti, di)
                 for ti, track in enumerate(self._tracks) for di, face in enumerate(detections)),
                reverse=True,
            )
            used_tracks: set[int] = set()
            used_detections: set[int] = set()
            for iou, ti, di in pairs:
                if iou < self.iou_threshold:
                    break
                if ti in used_tracks or di in used_detections:
                    continue
                used_tracks.add(ti)
                used_detections.add(di)
                track, face = self._tracks[ti], detections[di]
                track.raw = np.asarray(face.landmarks, np.float32).copy()
                track.box = tuple(float(v) for v in face.box)
                track.missed = 0
                detected_ids.add(track.track_id)
            kept = []
            for ti, track in enumerate(self._tracks):
                if ti not in used_tracks:
                    track.missed += 1
                    if track.missed > self.max_missed or not self._follow(track, gray):
                        continue
                kept.append(track)
            for di, face in enumerate(detections):
                if di in used_detections:
                    continue
                x1, y1, x2, y2 = (float(v) for v in face.box)
                track = _Track(
                    track_id=self._next_id,
                    raw=np.asarray(face.landmarks, np.float32).copy(),
                    box=(x1, y1, x2, y2),
                    scale=max(1.0, x2 - x1, y2 - y1),
                    filter=OneEuroFilter(*self.filter_params) if self.smoothing else None,
                )
                self._next_id += 1
                detected_ids.add(track.track_id)
                kept.append(track)
            self._tracks = kept
        self._previous_gray = gray
        result = []
        for track in sorted(self._tracks, key=lambda item: item.track_id):
            if track.filter is not None:
                # in face-size units, so one set of parameters suits small and large faces
                track.smoothed = (track.filter(track.raw / track.scale, t) * track.scale).astype(np.float32)
            else:
                track.smoothed = track.raw.copy()
            result.append(TrackedFace(
                track_id=track.track_id,
                landmarks=track.smoothed.copy(),
                raw_landmarks=track.raw.copy(),
                box=track.box,
                detected=track.track_id in detected_ids,
            ))
        return result
