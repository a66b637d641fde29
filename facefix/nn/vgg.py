"""ImageNet VGG (torchvision's ``features``) returning named intermediate maps.

Perceptual, style and semantic-style losses read VGG16 or VGG19 features by layer name
(``conv3_4`` before its ReLU, ``relu4_1`` after, ``pool2``); LPIPS reads them too.
Weights are torchvision's files, whole or features-only, loaded strictly through
:mod:`facefix.checkpoints`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from facefix.checkpoints import load_into, read_checkpoint


def _vgg_names(blocks: Sequence[int]) -> tuple[str, ...]:
    """Layer names in the order of torchvision's ``features`` (index = position)."""
    names: list[str] = []
    for block, convs in enumerate(blocks, start=1):
        for conv in range(1, convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


#: Names of the layers of torchvision's ``vgg19().features`` / ``vgg16().features``,
#: by index: ``VGG_LAYERS["vgg19"].index("conv5_4") == 34``.
VGG_LAYERS: dict[str, tuple[str, ...]] = {"vgg19": _vgg_names((2, 2, 4, 4, 4)), "vgg16": _vgg_names((2, 2, 3, 3, 3))}
_VGG_CFG = {"vgg19": "E", "vgg16": "D"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: GFP-GAN's perceptual layer weights (VGG19, features before activation).
GFPGAN_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
#: Default layer weights per architecture: GFP-GAN's for VGG19, the same pattern on
#: the corresponding (last conv of each block) VGG16 layers.
DEFAULT_LAYER_WEIGHTS = {
    "vgg19": GFPGAN_LAYER_WEIGHTS,
    "vgg16": {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0},
}


def vgg_layer_index(arch: str, name: str) -> int:
    """Index in torchvision's ``features`` of a named VGG layer (``conv3_4``, ``relu4_1``, ``pool2``)."""
    if arch not in VGG_LAYERS:
        raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
    try:
        return VGG_LAYERS[arch].index(name)
    except ValueError:
        raise ValueError(f"{arch} has no layer {name!r}; layers: {', '.join(VGG_LAYERS[arch])}") from None


def _vgg_feature_stack(arch: str) -> nn.Sequential:
    from facefix.compat import ensure_torchvision

    torchvision = ensure_torchvision()
    vgg = torchvision.models.vgg
    if hasattr(vgg, "make_layers") and hasattr(vgg, "cfgs"):
        # The same ``features`` stack as torchvision.models.vgg19(weights=None), without
        # allocating the 120M-parameter classifier that the losses never use.
        return vgg.make_layers(vgg.cfgs[_VGG_CFG[arch]], batch_norm=False)
    return getattr(torchvision.models, arch)(weights=None).features


class VGGFeatures(nn.Module):
    """Frozen torchvision VGG ``features`` returning named intermediate maps.

    ``layers`` defaults to the keys of ``DEFAULT_LAYER_WEIGHTS[arch]``.

    ``conv*`` names are the conv outputs **before** the ReLU (what GFP-GAN's perceptual
    loss uses); ``relu*`` names after it (PSFR-GAN's semantic style loss uses
    ``relu3_1``, ``relu4_1``, ``relu5_1``); ``pool*`` after max pooling. Layers past the
    deepest requested one are dropped.

    Input: RGB in ``[-1, 1]``, mapped to ``[0, 1]`` and normalised with the ImageNet
    mean/std (``normalize=False`` skips both). ``weights_path``: torchvision's file
    (``vgg19-dcbb9e9d.pth`` / ``vgg16-397923af.pth``, ``features.*`` keys; classifier
    keys are ignored), loaded through :func:`facefix.weights.load_state_dict`. ``None``
    keeps the random initialisation (tests only: the loss is meaningless then).
    The module stays in eval mode and its parameters never require grad; gradients
    still flow to the input.
    """

    def __init__(
        self,
        arch: str = "vgg19",
        layers: Sequence[str] | None = None,
        weights_path: Path | str | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if arch not in VGG_LAYERS:
            raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(VGG_LAYERS)}")
        if layers is None:
            layers = tuple(DEFAULT_LAYER_WEIGHTS[arch])
        if not layers:
            raise ValueError("VGGFeatures needs at least one layer name")
        self.arch = arch
        self.layers = tuple(layers)
        self._indices = {vgg_layer_index(arch, name): name for name in self.layers}
        last = max(self._indices)
        self.features = nn.Sequential(*list(_vgg_feature_stack(arch))[: last + 1])
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # an in-place ReLU would overwrite the stored conv outputs
        if weights_path is not None:
            self._load(Path(weights_path))
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path) -> None:
        # torchvision's whole file or its features alone: the stack keeps the layers up to
        # the deepest one asked for, so deeper layers and the classifier are left out
        own = self.state_dict()
        state = {key: value for key, value in read_checkpoint(path).state.items() if key in own}
        load_into(self, state, path, f"not torchvision {self.arch} weights")

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._indices:
                out[self._indices[index]] = x
        return out
