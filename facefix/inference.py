"""Small helpers shared by PyTorch-based components: device choice and batched runs."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from facefix.components import Normalization
from facefix.errors import ComponentError


def select_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without one is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ComponentError("--device cuda was asked for, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    return name


def resize_batch(images: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Resize a ``(N, H, W[, C])`` batch to ``size`` x ``size``."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([cv2.resize(image, (size, size), interpolation=interpolation) for image in images])


@torch.inference_mode()
def segment(
    model: torch.nn.Module,
    faces: np.ndarray,
    *,
    network_size: int,
    normalization: Normalization,
    device: str,
    label_map: np.ndarray | None = None,
    output_index: int | None = None,
) -> np.ndarray:
    """Run a segmentation network on aligned faces and return per-pixel labels.

    ``faces``: ``(N, S, S, 3)`` BGR uint8. The network sees ``network_size`` pixels;
    labels come back at ``S`` (nearest neighbour, labels are categorical).
    ``label_map[j]`` is the CelebAMask-HQ class of the network's output channel ``j``.
    ``output_index`` picks one element when the model returns a tuple.
    """
    size = faces.shape[1]
    batch = resize_batch(faces, network_size, cv2.INTER_LINEAR)
    tensor = torch.from_numpy(normalization.to_network(batch)).to(device)
    logits = model(tensor)
    if output_index is not None:
        logits = logits[output_index]
    labels = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
    if label_map is not None:
        labels = np.asarray(label_map, np.uint8)[labels]
    return resize_batch(labels, size, cv2.INTER_NEAREST)
