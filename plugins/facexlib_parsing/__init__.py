"""facexlib's face parsers, ParseNet and BiSeNet, speaking CelebAMask-HQ's label order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facefix.components import ComponentContext, Normalization
from facefix.compat import ensure_torchvision
from facefix.hookspecs import hookimpl
from facefix.inference import segment
from facefix.weights import load_state_dict

# ParseNet (PSFR-GAN's parser) was trained on CelebAMask-HQ's own order.
PARSENET_LABELS = np.arange(19, dtype=np.uint8)
# BiSeNet (face-parsing.PyTorch) orders its classes differently: channel j is
# CelebAMask-HQ class BISENET_LABELS[j].
BISENET_LABELS = np.array([0, 1, 6, 7, 4, 5, 3, 8, 9, 15, 2, 10, 11, 12, 17, 16, 18, 13, 14], np.uint8)

NETWORK_SIZE = 512


class FacexlibParser:
    def __init__(self, model, normalization: Normalization, labels: np.ndarray, device: str, output_index: int):
        self.model = model.eval().to(device)
        self.normalization = normalization
        self.labels = labels
        self.device = device
        self.output_index = output_index

    def parse(self, faces: np.ndarray) -> np.ndarray:
        return segment(
            self.model,
            faces,
            network_size=NETWORK_SIZE,
            normalization=self.normalization,
            device=self.device,
            label_map=self.labels,
            output_index=self.output_index,
        )


def _load(model, weights: Path):
    model.load_state_dict(load_state_dict(weights), strict=True)
    return model


def build_parsenet(context: ComponentContext) -> FacexlibParser:
    ensure_torchvision()
    from facexlib.parsing.parsenet import ParseNet

    model = _load(ParseNet(in_size=NETWORK_SIZE, out_size=NETWORK_SIZE, parsing_ch=19), context.resolve_weights("parsenet"))
    # ParseNet returns (parsing logits, restored image); facexlib normalises with 0.5/0.5.
    return FacexlibParser(model, Normalization(), PARSENET_LABELS, context.device, output_index=0)


def build_bisenet(context: ComponentContext) -> FacexlibParser:
    ensure_torchvision()
    from facexlib.parsing.bisenet import BiSeNet

    model = _load(BiSeNet(num_class=19), context.resolve_weights("bisenet"))
    imagenet = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    # BiSeNet returns (main output, two auxiliary outputs).
    return FacexlibParser(model, imagenet, BISENET_LABELS, context.device, output_index=0)


@hookimpl
def register_parsers(register):
    register("parsenet", build_parsenet, description="facexlib ParseNet (PSFR-GAN's parser), 512 px", weights=("parsenet",))
    register("bisenet", build_bisenet, description="facexlib BiSeNet (face-parsing.PyTorch), 512 px", weights=("bisenet",))
