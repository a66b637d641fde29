"""RetinaFace detectors (ResNet-50 and MobileNet-0.25) through facexlib's network."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from facefix.components import ComponentContext, DetectedFace
from facefix.compat import ensure_torchvision
from facefix.hookspecs import hookimpl
from facefix.weights import load_state_dict

# facexlib's network names for each facefix detector name.
_NETWORKS = {
    "retinaface_resnet50": ("resnet50", "RetinaFace ResNet-50: most accurate, slower on CPU"),
    "retinaface_mobile0.25": ("mobile0.25", "RetinaFace MobileNet-0.25: small and fast"),
}
DEFAULT_CONFIDENCE = 0.8  # RetinaFace's own default (facexlib's helper uses 0.97)
DEFAULT_NMS = 0.4


class RetinaFaceDetector:
    def __init__(self, network: str, weights: Path, device: str, confidence: float, nms: float):
        ensure_torchvision()
        from facexlib.detection.retinaface import RetinaFace

        with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" chatter
            warnings.simplefilter("ignore")
            model = RetinaFace(network_name=network, half=False, phase="test", device=device)
        state = load_state_dict(weights)
        # Checkpoints saved from DataParallel prefix every key with "module.".
        state = {key.removeprefix("module."): value for key, value in state.items()}
        model.load_state_dict(state, strict=True)
        self.model = model.eval().to(device)
        self.confidence = confidence
        self.nms = nms

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        rows = self.model.detect_faces(image, conf_threshold=self.confidence, nms_threshold=self.nms)
        faces = []
        for row in rows:
            faces.append(
                DetectedFace(
                    box=tuple(float(v) for v in row[:4]),
                    score=float(row[4]),
                    landmarks=np.asarray(row[5:15], np.float32).reshape(5, 2),
                )
            )
        return faces


def _factory(name: str):
    network, _ = _NETWORKS[name]

    def build(context: ComponentContext) -> RetinaFaceDetector:
        return RetinaFaceDetector(
            network,
            context.resolve_weights(name),
            context.device,
            float(context.options.get("detection_threshold") or DEFAULT_CONFIDENCE),
            DEFAULT_NMS,
        )

    return build


@hookimpl
def register_detectors(register):
    for name, (_, description) in _NETWORKS.items():
        register(name, _factory(name), description=description, weights=(name,))
