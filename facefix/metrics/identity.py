"""Identity metrics on SFace embeddings of aligned faces.

* ``ids``: the cosine similarity of a restored face's embedding and its ground truth's
  (1: the same identity to SFace; about 0 for two different people);
* ``deg``: the angle between them in degrees (GFP-GAN's "Deg", there on ArcFace);
* ``fd_sface``: the Fréchet distance between the two sets' (L2-normalised) embeddings,
  FID's formula on SFace's space. It is **not comparable with published FID**, which
  uses Inception-v3 pool features of whole images.

Faces are FFHQ-aligned crops, as ``facefix eval`` compares; the ArcFace 112 px crop
SFace needs is cut exactly as the identity loss cuts it (:func:`facefix.nn.sface.sface_input`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from facefix.nn.sface import load_sface, sface_input


class SFaceEmbedder:
    def __init__(self, weights: Path | str, device: str = "cpu"):
        self.network = load_sface(weights).to(device)
        self.device = device

    @torch.inference_mode()
    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """The L2-normalised 128-D embedding of one aligned BGR ``uint8`` face."""
        rgb = np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1), dtype=np.float32)
        faces = torch.from_numpy(rgb)[None].to(self.device) / 127.5 - 1
        embedding = self.network(sface_input(faces))[0].double()
        return (embedding / embedding.norm()).cpu().numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def degrees(similarity: float) -> float:
    """The angle whose cosine is ``similarity``, in degrees."""
    return math.degrees(math.acos(max(-1.0, min(1.0, similarity))))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|μa - μb|² + Tr(Σa + Σb - 2 (Σa Σb)^½)`` of two ``(N, D)`` sets of vectors."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(root):  # rounding leaves tiny imaginary parts
        root = root.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))
