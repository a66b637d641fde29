"""``--backend compile``: a restorer compiled ahead of time by AOTInductor, once per weights file.

``torch.compile`` pays 90+ s of compilation for GFP-GAN in every new process. Here the
network is exported (``torch.export``) and compiled into an AOTInductor package (a
``.pt2`` holding the generated kernels and the weights) the first time, cached beside the
ONNX exports under a key of the weights file, the settings baked in, the precision, the
device and the torch version; every later process loads the package in well under a
second. The package is native code built on this machine: it is only ever read from
facefix's own cache, never from a download.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefix.atomic import atomic_path
from facefix.errors import ComponentError, brief

#: Bumped when the packages change form, so older ones aren't taken for them.
PACKAGE_FORMAT = 1


class _Precision(torch.nn.Module):
    """The restorer's export module, run under autocast when the precision isn't fp32 (as
    the eager torch backend runs it), with a float32 output."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype, device_type: str):
        super().__init__()
        self.module, self.dtype, self.device_type = module, dtype, device_type

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.module(batch).float()
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return self.module(batch).float()


def package_path(restorer: Any, cache_dir: Path, precision: str, device: str) -> Path:
    """Where the compiled package of ``restorer`` in ``precision`` on ``device`` is cached."""
    key = f"{restorer.export_key()}:{precision}:{device}:torch{torch.__version__}:format{PACKAGE_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{restorer.name or 'restorer'}-{precision}-{digest}.pt2"


def compile_package(restorer: Any, path: Path, dtype: torch.dtype, device: str) -> None:
    """Export ``restorer.export_module()`` for one face and compile it into ``path`` (atomically)."""
    from torch._inductor import aoti_compile_and_package

    module = _Precision(restorer.export_module().eval(), dtype, device.split(":")[0]).to(device)
    size = restorer.input_size
    example = torch.zeros(1, 3, size, size, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter and inductor chatter
        with torch.inference_mode():
            program = torch.export.export(module, (example,))
        with atomic_path(path) as temporary, open(temporary, "wb") as stream:
            aoti_compile_and_package(program, package_path=stream)


class CompiledRestorer:
    """A restorer's network run from its AOTInductor package, one face at a time (the
    package is compiled for a batch of one: what a CPU runs fastest anyway)."""

    needs_parsing = False

    def __init__(self, restorer: Any, package: Path, device: str):
        from torch._inductor import aoti_load_package

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.runner = aoti_load_package(str(package))
        self.package = package
        self.device = device
        self.input_size, self.output_size = restorer.input_size, restorer.output_size
        self.normalization = restorer.normalization
        self.name = restorer.name
        self.template = getattr(restorer, "template", None)

    @torch.inference_mode()
    def restore(self, faces: np.ndarray, parsing: np.ndarray | None = None) -> np.ndarray:
        batch = torch.from_numpy(self.normalization.to_network(faces)).to(self.device)
        outputs = [self.runner(batch[index:index + 1]).float().cpu().numpy() for index in range(len(batch))]
        return self.normalization.from_network(np.concatenate(outputs))


def compiled_restorer(restorer: Any, cache_dir: Path, precision: str, dtype: torch.dtype,
                      device: str) -> CompiledRestorer:
    """``restorer`` from its cached package, compiled first if there is none yet."""
    path = package_path(restorer, cache_dir, precision, device)
    if not path.exists():
        print(f"facefix: compiling {restorer.name or 'the restorer'} ({precision}) with AOTInductor once "
              f"(minutes): {path}", file=sys.stderr)
        try:
            compile_package(restorer, path, dtype, device)
        except Exception as error:
            raise ComponentError(f"{restorer.name or 'the restorer'} does not compile ahead of time "
                                 f"({brief(error, 200)})") from None
    return CompiledRestorer(restorer, path, device)
