"""Small helpers shared by PyTorch-based components: device choice, and the
one parser implementation every segmentation network uses (:class:`SegmentationParser`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facefix.components import Normalization, weights_key
from facefix.errors import ComponentError
from facefix.parsing import label_faces


def select_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without one is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ComponentError("--device cuda was asked for, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    return name


class LabelsOnly(torch.nn.Module):
    """A segmentation network reduced to its per-pixel class (argmax), as uint8: what a
    parser returns, and a far smaller output than 19 channels of logits for an export."""

    def __init__(self, network: torch.nn.Module, output_index: int | None = None):
        super().__init__()
        self.network = network
        self.output_index = output_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        if self.output_index is not None:
            logits = logits[self.output_index]
        return logits.argmax(dim=1).to(torch.uint8)


class SegmentationParser:
    """The parser contract around a segmentation network: aligned faces resized to the
    network's size, normalised, labelled, mapped to CelebAMask-HQ classes and brought back
    to the faces' size. On a CPU faces go one at a time (batches cost more per face on a
    few cores, and their activations scale the memory); on a GPU, together. ``batch_size``
    overrides that choice. ``size_multiple``: the network is fully convolutional and runs
    at any multiple of it (faces can then be parsed at the size their paste needs:
    :func:`paste_parse_size`); None: only at ``network_size``."""

    def __init__(self, network: torch.nn.Module, *, network_size: int, normalization: Normalization,
                 device: str = "cpu", label_map: np.ndarray | None = None, output_index: int | None = None,
                 name: str = "", weights: Path | None = None, batch_size: int | None = None,
                 size_multiple: int | None = None):
        self.module = LabelsOnly(network, output_index).eval().to(device)
        self.network_size = network_size
        self.normalization = normalization
        self.device = device
        self.label_map = None if label_map is None else np.asarray(label_map, np.uint8)
        self.name = name
        self.weights = weights
        self.batch_size = batch_size or (0 if device.startswith("cuda") else 1)  # 0: all the faces at once
        self.size_multiple = size_multiple

    def labels(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` normalised float32 → ``(N, S, S)`` uint8 network classes."""
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch).to(self.device)).cpu().numpy()

    def parse(self, faces: np.ndarray, network_input: int | None = None) -> np.ndarray:
        return label_faces(faces, self.labels, self, network_input)

    def export_module(self) -> torch.nn.Module:
        return self.module

    def export_key(self) -> str:
        """What an export contains, for the cache: name, and the weights file's path, size, time."""
        return weights_key(self.name, self.weights, "parser" if self.size_multiple is None else "parser:free-size")
