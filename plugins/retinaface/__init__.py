"""RetinaFace detectors: ResNet-50 and MobileNet-0.25 through facexlib's network, and
the MobileNet-0.25 ONNX file that ships inside facefix (the offline default).

The detectors themselves are in :mod:`facefix_plugins.retinaface.detector`, imported
only when one is built.
"""

from __future__ import annotations

import functools

from facefix import hookimpl, lazy

BUNDLED = "retinaface_bundled"
_build_torch = lazy("facefix_plugins.retinaface.detector:build_torch")
_build_bundled = lazy("facefix_plugins.retinaface.detector:build_bundled")


@hookimpl
def register_detectors(register):
    # name: facexlib's network, rank in the default choice, description
    for name, network, rank, description in (
        ("retinaface_resnet50", "resnet50", 10, "RetinaFace ResNet-50: most accurate, slower on CPU"),
        ("retinaface_mobile0.25", "mobile0.25", 20, "RetinaFace MobileNet-0.25: small and fast"),
    ):
        register(name, functools.partial(_build_torch, network, name), description=description, weights=(name,),
                 rank=rank)
    # ships inside facefix: the offline fallback when facexlib's files are absent
    register(BUNDLED, functools.partial(_build_bundled, BUNDLED), weights=(BUNDLED,), rank=30,
             description="RetinaFace MobileNet-0.25 (ONNX) shipped with facefix: works offline")
