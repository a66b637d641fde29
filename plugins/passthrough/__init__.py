"""The ``passthrough`` restorer: returns aligned faces unchanged.

It measures what the pipeline itself costs and how faithfully alignment and
paste-back round-trip a face, with no network in the way. It works on 1024 px crops
so that the crop is rarely smaller than the face in the photo: a 512 crop of a face
that is 800 px wide would measure the crop's lost resolution, not the pipeline.
"""

from __future__ import annotations

import numpy as np

from facefix.components import ComponentContext, Normalization
from facefix.hookspecs import hookimpl


class PassthroughRestorer:
    input_size = 1024
    output_size = 1024
    needs_parsing = False
    normalization = Normalization()

    def restore(self, faces: np.ndarray, parsing: np.ndarray | None = None) -> np.ndarray:
        return faces.copy()


def _build(context: ComponentContext) -> PassthroughRestorer:
    return PassthroughRestorer()


@hookimpl
def register_restorers(register):
    # last in the default choice: what runs when no restoring network is available at all
    register("passthrough", _build, description="returns the aligned face unchanged (pipeline checks)", rank=90)
