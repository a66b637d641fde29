"""The ``onnx`` restorer: any face-in/face-out ONNX model, e.g. facefusion's exports.

Convention (facefusion's gfpgan_1.4.onnx, gpen_bfr_512.onnx, codeformer.onnx): one
``(1, 3, S, S)`` RGB input in [-1, 1], S read from the model, output in [-1, 1];
CodeFormer's extra ``weight`` input is fed from ``--fidelity``.
"""

from __future__ import annotations

from typing import Any

from facefix.components import ComponentContext
from facefix.errors import ComponentError
from facefix.hookspecs import hookimpl


def _build(context: ComponentContext) -> Any:
    from facefix.onnx import OnnxRestorer  # onnxruntime (and torch) load only when it runs

    path = context.onnx_path or context.weights_path
    if path is None:
        raise ComponentError("the onnx restorer needs a model: pass --onnx FILE")
    return OnnxRestorer(path, context.device, fidelity=context.fidelity)


@hookimpl
def register_restorers(register):
    register("onnx", _build, description="any face-in/face-out ONNX model (--onnx FILE), run by onnxruntime")
