"""SFace (OpenCV Zoo, 2021dec), the face-identity network, rebuilt in PyTorch from its
ONNX file so identity losses can back-propagate through it.

The graph is a chain: a scalar normalisation (``(x - 127.5) / 128`` of RGB 0..255),
27 Conv / BatchNorm / PReLU stages, a last BatchNorm, Flatten, Gemm and a 1-D
BatchNorm giving the 128-D embedding; Dropout is inert at inference. Each node becomes
the equivalent torch layer carrying the file's weights; any other op is refused.

SFace wants faces aligned with ArcFace's five-point 112x112 template.
:func:`sface_input` cuts that crop out of FFHQ-aligned faces (facefix's training faces,
restored faces, eval crops) with ``grid_sample``, so the crop is differentiable too.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facefix.alignment import template
from facefix.errors import WeightsError

INPUT_SIZE = 112
EMBEDDING_SIZE = 128
#: ArcFace's (insightface's) five points in a 112x112 crop, in the FFHQ template's order.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)


class _Normalise(nn.Module):
    """The graph's own input scaling: ``(x - offset) * scale``."""

    def __init__(self, offset: float, scale: float):
        super().__init__()
        self.offset, self.scale = offset, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset) * self.scale


class SFace(nn.Module):
    """``(B, 3, 112, 112)`` RGB in 0..255, ArcFace-aligned → ``(B, 128)`` embeddings."""

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def train(self, mode: bool = True) -> SFace:
        return super().train(False)  # a frozen measuring instrument: BatchNorm keeps its statistics


def load_sface(path: Path | str) -> SFace:
    """The torch twin of an SFace ONNX file (frozen, eval mode); one line if it isn't one."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as error:
        raise WeightsError(f"{path}: not a readable ONNX file ({type(error).__name__}: {error})") from None
    tensors = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def weight(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(tensors[name], np.float32))

    def scalar(node) -> float:
        values = [tensors[name] for name in node.input if name in tensors]
        return float(np.asarray(values[0]).reshape(-1)[0])

    layers: list[nn.Module] = []
    current = graph.input[0].name
    offset, scale, rank = 0.0, 1.0, 4
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        data = [name for name in node.input if name not in tensors]
        if data != [current]:
            raise WeightsError(f"{path}: not an SFace graph: node {node.name or node.op_type} does not continue the "
                               "chain (facefix rebuilds only sequential graphs)")
        attributes = {item.name: onnx.helper.get_attribute_value(item) for item in node.attribute}
        op = node.op_type
        if op == "Sub" and not layers:
            offset = scalar(node)
        elif op == "Mul" and not layers:
            scale = scalar(node)
            layers.append(_Normalise(offset, scale))
        elif op == "Conv":
            kernel = weight(node.input[1])
            pads = attributes.get("pads", [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                raise WeightsError(f"{path}: asymmetric padding in {node.name}")
            groups = int(attributes.get("group", 1))
            conv = nn.Conv2d(kernel.shape[1] * groups, kernel.shape[0], tuple(kernel.shape[2:]),
                             stride=tuple(attributes.get("strides", [1, 1])), padding=tuple(pads[:2]),
                             dilation=tuple(attributes.get("dilations", [1, 1])), groups=groups,
                             bias=len(node.input) > 2)
            conv.weight.data.copy_(kernel)
            if conv.bias is not None:
                conv.bias.data.copy_(weight(node.input[2]))
            layers.append(conv)
        elif op == "BatchNormalization":
            gamma = weight(node.input[1])
            norm = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(gamma.numel(), eps=float(attributes["epsilon"]))
            for attribute, name in zip(("weight", "bias", "running_mean", "running_var"), node.input[1:5]):
                getattr(norm, attribute).data.copy_(weight(name))
            layers.append(norm)
        elif op == "PRelu":
            slope = weight(node.input[1]).reshape(-1)
            prelu = nn.PReLU(slope.numel())
            prelu.weight.data.copy_(slope)
            layers.append(prelu)
        elif op == "Dropout":
            pass  # inert at inference
        elif op == "Flatten":
            layers.append(nn.Flatten(int(attributes.get("axis", 1))))
            rank = 2
        elif op == "Gemm" and attributes.get("transB") == 1 and attributes.get("transA", 0) == 0 \
                and attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0:
            matrix = weight(node.input[1])
            linear = nn.Linear(matrix.shape[1], matrix.shape[0], bias=len(node.input) > 2)
            linear.weight.data.copy_(matrix)
            if linear.bias is not None:
                linear.bias.data.copy_(weight(node.input[2]))
            layers.append(linear)
        else:
            raise WeightsError(f"{path}: not an SFace graph: unsupported ONNX op {op} ({node.name})")
        current = node.output[0]
    if current != graph.output[0].name:
        raise WeightsError(f"{path}: not an SFace graph: the chain ends before the output {graph.output[0].name}")
    network = SFace(nn.Sequential(*layers))
    network.requires_grad_(False)
    return network.eval()


@functools.lru_cache(maxsize=8)
def _crop_theta(size: int) -> torch.Tensor:
    """``affine_grid``'s matrix: ArcFace-crop coordinates → FFHQ-face coordinates, both
    normalised to [-1, 1] with pixel centres at ``(2i + 1) / n - 1``."""
    import cv2

    forward, _ = cv2.estimateAffinePartial2D(template(size).astype(np.float64), ARCFACE_TEMPLATE_112)
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))  # crop pixels -> face pixels
    to_pixels = np.array([[INPUT_SIZE / 2, 0, (INPUT_SIZE - 1) / 2], [0, INPUT_SIZE / 2, (INPUT_SIZE - 1) / 2],
                          [0, 0, 1]])
    to_normalised = np.array([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1]])
    return torch.from_numpy((to_normalised @ inverse @ to_pixels)[:2]).float()


def sface_input(faces: torch.Tensor) -> torch.Tensor:
    """FFHQ-aligned ``(B, 3, S, S)`` RGB faces in [-1, 1] → SFace's ``(B, 3, 112, 112)`` input
    (RGB 0..255, ArcFace-aligned), differentiably (bilinear ``grid_sample``)."""
    theta = _crop_theta(int(faces.shape[-1])).to(faces)
    grid = F.affine_grid(theta.expand(faces.shape[0], 2, 3), [faces.shape[0], 3, INPUT_SIZE, INPUT_SIZE],
                         align_corners=False)
    crops = F.grid_sample(faces, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (crops + 1) * 127.5
