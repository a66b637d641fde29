"""Face-parsing maps as networks take them: CelebAMask-HQ's 19 classes as one-hot planes.

Shared by every network conditioned on parsing (PSFR-GAN's generator, CFGPFSSR's SFT)
and by their training recipes, which feed ground-truth masks the same way.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from facefix.components import CELEBAMASK_CLASSES

PARSE_CLASSES = len(CELEBAMASK_CLASSES)


def parsing_onehot(logits: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` logits → 1 where a class logit equals the per-pixel maximum, else 0
    (PSFR-GAN's conditioning map; ties, which real logits don't have, give several ones).
    Unlike ``argmax`` + ``one_hot`` it exports to ONNX as plain comparisons."""
    return (logits == logits.amax(dim=1, keepdim=True)).to(logits.dtype)


def labels_onehot(labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, H, W)`` CelebAMask-HQ labels → ``(N, 19, H, W)`` one-hot maps."""
    return F.one_hot(labels.long().clamp(0, PARSE_CLASSES - 1), PARSE_CLASSES).permute(0, 3, 1, 2).to(dtype)


def parser_logits(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A parsing network's class logits: its output, or the first of its outputs (PSFR-GAN's
    parser also returns a restored image)."""
    return output[0] if isinstance(output, (tuple, list)) else output
