"""RetinaFace detectors: ResNet-50 and MobileNet-0.25 through facexlib's network, and
the MobileNet-0.25 ONNX file that ships inside facefix (the offline default)."""

from __future__ import annotations

import functools
import math
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
BUNDLED = "retinaface_bundled"
DEFAULT_CONFIDENCE = 0.8  # RetinaFace's own default (facexlib's helper uses 0.97)
DEFAULT_NMS = 0.4
# Anchors and box coding shared by every RetinaFace release (ResNet-50 and MobileNet-0.25).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
BGR_MEAN = np.array([104.0, 117.0, 123.0], np.float32)  # the means it was trained with, BGR order


@functools.lru_cache(maxsize=16)
def prior_boxes(height: int, width: int, min_sizes: tuple[tuple[int, ...], ...], steps: tuple[int, ...]) -> torch.Tensor:
    """RetinaFace anchors ``(cx, cy, w, h)``, normalised, in the network's output order.

    facexlib builds these in a Python loop over every feature-map cell on every call,
    which costs more than the network itself on a CPU; the same grid built with tensor
    ops, cached per image size, is exact and takes microseconds.
    """
    levels = []
    for sizes, step in zip(min_sizes, steps):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(rows, dtype=torch.float32) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float32) + 0.5) * step / width
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
        per_size = [
            torch.stack([grid_x, grid_y, torch.full_like(grid_x, size / width), torch.full_like(grid_y, size / height)], -1)
            for size in sizes
        ]
        # anchors of one cell are adjacent: (rows, cols, n_sizes, 4)
        levels.append(torch.stack(per_size, dim=2).reshape(-1, 4))
    return torch.cat(levels)


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
        device = self.model.mean_tensor.device
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device).float()[None]
        loc, conf, landmarks = self.model(inputs - self.model.mean_tensor)  # BGR minus the BGR means
        return decode(loc[0], conf[0, :, 1], landmarks[0], image.shape[:2], self.confidence, self.nms)


def decode(loc: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, image_size: tuple[int, int],
           confidence: float, nms: float) -> list[DetectedFace]:
    """Faces from one image's raw RetinaFace outputs (anchor offsets, face scores, landmark
    offsets), above ``confidence`` and after non-maximum suppression, best first."""
    height, width = image_size
    device = loc.device
    priors = prior_boxes(height, width, MIN_SIZES, STEPS).to(device)
    centre_variance, size_variance = VARIANCE
    loc, landmarks, scores = loc.float(), landmarks.float(), scores.float()
    keep = scores > confidence
    loc, landmarks, scores, priors = loc[keep], landmarks[keep], scores[keep], priors[keep]
    centres = priors[:, :2] + loc[:, :2] * centre_variance * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * size_variance)
    scale = torch.tensor([width, height], dtype=torch.float32, device=device)
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1) * scale.repeat(2)
    points = (priors[:, None, :2] + landmarks.view(-1, 5, 2) * centre_variance * priors[:, None, 2:]) * scale
    order = ensure_torchvision().ops.nms(boxes, scores, nms)
    return [
        DetectedFace(box=tuple(float(v) for v in boxes[index]), score=float(scores[index]),
                     landmarks=points[index].cpu().numpy().astype(np.float32))
        for index in order.tolist()
    ]


class BundledRetinaFaceDetector:
    """RetinaFace MobileNet-0.25 as ONNX on onnxruntime: the file ships inside facefix,
    so detection works with no download (see weights/README.md for where it comes from)."""

    def __init__(self, weights: Path, device: str, confidence: float, nms: float):
        from facefix.onnx import create_session

        self.session, self.provider = create_session(weights, device)
        self.input_name = self.session.get_inputs()[0].name
        self.confidence = confidence
        self.nms = nms

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        inputs = (image.astype(np.float32) - BGR_MEAN).transpose(2, 0, 1)[None]
        loc, conf, landmarks = self.session.run(None, {self.input_name: np.ascontiguousarray(inputs)})
        return decode(torch.from_numpy(loc[0]), torch.from_numpy(conf[0, :, 1]), torch.from_numpy(landmarks[0]),
                      image.shape[:2], self.confidence, self.nms)


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


def _build_bundled(context: ComponentContext) -> BundledRetinaFaceDetector:
    return BundledRetinaFaceDetector(
        context.resolve_weights(BUNDLED),
        context.device,
        float(context.options.get("detection_threshold") or DEFAULT_CONFIDENCE),
        DEFAULT_NMS,
    )


@hookimpl
def register_detectors(register):
    for name, (_, description) in _NETWORKS.items():
        register(name, _factory(name), description=description, weights=(name,))
    register(BUNDLED, _build_bundled, weights=(BUNDLED,),
             description="RetinaFace MobileNet-0.25 (ONNX) shipped with facefix: works offline")
