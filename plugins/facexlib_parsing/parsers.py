"""facexlib's ParseNet and BiSeNet as facefix parsers (CelebAMask-HQ's label order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefix.checkpoints import load_into, read_checkpoint
from facefix.components import ComponentContext, Normalization
from facefix.compat import ensure_torchvision
from facefix.inference import SegmentationParser

# ParseNet (PSFR-GAN's parser) was trained on CelebAMask-HQ's own order.
PARSENET_LABELS = np.arange(19, dtype=np.uint8)
# BiSeNet (face-parsing.PyTorch) orders its classes differently: channel j is
# CelebAMask-HQ class BISENET_LABELS[j].
BISENET_LABELS = np.array([0, 1, 6, 7, 4, 5, 3, 8, 9, 15, 2, 10, 11, 12, 17, 16, 18, 13, 14], np.uint8)

NETWORK_SIZE = 512
# Both are fully convolutional: ParseNet halves 512 down to 32 px four times, BiSeNet's
# ResNet-18 has stride 32, so faces can be parsed at any multiple of these.
PARSENET_SIZE_MULTIPLE = 16
BISENET_SIZE_MULTIPLE = 32


def _load(model, weights: Path, what: str):
    return load_into(model, read_checkpoint(weights).state, weights, f"not a facexlib {what} checkpoint")


def build_parsenet(context: ComponentContext) -> SegmentationParser:
    ensure_torchvision()
    from facexlib.parsing.parsenet import ParseNet

    weights = context.resolve_weights("parsenet")
    model = _load(ParseNet(in_size=NETWORK_SIZE, out_size=NETWORK_SIZE, parsing_ch=19), weights, "ParseNet")
    # ParseNet returns (parsing logits, restored image); facexlib normalises with 0.5/0.5.
    return SegmentationParser(model, network_size=NETWORK_SIZE, normalization=Normalization(), device=context.device,
                              label_map=PARSENET_LABELS, output_index=0, name="parsenet", weights=weights,
                              size_multiple=PARSENET_SIZE_MULTIPLE)


def build_bisenet(context: ComponentContext) -> SegmentationParser:
    ensure_torchvision()
    from facexlib.parsing.bisenet import BiSeNet

    weights = context.resolve_weights("bisenet")
    model = _load(BiSeNet(num_class=19), weights, "BiSeNet")
    imagenet = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    # BiSeNet returns (main output, two auxiliary outputs).
    return SegmentationParser(model, network_size=NETWORK_SIZE, normalization=imagenet, device=context.device,
                              label_map=BISENET_LABELS, output_index=0, name="bisenet", weights=weights,
                              size_multiple=BISENET_SIZE_MULTIPLE)
