"""What every parser backend does around its network, and which size a face is parsed at.

Kept free of torch: the pipeline and the onnxruntime parsers use it without PyTorch.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import cv2
import numpy as np


def resize_batch(images: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Resize a ``(N, H, W[, C])`` batch to ``size`` x ``size``."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([cv2.resize(image, (size, size), interpolation=interpolation) for image in images])


def in_batches(run, batch: np.ndarray, size: int) -> np.ndarray:
    """``run`` over ``batch`` in slices of ``size`` (0: all at once), the results concatenated."""
    if size <= 0 or len(batch) <= size:
        return run(batch)
    return np.concatenate([run(batch[index:index + size]) for index in range(0, len(batch), size)])


def label_faces(faces: np.ndarray, labels: Callable[[np.ndarray], np.ndarray], parser: Any,
                network_input: int | None = None) -> np.ndarray:
    """What every backend of a segmentation parser does around its network: ``(N, S, S, 3)``
    faces resized to ``network_input`` (``parser.network_size`` by default) and normalised,
    labelled by ``labels`` in batches of ``parser.batch_size``, mapped through
    ``parser.label_map`` and brought back to ``S`` (nearest neighbour: labels are categorical)."""
    size = faces.shape[1]
    # the network's own size as its reference implementations resize (linear); a smaller
    # size asked for a paste is an area reduction, so the face isn't aliased
    reduced = network_input is not None and network_input < min(size, parser.network_size)
    network_input = network_input or parser.network_size
    batch = parser.normalization.to_network(
        resize_batch(faces, network_input, cv2.INTER_AREA if reduced else cv2.INTER_LINEAR))
    found = in_batches(labels, batch, parser.batch_size).astype(np.uint8, copy=False)
    if parser.label_map is not None:
        found = parser.label_map[found]
    return resize_batch(found, size, cv2.INTER_NEAREST)


#: A face only pasted (not fed to the restorer) is labelled at this share of its paste
#: size: the paste mask is feathered by two Gaussians of sigma 11/512 of the face, so a label
#: edge placed within 2 px of the paste moves the mask less than the feathering spreads it.
PASTE_LABEL_SHARE = 0.5
#: ... and never below this share of the parser's own size, so the network sees faces at
#: no less than half the scale it was trained on. benchmarks/parse_resolution.py measures
#: it on real faces: at half its size the real U-Net's pasted classes have IoU 0.871
#: against the truth (0.884 at its own size) and the paste mask is 9.7/255 from the
#: truth's on average (9.0/255); at 3/8 they fall to 0.786 and 16.1/255.
SMALLEST_PARSE_SHARE = 0.5


def paste_parse_size(parser: Any, paste_size: float | None) -> int | None:
    """The network input that labels a face well enough for a paste ``paste_size`` px wide.

    Parsers that run at any multiple of ``parser.size_multiple`` get
    :data:`PASTE_LABEL_SHARE` of the paste size rounded up to it, never below
    :data:`SMALLEST_PARSE_SHARE` of their own size; None means the parser's own size
    (fixed-size parsers, faces pasted large enough to need it, or no paste size known)."""
    multiple = getattr(parser, "size_multiple", None)
    full = int(getattr(parser, "network_size", 0) or 0)
    if not multiple or not full or paste_size is None:
        return None
    floor = math.ceil(full * SMALLEST_PARSE_SHARE / multiple) * multiple
    wanted = max(floor, math.ceil(paste_size * PASTE_LABEL_SHARE / multiple) * multiple)
    return None if wanted >= full else wanted


def parse_for_paste(parser: Any, crops: np.ndarray, paste_sizes: Sequence[float | None]) -> np.ndarray:
    """Label ``crops`` for their paste masks: faces grouped by :func:`paste_parse_size`, each
    group parsed at its size (all at the parser's own size when it has no ``size_multiple``)."""
    sizes = [paste_parse_size(parser, paste_size) for paste_size in paste_sizes]
    if all(size is None for size in sizes):
        return parser.parse(crops)
    labels = np.empty(crops.shape[:3], np.uint8)
    for size in dict.fromkeys(sizes):
        chosen = [index for index, value in enumerate(sizes) if value == size]
        labels[chosen] = parser.parse(crops[chosen]) if size is None else parser.parse(crops[chosen], size)
    return labels
