"""RetinaFace detectors (ResNet-50 and MobileNet-0.25) through facexlib's network."""

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
DEFAULT_CONFIDENCE = 0.8  # RetinaFace's own default (facexlib's helper uses 0.97)
DEFAULT_NMS = 0.4


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
        height, width = image.shape[:2]
        device = self.model.mean_tensor.device
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device).float()[None]
        loc, conf, landmarks = self.model(inputs - self.model.mean_tensor)  # BGR minus the BGR means
        cfg = self.model.cfg
        priors = prior_boxes(height, width, tuple(map(tuple, cfg["min_sizes"])), tuple(cfg["steps"])).to(device)
        centre_variance, size_variance = cfg["variance"]
        loc, landmarks, scores = loc[0].float(), landmarks[0].float(), conf[0, :, 1].float()
        keep = scores > self.confidence
        loc, landmarks, scores, priors = loc[keep], landmarks[keep], scores[keep], priors[keep]
        centres = priors[:, :2] + loc[:, :2] * centre_variance * priors[:, 2:]
        sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * size_variance)
        scale = torch.tensor([width, height], dtype=torch.float32, device=device)
        boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1) * scale.repeat(2)
        points = (priors[:, None, :2] + landmarks.view(-1, 5, 2) * centre_variance * priors[:, None, 2:]) * scale
        order = ensure_torchvision().ops.nms(boxes, scores, self.nms)
        faces = []
        for index in order.tolist():
            faces.append(
                DetectedFace(
                    box=tuple(float(v) for v in boxes[index]),
                    score=float(scores[index]),
                    landmarks=points[index].cpu().numpy().astype(np.float32),
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
