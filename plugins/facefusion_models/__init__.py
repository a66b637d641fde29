"""facefusion's ONNX face enhancers by name: ``--restorer gpen-bfr-512``, ``codeformer``, ...

Each model is a weights entry (facefusion's file name, its two download mirrors) and a
restorer that runs the file through the ``onnx`` restorer's onnxruntime session, aligned
with the template facefusion uses for it: FFHQ's for all but GPEN-BFR-256, which was
exported for facefusion's ``arcface_128`` template. Input and output are RGB in [-1, 1];
CodeFormer's ``weight`` input is fed from ``--fidelity`` (facefusion's
``--face-enhancer-weight``, default 0.5).

facefusion publishes CRC32 ``.hash`` files, not SHA-256 digests, so every entry is
unpinned (the digest is printed on download). Licences differ per model, several are
non-commercial; ``facefix plugins`` shows each, and a run that uses a non-commercial one
says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facefix import WeightsEntry, hookimpl
from facefix.components import ComponentContext

_RELEASE = "models-3.0.0"
_MIRRORS = ("https://github.com/facefusion/facefusion-assets/releases/download/{release}/{file}",
            "https://huggingface.co/facefusion/{release}/resolve/main/{file}")

#: facefusion's arcface_128 template: the five landmarks as fractions of the crop.
ARCFACE_128 = np.array([[0.36167656, 0.40387734], [0.63696719, 0.40235469], [0.50019687, 0.56044219],
                        [0.38710391, 0.72160547], [0.61507734, 0.72034453]], np.float32)


@dataclass(frozen=True)
class FaceModel:
    key: str  # facefusion's model name and file stem
    size: int
    license: str
    title: str
    template: Any = None  # None: FFHQ's

    @property
    def name(self) -> str:
        # facefusion's GFP-GAN exports are named apart from facefix's own GFP-GAN restorers:
        # 'gfpgan-1.4' and 'gfpgan-v1.4' differed by one letter
        hyphenated = self.key.replace("_", "-")
        return f"facefusion-{hyphenated}" if self.key.startswith("gfpgan") else hyphenated

    @property
    def entry(self) -> WeightsEntry:
        filename = f"{self.key}.onnx"
        return WeightsEntry(
            name=f"facefusion-{self.key.replace('_', '-')}", filename=filename,
            urls=tuple(url.format(release=_RELEASE, file=filename) for url in _MIRRORS),
            license=self.license, component=f"restorer:{self.name}",
            description=f"facefusion's ONNX export of {self.title}, {self.size} px",
        )


_APACHE = "Apache-2.0"
_GPEN = "non-commercial (GPEN, yangxy; facefusion lists it as Non-Commercial)"
MODELS = (
    FaceModel("gfpgan_1.2", 512, _APACHE, "GFP-GAN v1.2"),
    FaceModel("gfpgan_1.3", 512, _APACHE, "GFP-GAN v1.3"),
    FaceModel("gfpgan_1.4", 512, _APACHE, "GFP-GAN v1.4"),
    FaceModel("gpen_bfr_256", 256, _GPEN, "GPEN-BFR-256", template=ARCFACE_128),
    FaceModel("gpen_bfr_512", 512, _GPEN, "GPEN-BFR-512"),
    FaceModel("gpen_bfr_1024", 1024, _GPEN, "GPEN-BFR-1024"),
    FaceModel("gpen_bfr_2048", 2048, _GPEN, "GPEN-BFR-2048"),
    FaceModel("codeformer", 512, "non-commercial (S-Lab License 1.0, CodeFormer)",
              "CodeFormer (its fidelity weight from --fidelity)"),
    FaceModel("restoreformer_plus_plus", 512, _APACHE, "RestoreFormer++"),
)


def _factory(model: FaceModel):
    def build(context: ComponentContext) -> Any:
        from facefix.errors import ComponentError
        from facefix.onnx import OnnxRestorer  # onnxruntime loads only when it runs

        restorer = OnnxRestorer(context.weights(model.entry.name), context.device, fidelity=context.fidelity)
        if restorer.input_size != model.size:
            raise ComponentError(f"{restorer.path}: a {model.size} px model was expected for {model.name}, "
                                 f"this one takes {restorer.input_size} px")
        restorer.name = model.name
        restorer.template = model.template
        restorer.license = model.license
        return restorer

    return build


@hookimpl
def register_weights(register):
    for model in MODELS:
        register(model.entry)


@hookimpl
def register_restorers(register):
    for model in MODELS:
        template = "facefusion's arcface_128 template" if model.template is not None else "FFHQ template"
        register(model.name, _factory(model), weights=(model.entry.name,),
                 aliases=(model.key,) if model.key != model.name else (),
                 description=f"{model.title}: facefusion's {model.size} px ONNX model ({template})")
