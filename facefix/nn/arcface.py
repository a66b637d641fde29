"""GFP-GAN's ArcFace identity network (ResNet-18 with improved residual blocks)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from facefix.checkpoints import build_strict, read_checkpoint


class IRBlock(nn.Module):
    """Improved residual block of GFP-GAN's ArcFace ResNet (BN → conv → BN → PReLU → conv → BN [→ SE])."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, use_se: bool = False
    ) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, inplanes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.use_se = use_se
        if use_se:
            self.se = _SEBlock(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(self.bn0(x))))))
        if self.use_se:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


class _SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.PReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class ArcFaceResNet18(nn.Module):
    """GFP-GAN's identity network (``ResNetArcFace``: IRBlock, layers ``[2, 2, 2, 2]``, no SE).

    Input ``(B, 1, 128, 128)`` gray in ``[-1, 1]``; output ``(B, 512)`` embeddings.
    State-dict keys match ``arcface_resnet18.pth`` (``conv1``, ``bn1``, ``prelu``,
    ``layer1.0.bn0`` …, ``layer2.0.downsample.0``, ``bn4``, ``fc5``, ``bn5``).
    """

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), use_se: bool = False) -> None:
        super().__init__()
        self.use_se = use_se
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        self._inplanes = 64
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [IRBlock(self._inplanes, planes, stride, downsample, self.use_se)]
        self._inplanes = planes
        layers += [IRBlock(planes, planes, use_se=self.use_se) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))


def load_arcface(path: Path | str) -> ArcFaceResNet18:
    """``arcface_resnet18.pth`` (any of :mod:`facefix.checkpoints`' wrappings), loaded
    strictly into a frozen, eval-mode :class:`ArcFaceResNet18`."""
    network = build_strict(ArcFaceResNet18, read_checkpoint(path).state, path,
                           "not GFP-GAN's ArcFace ResNet-18 weights",
                           # BatchNorm fills in num_batches_tracked for files saved before it existed
                           optional=lambda key: key.endswith("num_batches_tracked"))
    network.requires_grad_(False)
    return network.eval()


def gray_resize_for_identity(images: torch.Tensor, size: int = 128) -> torch.Tensor:
    """ArcFace's input as GFP-GAN prepares it: ``0.2989 R + 0.5870 G + 0.1140 B`` on the
    ``[-1, 1]`` values (no rescaling, no crop: the whole aligned face), then bilinear
    resize to ``size x size`` (``align_corners=False``, no antialias)."""
    gray = 0.2989 * images[:, 0] + 0.5870 * images[:, 1] + 0.1140 * images[:, 2]
    return F.interpolate(gray[:, None], size=(size, size), mode="bilinear", align_corners=False)
