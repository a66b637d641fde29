"""How a restorer runs: PyTorch eager, compiled ahead of time, or onnxruntime; and in what precision.

``auto`` picks the fastest exact path measured for the device (benchmarks/README.md): on
a CPU that is onnxruntime in fp32 (one export per weights file, cached); on a GPU,
PyTorch. ``--backend compile`` compiles the network with AOTInductor once per weights
file and precision and caches the package (:mod:`facefix.compiled`), so later processes
don't pay the compilation again; with ``--precision bf16`` it is faster still on CPUs
with AVX512-BF16 or AMX, but rounds to bf16, so it is offered, not chosen by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facefix.compiled import compiled_restorer
from facefix.errors import FacefixError, brief
from facefix.restorers import TorchRestorer

BACKENDS = ("auto", "torch", "compile", "onnx")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def apply_backend(
    restorer: Any,
    backend: str,
    precision: str,
    device: str,
    onnx_path: Path | None,
    cache_dir: Path,
    warn=print,
) -> tuple[Any, str]:
    """The restorer to run, and a few words saying how it runs."""
    from facefix.onnx import OnnxRestorer, onnx_backend

    if isinstance(restorer, OnnxRestorer):  # already an onnxruntime session (the onnx restorer)
        return restorer, f"onnxruntime {restorer.provider}"
    supported = getattr(restorer, "precisions", tuple(PRECISIONS))
    if precision not in supported:
        raise FacefixError(f"--precision {precision}: {getattr(restorer, 'name', '') or 'this restorer'} runs in "
                           f"{', '.join(supported)}")
    # a restorer fed by another parser (--parser) has a second input an export can't carry
    exportable = (getattr(restorer, "exportable", True) and hasattr(restorer, "export_module")
                  and not getattr(restorer, "needs_parsing", False))
    if backend == "auto":
        backend = "onnx" if device == "cpu" and exportable and precision == "fp32" else "torch"
        if backend == "onnx":
            try:
                runner = onnx_backend(restorer, device, onnx_path, cache_dir, note=warn)
                return runner, f"onnxruntime {runner.provider}"
            except Exception as error:  # auto never fails where PyTorch would work...
                if onnx_path is not None:  # ...but a file the user named is theirs to fix
                    raise FacefixError(f"--onnx {onnx_path}: {brief(error, 300)}") from None
                warn(f"facefix: onnxruntime not used ({brief(error, 200)}); running in PyTorch")
                backend = "torch"
    if backend == "onnx":
        if not exportable and onnx_path is None:
            raise FacefixError("--backend onnx runs a restorer on its own; this one takes parsing maps from "
                               "--parser: drop --parser or use --backend torch")
        runner = onnx_backend(restorer, device, onnx_path, cache_dir, note=warn)
        return runner, f"onnxruntime {runner.provider}"
    if not isinstance(restorer, TorchRestorer):
        return restorer, ""
    if precision != "fp32":
        if device == "cpu" and precision == "fp16":
            raise FacefixError("--precision fp16 needs a GPU; on a CPU use bf16")
        if device == "cpu" and precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            raise FacefixError("this CPU has no bf16 support (AVX512-BF16 or AMX): use --precision fp32")
        restorer.dtype = PRECISIONS[precision]
    if backend == "compile" and exportable:
        try:
            compiled = compiled_restorer(restorer, cache_dir.with_name("compiled"), precision,
                                         PRECISIONS[precision], device)
            return compiled, f"AOTInductor {precision}"
        except FacefixError as error:
            warn(f"facefix: {error}; compiling in this process with torch.compile instead")
    if backend == "compile":
        restorer.module = torch.compile(restorer.module)
    return restorer, f"torch{' compiled' if backend == 'compile' else ''} {precision}"


def parser_backend(parser: Any, backend: str, device: str, cache_dir: Path, warn=print) -> tuple[Any, str]:
    """The parser to run and how: as for restorers, ``auto`` is onnxruntime on a CPU (the
    network exported once per weights file, argmax included) and PyTorch on a GPU. Parsers
    that aren't a :class:`~facefix.inference.SegmentationParser` run as they are."""
    from facefix.inference import SegmentationParser
    from facefix.onnx import onnx_parser

    if not isinstance(parser, SegmentationParser) or backend in ("torch", "compile"):
        return parser, ""
    if backend == "auto" and device != "cpu":
        return parser, "torch"
    try:
        runner = onnx_parser(parser, device, cache_dir, note=warn)
    except Exception as error:
        if backend == "onnx":
            raise FacefixError(f"--backend onnx: the parser {parser.name} does not run in onnxruntime "
                               f"({brief(error, 200)})") from None
        warn(f"facefix: onnxruntime not used for the parser ({brief(error, 200)}); running in PyTorch")
        return parser, "torch"
    return runner, "onnxruntime"
