"""YuNet face detector through OpenCV's ``cv2.FaceDetectorYN`` (ONNX, no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facefix.components import ComponentContext, DetectedFace
from facefix.hookspecs import hookimpl

DEFAULT_CONFIDENCE = 0.8
DEFAULT_NMS = 0.3


class YuNetDetector:
    def __init__(self, weights: Path, confidence: float, nms: float):
        # OpenCV 5 logs a harmless backend-target warning on every create.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self.detector = cv2.FaceDetectorYN.create(str(weights), "", (320, 320), confidence, nms, 5000)
        finally:
            cv2.utils.logging.setLogLevel(previous)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        height, width = image.shape[:2]
        self.detector.setInputSize((width, height))
        _, rows = self.detector.detect(image)
        faces = []
        for row in [] if rows is None else rows:
            x, y, w, h = (float(v) for v in row[:4])
            # YuNet lists the subject's right eye first, which is the image-left eye:
            # the same order as RetinaFace and the FFHQ template.
            landmarks = np.asarray(row[4:14], np.float32).reshape(5, 2)
            faces.append(DetectedFace(box=(x, y, x + w, y + h), score=float(row[14]), landmarks=landmarks))
        return sorted(faces, key=lambda face: -face.score)


def _build(context: ComponentContext) -> YuNetDetector:
    return YuNetDetector(context.resolve_weights("yunet"), context.threshold(DEFAULT_CONFIDENCE), DEFAULT_NMS)


@hookimpl
def register_detectors(register):
    register("yunet", _build, description="OpenCV YuNet: tiny ONNX detector, fast on CPU", weights=("yunet",), rank=40)
