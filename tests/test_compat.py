"""facefix.compat: torchvision and facexlib import on CPU-only torch, and NMS is right."""

import numpy as np
import torch

from facefix import compat


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            xx1, yy1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            xx2, yy2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, xx2 - xx1) * max(0.0, yy2 - yy1)
            area_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            area_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / (area_i + area_j - inter) > threshold:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


def test_torchvision_and_facexlib_import():
    torchvision = compat.ensure_torchvision()
    assert compat.ensure_torchvision() is torchvision  # idempotent
    from facexlib.detection.retinaface import RetinaFace  # noqa: F401  (imports torchvision.models)
    from facexlib.parsing.bisenet import BiSeNet  # noqa: F401


def test_nms_matches_brute_force_on_random_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, size=(300, 2))
    wh = rng.uniform(5, 60, size=(300, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, size=300).astype(np.float32)
    for threshold in (0.2, 0.4, 0.7):
        expected = brute_force_nms(boxes, scores, threshold)
        got = compat.nms_reference(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).tolist()
        assert got == expected


def test_torchvision_ops_route_to_a_working_nms():
    torchvision = compat.ensure_torchvision()
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torchvision.ops.nms(boxes, scores, 0.4).tolist() == [0, 2]
    # batched_nms keeps overlapping boxes of different classes apart
    assert sorted(torchvision.ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.4).tolist()) == [0, 1, 2]
    assert torchvision.ops.nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_fallback_only_installed_when_torchvision_is_broken():
    torchvision = compat.ensure_torchvision()
    if compat.patched:
        assert torchvision.ops.nms.__module__ == "facefix.compat"
    else:  # a working torchvision is left alone
        assert torchvision.ops.nms.__module__.startswith("torchvision")
