"""The contracts every detector, parser, restorer, blender and background upsampler fulfils.

Images are numpy arrays in OpenCV's layout: ``H x W x 3`` BGR ``uint8`` unless said
otherwise. Components are registered as :class:`ComponentSpec` objects whose factory
builds the working component from a :class:`ComponentContext` only when a pipeline
needs it, so listing plugins never loads weights or downloads anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from facefix.errors import ComponentError

KINDS = ("detector", "parser", "restorer", "blender", "upsampler")
#: Kinds a weights entry's ``component`` may name: the pipeline's, plus ``loss`` for
#: training-only networks (VGG for perceptual losses, ArcFace for the identity loss) and
#: ``metric`` for ``facefix eval``'s (LPIPS' AlexNet, NIQE's model, SFace), ``prior`` for the
#: pretrained generators and discriminators a recipe starts from (GPEN's).
COMPONENT_KINDS = (*KINDS, "loss", "metric", "prior")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: CelebAMask-HQ's 19 parsing classes; every parser returns labels in this order.
CELEBAMASK_CLASSES = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
    "neck", "cloth",
)  # fmt: skip

#: Order of the five landmarks: image-left eye, image-right eye, nose tip,
#: image-left mouth corner, image-right mouth corner (the FFHQ template's order).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True)
class DetectedFace:
    """One face found by a detector, in the pixel coordinates of the input image."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2) float32 in LANDMARK_NAMES order

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    @property
    def size(self) -> float:
        """The shorter side of the box, used by ``--min-face-size`` and ``--max-face-size``."""
        x1, y1, x2, y2 = self.box
        return float(min(x2 - x1, y2 - y1))

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))


@dataclass(frozen=True)
class Normalization:
    """How a network wants its pixels: ``x_net = (x / 255 - mean) / std`` per channel."""

    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channel_order: str = "RGB"  # or "BGR"

    def to_network(self, faces: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` BGR uint8 → ``(N, 3, H, W)`` float32, normalised."""
        x = faces.astype(np.float32) / 255.0
        if self.channel_order == "RGB":
            x = x[..., ::-1]
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def from_network(self, output: np.ndarray) -> np.ndarray:
        """``(N, 3, H, W)`` float network output → ``(N, H, W, 3)`` BGR uint8; a non-finite
        output is an error (cast to uint8 it would be pasted as a black face)."""
        if not np.isfinite(output).all():
            raise ComponentError("the network's output is not finite (NaN or inf): its weights or precision "
                                 "are broken for this input")
        x = output.transpose(0, 2, 3, 1) * np.asarray(self.std, np.float32)
        x = x + np.asarray(self.mean, np.float32)
        if self.channel_order == "RGB":
            x = x[..., ::-1]
        return np.ascontiguousarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))


@runtime_checkable
class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Find faces in one BGR uint8 image."""


@runtime_checkable
class Parser(Protocol):
    def parse(self, faces: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` aligned BGR uint8 faces → ``(N, S, S)`` uint8 CelebAMask-HQ labels."""


@runtime_checkable
class Restorer(Protocol):
    input_size: int  # aligned faces arrive as input_size x input_size
    output_size: int  # and leave as output_size x output_size (upscale = output/input)
    needs_parsing: bool  # True: restore() is given the parsing maps of its inputs
    normalization: Normalization
    # optional: ``template``, five (x, y) landmark positions as fractions of the crop when the
    # network was trained on another alignment than FFHQ's (absent or None: FFHQ)

    def restore(self, faces: np.ndarray, parsing: np.ndarray | None = None) -> np.ndarray:
        """``(N, in, in, 3)`` BGR uint8 (+ ``(N, in, in)`` labels) → ``(N, out, out, 3)`` BGR uint8."""


@runtime_checkable
class Blender(Protocol):
    def blend(
        self,
        image: np.ndarray,
        face: np.ndarray,
        inverse_affine: np.ndarray,
        parsing: np.ndarray | None,
        upscale: float,
    ) -> np.ndarray:
        """Paste one restored face into ``image`` and return the result.

        ``image``: ``H x W x 3`` float32 canvas, already at the output scale, values in
        the image's own range (0-255, or 0-65535 for 16-bit inputs). ``face``:
        ``S x S x 3`` float32 in the same range. ``inverse_affine``: 2x3 matrix taking
        face pixel coordinates to canvas coordinates. ``parsing``: ``S x S``
        CelebAMask-HQ labels of the face, or None. ``upscale``: output / input scale
        of the whole image (masks are sized by it). Pixels outside the face's
        footprint must be returned unchanged. The canvas is the pipeline's own, one per
        image: a blender may draw on it in place and return it (the built-in ones do, so
        that pasting a face costs its footprint, not a copy of the whole output).
        """


@runtime_checkable
class Upsampler(Protocol):
    scale: int  # output / input size

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """A whole image (``H x W``, ``H x W x 1|3|4``; uint8 or uint16) enlarged ``scale`` times,
        in the same layout and depth."""


@dataclass(frozen=True)
class ComponentContext:
    """What a component factory gets to build its component: typed, one field per choice."""

    device: str = "cpu"
    #: Resolves a weights registry name to a local file (downloads when allowed).
    resolve_weights: Callable[[str], Path] = field(default=lambda name: Path(name))
    #: ``--weights PATH`` (or ``--parser-weights``) given for this component, if any.
    weights_path: Path | None = None
    #: ``--fidelity``: restorers that support it trade restoration for faithfulness.
    fidelity: float | None = None
    #: ``--detection-threshold``; None: the detector's own default.
    detection_threshold: float | None = None
    #: ``--onnx FILE``: the model of the ``onnx`` restorer.
    onnx_path: Path | None = None
    #: The parser chosen on the command line, if any: a restorer that parses its own
    #: inputs (PSFR-GAN) takes that parser's maps instead.
    parser: str | None = None
    #: ``--parser-weights``: a restorer that runs a parser inside its own graph takes
    #: this file for it when its own file carries none.
    parser_weights: Path | None = None
    #: ``--bg-tile`` / ``--tile``: an upsampler runs tiles of this many input pixels (0: whole image).
    tile: int = 0

    def __getattribute__(self, name: str) -> Any:
        if name == "fidelity":  # read by the components that honour --fidelity: the others get a note
            object.__setattr__(self, "_fidelity_read", True)
        return object.__getattribute__(self, name)

    @property
    def fidelity_read(self) -> bool:
        """Whether the factory looked at ``fidelity`` (so whether ``--fidelity`` does anything)."""
        return bool(getattr(self, "_fidelity_read", False))

    def weights(self, name: str) -> Path:
        """The file to load: the explicit ``--weights`` path if given, else the registry's."""
        if self.weights_path is not None:
            return self.weights_path
        return self.resolve_weights(name)

    def threshold(self, default: float) -> float:
        """The detection threshold asked for, else ``default`` (0 is a threshold like any other)."""
        return default if self.detection_threshold is None else float(self.detection_threshold)


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component: enough to list it and to build it later."""

    kind: str
    name: str
    factory: Callable[[ComponentContext], Any]
    description: str = ""
    weights: tuple[str, ...] = ()  # weights registry names the factory resolves
    plugin: str = ""  # filled in by the plugin manager
    #: Place in the default choice when none is named: lower first; None only when named.
    rank: int | None = None
    aliases: tuple[str, ...] = ()  # more names it answers to
    card: Any = None  # the facefix.cards.NetworkCard it was generated from, if any
    tag: str | None = None  # the card's weights variant

    def build(self, context: ComponentContext) -> Any:
        return self.factory(context)


@dataclass(frozen=True)
class WeightsEntry:
    """One weights file the registry knows about."""

    name: str  # registry key, e.g. "retinaface_resnet50"
    filename: str  # file name in --model-dir and in the cache
    urls: tuple[str, ...] = ()
    sha256: str | None = None  # None: unpinned (no published digest)
    size: int | None = None  # bytes, None when unknown
    license: str = ""
    component: str = ""  # "kind:name", e.g. "detector:retinaface_resnet50"
    description: str = ""
    alternate_filenames: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Lists from JSON or plugins become tuples so entries stay hashable and frozen.
        object.__setattr__(self, "urls", tuple(self.urls))
        object.__setattr__(self, "alternate_filenames", tuple(self.alternate_filenames))
        if not self.name:
            raise ValueError("weights entry without a name")
        for filename in (self.filename, *self.alternate_filenames):
            # A file name is joined to the cache dir and written to: no path parts allowed.
            if not filename or filename in (".", "..") or "/" in filename or "\\" in filename:
                raise ValueError(f"weights {self.name!r}: bad file name {filename!r}")
        if self.sha256 is not None:
            digest = self.sha256.lower()
            if not _SHA256.match(digest):
                raise ValueError(f"weights {self.name!r}: sha256 must be 64 hex digits, got {self.sha256!r}")
            object.__setattr__(self, "sha256", digest)
        if self.size is not None and (not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"weights {self.name!r}: bad size {self.size!r}")
        if self.component:
            kind, _, component_name = self.component.partition(":")
            if kind not in COMPONENT_KINDS or not component_name:
                raise ValueError(
                    f"weights {self.name!r}: component must be 'kind:name' with kind one of "
                    f"{', '.join(COMPONENT_KINDS)}; got {self.component!r}"
                )

    @property
    def pinned(self) -> bool:
        """True when a download can be checked against a published digest."""
        return self.sha256 is not None

    @property
    def filenames(self) -> tuple[str, ...]:
        """The main file name first, then the alternates accepted when found locally."""
        return (self.filename, *self.alternate_filenames)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightsEntry:
        known = {
            "name", "filename", "urls", "sha256", "size", "license", "component",
            "description", "alternate_filenames",
        }  # fmt: skip
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"weights entry {data.get('name')!r}: unknown fields {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filename": self.filename,
            "urls": list(self.urls),
            "sha256": self.sha256,
            "size": self.size,
            "license": self.license,
            "component": self.component,
            "description": self.description,
            "alternate_filenames": list(self.alternate_filenames),
        }


def weights_key(name: str, weights: Path | None, tag: str = "") -> str:
    """Identifies a network loaded from ``weights`` (for caching its exports): the name and,
    when loaded from a file, that file's path, size and modification time, then ``tag``
    (what else an export bakes in, such as the fidelity)."""
    key = name
    if weights is not None:
        stat = weights.stat()
        key = f"{name}:{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"{key}:{tag}" if tag else key
