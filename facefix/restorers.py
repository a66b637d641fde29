"""A base for restorers backed by a PyTorch module, shared by every network plugin.

The module maps normalised faces ``(N, 3, S, S)`` to ``(N, 3, O, O)``; this class does
the conversions, batching, device placement and precision, and exposes the module for
ONNX export (see :mod:`facefix.onnx`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facefix.components import Normalization, weights_key


class TorchRestorer:
    """Restorer contract around ``module``; subclasses may override :meth:`forward`."""

    needs_parsing = False

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        input_size: int,
        output_size: int,
        normalization: Normalization = Normalization(),
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        name: str = "",
        weights: Path | None = None,
        precisions: tuple[str, ...] = ("fp32", "bf16", "fp16"),
        exportable: bool = True,
        export_tag: str = "",
        fidelity_control: object | None = None,
    ):
        self.module = module.eval().to(device)
        self.input_size = input_size
        self.output_size = output_size
        self.normalization = normalization
        self.device = device
        self.dtype = dtype
        self.name = name
        self.weights = weights  # the file the module was loaded from, if any
        self.precisions = precisions  # what the network is known to run correctly in
        self.exportable = exportable  # whether it converts to ONNX (auto picks onnxruntime on CPU)
        self.export_tag = export_tag  # what else an export bakes in (e.g. the fidelity), for its cache key
        # the network's FidelityControl: ONNX exports take the fidelity as their ``weight`` input
        self.fidelity_control = fidelity_control

    def forward(self, batch: torch.Tensor, parsing: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised input → normalised output (override for extra inputs or outputs)."""
        return self.module(batch)

    @torch.inference_mode()
    def restore(self, faces: np.ndarray, parsing: np.ndarray | None = None) -> np.ndarray:
        batch = torch.from_numpy(self.normalization.to_network(faces)).to(self.device)
        parsing_tensor = None if parsing is None else torch.from_numpy(np.ascontiguousarray(parsing)).to(self.device)
        if self.dtype != torch.float32:
            with torch.autocast(device_type=self.device.split(":")[0], dtype=self.dtype):
                output = self.forward(batch, parsing_tensor)
        else:
            output = self.forward(batch, parsing_tensor)
        # from_network clips to the pixel range, which bounds the network's output too
        return self.normalization.from_network(output.float().cpu().numpy())

    def export_module(self) -> torch.nn.Module:
        """The module to export to ONNX: normalised face in, normalised face out."""
        return self.module

    def export_key(self) -> str:
        """Identifies what an export of this restorer contains (for caching exports): the
        name and, when loaded from a file, that file's path, size and modification time,
        then the export tag (settings baked into the graph, such as the fidelity)."""
        return weights_key(self.name, self.weights, self.export_tag)

    @property
    def fidelity(self) -> float | None:
        """The fidelity the network runs at, when it has one."""
        return None if self.fidelity_control is None else float(self.fidelity_control.fidelity)

    def onnx_module(self) -> torch.nn.Module:
        """The module to export to ONNX: :meth:`export_module`, with the fidelity as a second
        input (:class:`FidelityInput`) when the network has one, so one file serves every value."""
        if self.fidelity_control is None:
            return self.export_module()
        return FidelityInput(self.export_module(), self.fidelity_control)

    def onnx_key(self) -> str:
        """:meth:`export_key` for :meth:`onnx_module`: the fidelity is not baked in."""
        if self.fidelity_control is None:
            return self.export_key()
        return weights_key(self.name, self.weights, "fidelity-input")


#: The name of an exported graph's fidelity input: CodeFormer's, which onnxruntime users know.
FIDELITY_INPUT = "weight"


class FidelityInput(torch.nn.Module):
    """``module(x)`` with ``control``'s fidelity taken from the second input, a ``(1,)``
    tensor in [0, 1] (see ``FidelityControl.fidelity_from``)."""

    def __init__(self, module: torch.nn.Module, control: object):
        super().__init__()
        self.module = module
        self._control = [control]  # a list: not a second registration of the network's weights

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        with self._control[0].fidelity_from(weight.to(x.dtype)):
            return self.module(x)


class ImageOnly(torch.nn.Module):
    """A network that returns ``(image, extras)`` (intermediate RGB outputs for training
    losses), reduced to its image: one input, one output, as restoring and ONNX want."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, return_rgb=False)[0]
