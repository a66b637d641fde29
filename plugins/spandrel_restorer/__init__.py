"""The ``spandrel`` restorer: any face-restoration checkpoint spandrel recognises.

``facefix restore --restorer spandrel --weights FILE`` runs GFPGAN (clean) and
RestoreFormer files through spandrel, and CodeFormer through spandrel_extra_arches, both
from the optional extra (``pip install -c constraints.txt 'facefix[spandrel]'``).

Two things differ from calling spandrel's model descriptor: the network is fed RGB in
[-1, 1] and its output read back from [-1, 1], as the upstream projects do (the
descriptor feeds [0, 1] to GFPGAN and CodeFormer, a known bug in the tools built on it);
CodeFormer's fidelity weight comes from ``--fidelity`` (default 0.5); and GFPGAN runs on
its file's fixed noise buffers rather than fresh noise per call, so results repeat. The file is
read by facefix (``torch.load(weights_only=True)``) and handed to spandrel as a state dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facefix.components import ComponentContext, Normalization
from facefix.errors import ComponentError
from facefix.hookspecs import hookimpl

#: spandrel architecture id -> licence of the upstream weights
FACE_ARCHITECTURES = {
    "GFPGAN": "Apache-2.0 (GFPGAN)",
    "RestoreFormer": "Apache-2.0 (RestoreFormer)",
    "CodeFormer": "non-commercial (S-Lab License 1.0, CodeFormer)",
}
FACE_SIZE = 512  # all three were trained on 512 px FFHQ-aligned faces
MISSING = ("the spandrel restorer needs the spandrel extra: pip install -c constraints.txt 'facefix[spandrel]' "
           "(-c keeps the CPU torch)")


def load_descriptor(state: dict) -> Any:
    """spandrel's model for a state dict, with the extra architectures installed."""
    from facefix.compat import ensure_torchvision

    ensure_torchvision()  # spandrel imports torchvision, whose compiled ops don't load on CPU torch
    try:
        import spandrel
    except ImportError:
        raise ComponentError(MISSING) from None
    try:
        import spandrel_extra_arches

        spandrel_extra_arches.install(ignore_duplicates=True)
    except ImportError:
        pass  # CodeFormer then isn't recognised; the error below says so
    try:
        return spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        return None


class SpandrelRestorer:
    """A spandrel face model under facefix's restorer contract (and its ONNX export)."""

    needs_parsing = False
    normalization = Normalization()  # RGB in [-1, 1]
    input_size = output_size = FACE_SIZE
    precisions = ("fp32", "bf16")
    exportable = False  # CodeFormer's quantiser and RestoreFormer's attention don't export reliably

    def __init__(self, descriptor: Any, architecture: str, device: str, fidelity: float | None, name: str,
                 weights: Any):
        self.module = descriptor.model.eval().to(device)
        self.architecture = architecture
        self.device = device
        self.fidelity = 0.5 if fidelity is None else float(fidelity)
        self.name = name
        self.weights = weights
        self.license = FACE_ARCHITECTURES[architecture]

    def forward(self, batch: Any) -> Any:
        if self.architecture == "CodeFormer":
            output = self.module(batch, weight=self.fidelity)
        elif self.architecture == "GFPGAN":
            # the file's fixed noise buffers, as facefix's own GFP-GAN uses: the same face gives the same result
            output = self.module(batch, randomize_noise=False)
        else:
            output = self.module(batch)
        return output[0] if isinstance(output, (tuple, list)) else output

    def restore(self, faces: np.ndarray, parsing: np.ndarray | None = None) -> np.ndarray:
        import torch

        with torch.inference_mode():
            batch = torch.from_numpy(self.normalization.to_network(faces)).to(self.device)
            # one face at a time: CodeFormer's and RestoreFormer's layers assume a batch of 1
            output = torch.cat([self.forward(batch[index:index + 1]) for index in range(len(batch))])
        return self.normalization.from_network(output.float().cpu().numpy())


def _build(context: ComponentContext) -> SpandrelRestorer:
    from facefix.checkpoints import read_checkpoint

    if context.weights_path is None:
        raise ComponentError("the spandrel restorer runs your own checkpoint: pass --weights FILE")
    checkpoint = read_checkpoint(context.weights_path)
    descriptor = load_descriptor(dict(checkpoint.state))
    architecture = getattr(getattr(descriptor, "architecture", None), "id", None)
    if architecture not in FACE_ARCHITECTURES:
        what = f"a {architecture} model" if architecture else "not a model spandrel recognises"
        raise ComponentError(f"{context.weights_path}: {what}; the spandrel restorer runs "
                             f"{', '.join(FACE_ARCHITECTURES)} face models")
    return SpandrelRestorer(descriptor, architecture, context.device, context.fidelity, "spandrel",
                            context.weights_path)


@hookimpl
def register_restorers(register):
    register("spandrel", _build, description="any GFPGAN, RestoreFormer or CodeFormer checkpoint, through spandrel "
                                             "(--weights FILE; the spandrel extra)")
