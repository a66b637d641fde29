"""LPIPS (Zhang et al. 2018), the learned perceptual distance; lower is closer.

The ``lpips`` package (BSD) gives the network and its calibrated linear heads (v0.1);
its backbone's ImageNet weights, which it would download, come from a weights file
instead: torchvision's AlexNet (``lpips``) or VGG16 (``lpips_vgg``) ``features.*``,
whole or features-only, loaded strictly. Images are compared whole, as RGB in [-1, 1].
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from facefix.checkpoints import load_into, read_checkpoint
from facefix.compat import ensure_torchvision

#: facefix's metric name -> (the package's network name, what the weights file is)
BACKBONES = {"lpips": ("alex", "torchvision AlexNet features"), "lpips_vgg": ("vgg", "torchvision VGG16 features")}


class LPIPS:
    def __init__(self, metric: str, weights: Path | str, device: str = "cpu"):
        ensure_torchvision()  # lpips imports torchvision
        import lpips

        network, what = BACKBONES[metric]
        with warnings.catch_warnings():  # torchvision's deprecation notes for `pretrained=`
            warnings.simplefilter("ignore")
            # pnet_rand: an untrained backbone (no download); the heads are the package's
            self.model = lpips.LPIPS(net=network, pretrained=True, pnet_rand=True, verbose=False)
        state = read_checkpoint(weights).state
        # the package slices torchvision's `features` and keeps each layer's index:
        # its `slice2.3.weight` is torchvision's `features.3.weight`
        own = self.model.net.state_dict()
        mapped = {key: state[f"features.{key.split('.', 1)[1]}"] for key in own
                  if f"features.{key.split('.', 1)[1]}" in state}
        load_into(self.model.net, mapped, weights, f"not {what}")
        self.model = self.model.eval().to(device)
        self.device = device

    @torch.inference_mode()
    def __call__(self, bgr_a: np.ndarray, bgr_b: np.ndarray) -> float:
        """LPIPS of two BGR ``uint8`` images of the same size."""
        if bgr_a.shape != bgr_b.shape:
            raise ValueError(f"images differ in shape: {bgr_a.shape} vs {bgr_b.shape}")
        return float(self.model(self._tensor(bgr_a), self._tensor(bgr_b)).reshape(()))

    def _tensor(self, bgr: np.ndarray) -> torch.Tensor:
        rgb = np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1), dtype=np.float32)
        return (torch.from_numpy(rgb)[None] / 127.5 - 1).to(self.device)
