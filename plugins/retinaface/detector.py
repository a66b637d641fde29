"""The RetinaFace detectors: facexlib's network in PyTorch, the bundled ONNX file on
onnxruntime, and the one decoder of their raw outputs (anchors, variances, NMS)."""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from facefix.checkpoints import load_into, read_checkpoint
from facefix.components import ComponentContext, DetectedFace
from facefix.compat import ensure_torchvision

DEFAULT_CONFIDENCE = 0.8  # RetinaFace's own default (facexlib's helper uses 0.97)
# The bundled export takes a 27 px banister knob in GFPGAN's 10045.png for a face at 0.877 and
# duplicates blurred faces up to 0.955; real faces, clean or degraded, score 0.977 and up but
# one (benchmarks/detector_threshold.py on ../shared/photos and degraded copies: 1 error at
# 0.96-0.97, 5 at 0.8).
BUNDLED_CONFIDENCE = 0.97
DEFAULT_NMS = 0.4
# RetinaFace's reference detect.py: the best 5000 candidates go into NMS, at most 750 faces come out
PRE_NMS_TOP_K = 5000
KEEP_TOP_K = 750
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
        # read_checkpoint drops the "module." prefix of files saved from DataParallel
        load_into(model, read_checkpoint(weights).state, weights, f"not a RetinaFace {network} checkpoint")
        self.model = model.to(device)
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
    keep = torch.nonzero(scores > confidence).squeeze(1)
    if keep.numel() > PRE_NMS_TOP_K:  # a very low threshold keeps every anchor; NMS is quadratic in them
        keep = keep[scores[keep].topk(PRE_NMS_TOP_K).indices]
    loc, landmarks, scores, priors = loc[keep], landmarks[keep], scores[keep], priors[keep]
    centres = priors[:, :2] + loc[:, :2] * centre_variance * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * size_variance)
    scale = torch.tensor([width, height], dtype=torch.float32, device=device)
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1) * scale.repeat(2)
    points = (priors[:, None, :2] + landmarks.view(-1, 5, 2) * centre_variance * priors[:, None, 2:]) * scale
    order = ensure_torchvision().ops.nms(boxes, scores, nms)[:KEEP_TOP_K]
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


def build_torch(network: str, registry_name: str, context: ComponentContext) -> RetinaFaceDetector:
    """facexlib's ``network`` ("resnet50", "mobile0.25") with the registry's weights."""
    return RetinaFaceDetector(network, context.resolve_weights(registry_name), context.device,
                              context.threshold(DEFAULT_CONFIDENCE), DEFAULT_NMS)


def build_bundled(registry_name: str, context: ComponentContext) -> BundledRetinaFaceDetector:
    return BundledRetinaFaceDetector(context.resolve_weights(registry_name), context.device,
                                     context.threshold(BUNDLED_CONFIDENCE), DEFAULT_NMS)
