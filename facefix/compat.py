"""Keep torchvision (and facexlib, which imports it) importable on CPU-only torch.

The torchvision wheel on the package index is built against a CUDA torch. With the
CPU torch its compiled ``_C`` extension fails to load, and importing torchvision then
dies in ``_meta_registrations`` with ``operator torchvision::nms does not exist``,
because that module registers a fake kernel for ``nms`` unconditionally.

:func:`ensure_torchvision` defines the two operators that import needs, backed by a
pure-PyTorch NMS, and routes ``torchvision.ops.nms`` to it. Everything else in
torchvision that has a Python fallback (``roi_align`` among them) already uses it
when the extension is missing. Where torchvision imports normally nothing is touched.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

import torch

_lock = threading.Lock()
_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops
patched = False  # True once the fallback had to be installed


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, same contract as ``torchvision.ops.nms``.

    Returns the indices of kept boxes (int64), sorted by decreasing score. Boxes are
    ``(x1, y1, x2, y2)``; a box is dropped when its IoU with an already kept,
    higher-scoring box is strictly greater than ``iou_threshold``.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    boxes = boxes.float()
    order = torch.argsort(scores.float(), descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    # Pairwise IoU once, then one pass over the sorted order; O(n^2) memory is fine
    # for detector outputs (a few thousand boxes at most after score thresholding).
    xx1 = torch.maximum(x1[:, None], x1[None, :])
    yy1 = torch.maximum(y1[:, None], y1[None, :])
    xx2 = torch.minimum(x2[:, None], x2[None, :])
    yy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool)
    overlaps = (iou > iou_threshold).cpu()
    keep = []
    for index in order.cpu().tolist():
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= overlaps[index]
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _qnms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    # torchvision hands quantized NMS the integer representations; order and IoU
    # are unchanged by the common scale, so the float path gives the same answer.
    return nms_reference(boxes.float(), scores.float(), iou_threshold)


def _drop_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _define_fallback_ops() -> None:
    global _library
    _library = torch.library.Library("torchvision", "FRAGMENT")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.impl("nms", nms_reference, "CompositeExplicitAutograd")
    _library.impl("qnms", _qnms, "CompositeExplicitAutograd")


def _route_nms(torchvision: ModuleType) -> None:
    def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        return torch.ops.torchvision.nms(boxes, scores, iou_threshold)

    nms.__doc__ = nms_reference.__doc__
    # boxes.nms is looked up at call time by batched_nms, ops.nms by facexlib.
    torchvision.ops.boxes.nms = nms
    torchvision.ops.nms = nms


def ensure_torchvision() -> ModuleType:
    """Import torchvision, installing the pure-PyTorch fallback if its ops are broken.

    Safe to call many times and from several threads; returns the module.
    """
    global patched
    with _lock:
        try:
            import torchvision
        except RuntimeError as error:
            if "torchvision::" not in str(error) or "does not exist" not in str(error):
                raise
            _drop_partial_import()
            if _library is None:
                _define_fallback_ops()
            import torchvision

            patched = True
        if patched and torchvision.ops.nms.__module__ != __name__:
            _route_nms(torchvision)
        return torchvision
