"""The one degradation model every training recipe uses.

    LQ = JPEG_q( (HQ ⊛ k)↓r + n_σ )↑r      then colour jitter and gray, all randomised per sample

Stages, in order (each one can be switched off with its probability):

1. **blur** ``⊛ k``: one kernel kind drawn by weight among ``iso`` (isotropic Gaussian),
   ``aniso`` (anisotropic Gaussian, random rotation), ``motion`` (a line of random
   length and angle), ``average`` (box) and ``median``. Kernels sum to 1.
2. **resize down** ``↓r``: by a random factor r (``scale.factor``) or to a random size
   in pixels for the longer side (``scale.size``), with a randomly chosen interpolation.
3. **noise** ``n_σ``: additive Gaussian noise, σ in 0–255 units, per channel or (with
   ``noise.gray_probability``) the same in all channels.
4. **JPEG** ``q``: encode/decode with OpenCV at a random quality (OpenCV's default
   4:2:0 chroma subsampling, as in the reference implementations).
5. **resize back** ``↑r`` to the input size (random interpolation among those allowed).
6. **colour jitter**: a random shift per BGR channel (GFP-GAN).
7. **gray**: the LQ becomes gray; with ``gray.also_target`` the target should be too
   (see :func:`degrade_pair`).

Everything is described by frozen dataclasses (:class:`DegradationConfig` and its
sections), serialisable with ``to_dict``/``from_dict`` so a JSON training config can
override any single range::

    config = PRESETS["gfpgan"].with_overrides({"jpeg": {"quality": [30, 70]}})

Randomness: :func:`degrade` takes a ``numpy.random.Generator``; :func:`degrade_for`
derives one from ``(seed, index)`` alone, so a validation set is the same whatever the
worker count or the order samples are drawn in. Parameters are drawn first
(:func:`sample_params`, a small JSON-able record) and applied second
(:func:`apply_params`); each stage draws from its own child generator, so switching
one stage off does not change what the others draw.

Images are ``H x W x 3`` BGR, ``uint8`` (0–255) or floating point (0–1); the result has
the input's size and dtype. Work is done in float32 with OpenCV, no Python loop over
pixels: on one core a 512 px face takes about 14 ms on average with the gfpgan recipe,
7 ms with psfrgan and 16 ms with mmrb (whose factors below 1 first enlarge the face up
to 1280 px, so its rare worst cases take ~100 ms). Set ``cv2.setNumThreads(1)`` in
data-loader workers so several workers do not fight over cores.
Horizontal flips and crops are dataset augmentations, not degradations: they are not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import cv2
import numpy as np

from facefix.errors import FacefixError

__all__ = [
    "BLUR_KINDS",
    "INTERPOLATIONS",
    "PRESETS",
    "BlurConfig",
    "ColorJitterConfig",
    "DegradationConfig",
    "DegradationConfigError",
    "DegradationParams",
    "GrayConfig",
    "JpegConfig",
    "NoiseConfig",
    "ScaleConfig",
    "apply_params",
    "degrade",
    "degrade_for",
    "degrade_pair",
    "get_preset",
    "rng_for",
    "sample_params",
    "target_for",
]

BLUR_KINDS = ("iso", "aniso", "motion", "average", "median")
INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_INTERPOLATION_ALIASES = {"bilinear": "linear", "bicubic": "cubic", "lanczos4": "lanczos"}

# Mixed into every (seed, index) seed so that a dataset which also seeds its own
# augmentations (flips, crops) with (seed, index) does not draw correlated numbers.
_DEGRADATION_STREAM = 0x44454752  # "DEGR"


class DegradationConfigError(FacefixError, ValueError):
    """A degradation config is invalid: ``str(error)`` names the key and the reason."""


# -- validation helpers --------------------------------------------------------------


def _fail(where: str, message: str) -> None:
    raise DegradationConfigError(f"degradation config: {where}: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _probability(value: Any, where: str) -> float:
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        _fail(where, f"expected a probability between 0 and 1, got {value!r}")
    return float(value)


def _float_range(value: Any, where: str, minimum: float | None = None, maximum: float | None = None,
                 positive: bool = False) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_number(v) for v in value):
        _fail(where, f"expected [low, high], got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        _fail(where, f"expected [low, high] with low <= high, got {list(value)!r}")
    if positive and low <= 0:
        _fail(where, f"values must be above 0, got {list(value)!r}")
    if minimum is not None and low < minimum:
        _fail(where, f"values must be at least {minimum:g}, got {list(value)!r}")
    if maximum is not None and high > maximum:
        _fail(where, f"values must be at most {maximum:g}, got {list(value)!r}")
    return low, high


def _int_range(value: Any, where: str, minimum: int, maximum: int | None = None,
               needs_odd: bool = False) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        _fail(where, f"expected [low, high] of whole numbers, got {value!r}")
    low, high = int(value[0]), int(value[1])
    if low > high:
        _fail(where, f"expected [low, high] with low <= high, got {[low, high]!r}")
    if low < minimum or (maximum is not None and high > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        _fail(where, f"values must be {bound}, got {[low, high]!r}")
    if needs_odd and _first_odd(low) > high:
        _fail(where, f"kernel sizes are odd, and {[low, high]!r} contains no odd number")
    return low, high


def _interpolations(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        _fail(where, f"expected a non-empty list of interpolation names, got {value!r}")
    names = []
    for name in value:
        canonical = _INTERPOLATION_ALIASES.get(str(name).lower(), str(name).lower())
        if canonical not in INTERPOLATIONS:
            _fail(where, f"unknown interpolation {name!r} (known: {', '.join(INTERPOLATIONS)})")
        names.append(canonical)
    return tuple(names)


def _first_odd(value: int) -> int:
    return value if value % 2 else value + 1


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclasses normalise in __post_init__


# -- configuration -------------------------------------------------------------------
# Dataclass defaults are the GFP-GAN recipe (train_gfpgan_v1.yml; see docs anchors.md).
# Ranges are [low, high], both ends included; whole-number ranges draw integers.


@dataclass(frozen=True)
class BlurConfig:
    """Blur ``HQ ⊛ k`` with one kernel drawn per sample.

    ``kinds`` maps kind → weight (weights need not sum to 1). ``kernel_size`` is the
    range of odd sizes for Gaussian kernels (``None``: ``2*ceil(3σ)+1``, the whole
    ±3σ); ``sigma`` is the Gaussian σ in pixels (``aniso`` draws each axis from it and
    a rotation uniformly over all angles); ``box_size`` is the odd size range of
    ``average`` and ``median``; ``motion_length`` the length range in pixels of the
    ``motion`` line (at a uniformly random angle).
    """

    probability: float = 1.0
    kinds: Mapping[str, float] = field(default_factory=lambda: {"iso": 0.5, "aniso": 0.5})
    kernel_size: tuple[int, int] | None = (41, 41)
    sigma: tuple[float, float] = (0.1, 10.0)
    box_size: tuple[int, int] = (3, 15)
    motion_length: tuple[int, int] = (5, 25)

    def __post_init__(self) -> None:
        _set(self, "probability", _probability(self.probability, "blur.probability"))
        if not isinstance(self.kinds, Mapping) or not self.kinds:
            _fail("blur.kinds", f"expected a mapping of kind to weight, e.g. {{\"iso\": 1}}, got {self.kinds!r}")
        kinds: dict[str, float] = {}
        for kind, weight in self.kinds.items():
            if kind not in BLUR_KINDS:
                _fail("blur.kinds", f"unknown blur kind {kind!r} (known: {', '.join(BLUR_KINDS)})")
            if not _is_number(weight) or float(weight) < 0 or not math.isfinite(float(weight)):
                _fail(f"blur.kinds.{kind}", f"expected a weight >= 0, got {weight!r}")
            kinds[kind] = float(weight)
        if sum(kinds.values()) <= 0:
            _fail("blur.kinds", "at least one kind needs a weight above 0")
        _set(self, "kinds", kinds)
        if self.kernel_size is not None:
            _set(self, "kernel_size", _int_range(self.kernel_size, "blur.kernel_size", 1, needs_odd=True))
        _set(self, "sigma", _float_range(self.sigma, "blur.sigma", positive=True))
        _set(self, "box_size", _int_range(self.box_size, "blur.box_size", 1, needs_odd=True))
        _set(self, "motion_length", _int_range(self.motion_length, "blur.motion_length", 1))


@dataclass(frozen=True)
class ScaleConfig:
    """Resize down ``↓r`` then back ``↑r``: exactly one of ``factor`` and ``size``.

    ``factor``: r drawn uniformly; the LQ is ``int(W / r) x int(H / r)`` (GFP-GAN's
    rounding). A factor below 1 enlarges first, as in the mmrb recipe. ``size``: the
    LQ's longer side is a random whole number of pixels in the range, aspect kept
    (PSFR-GAN resizes its square faces to 32–255 px). One interpolation is drawn from
    ``down_interpolation`` and one from ``up_interpolation`` (names: nearest, linear,
    area, cubic, lanczos; bilinear/bicubic are accepted).
    """

    probability: float = 1.0
    factor: tuple[float, float] | None = (0.8, 8.0)
    size: tuple[int, int] | None = None
    down_interpolation: tuple[str, ...] = ("linear",)
    up_interpolation: tuple[str, ...] = ("linear",)

    def __post_init__(self) -> None:
        _set(self, "probability", _probability(self.probability, "scale.probability"))
        if (self.factor is None) == (self.size is None):
            _fail("scale", "give exactly one of factor (a downsampling range) and size (an LQ size range in px)")
        if self.factor is not None:
            _set(self, "factor", _float_range(self.factor, "scale.factor", positive=True))
        if self.size is not None:
            _set(self, "size", _int_range(self.size, "scale.size", 1))
        _set(self, "down_interpolation", _interpolations(self.down_interpolation, "scale.down_interpolation"))
        _set(self, "up_interpolation", _interpolations(self.up_interpolation, "scale.up_interpolation"))


@dataclass(frozen=True)
class NoiseConfig:
    """Additive Gaussian noise ``n_σ``; ``sigma`` in 0–255 units whatever the image dtype.

    With probability ``gray_probability`` one noise image is added to all channels
    (imgaug's ``per_channel=0.5`` in PSFR-GAN is gray_probability 0.5).
    """

    probability: float = 1.0
    sigma: tuple[float, float] = (0.0, 20.0)
    gray_probability: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "probability", _probability(self.probability, "noise.probability"))
        _set(self, "sigma", _float_range(self.sigma, "noise.sigma", minimum=0.0))
        _set(self, "gray_probability", _probability(self.gray_probability, "noise.gray_probability"))


@dataclass(frozen=True)
class JpegConfig:
    """JPEG encode/decode at a random whole-number ``quality`` (1–100, IJG scale)."""

    probability: float = 1.0
    quality: tuple[int, int] = (60, 100)

    def __post_init__(self) -> None:
        _set(self, "probability", _probability(self.probability, "jpeg.probability"))
        _set(self, "quality", _int_range(self.quality, "jpeg.quality", 1, 100))


@dataclass(frozen=True)
class ColorJitterConfig:
    """Shift each BGR channel of the LQ by uniform(-shift, shift); ``shift`` in 0–255 units."""

    probability: float = 0.3
    shift: float = 20.0

    def __post_init__(self) -> None:
        _set(self, "probability", _probability(self.probability, "color_jitter.probability"))
        if not _is_number(self.shift) or not 0 <= float(self.shift) <= 255:
            _fail("color_jitter.shift", f"expected a shift between 0 and 255, got {self.shift!r}")
        _set(self, "shift", float(self.shift))


@dataclass(frozen=True)
class GrayConfig:
    """Turn the LQ gray; ``also_target``: the training target should be gray too.

    Both references do this to the pair (GFP-GAN ``gt_gray: True``; PSFR-GAN grays the
    HQ before degrading it), so a gray LQ never asks the network to invent colour.
    """

    probability: float = 0.01
    also_target: bool = True

    def __post_init__(self) -> None:
        _set(self, "probability", _probability(self.probability, "gray.probability"))
        if not isinstance(self.also_target, bool):
            _fail("gray.also_target", f"expected true or false, got {self.also_target!r}")


_SECTIONS: dict[str, type] = {
    "blur": BlurConfig,
    "scale": ScaleConfig,
    "noise": NoiseConfig,
    "jpeg": JpegConfig,
    "color_jitter": ColorJitterConfig,
    "gray": GrayConfig,
}


def _plain(value: Any) -> Any:
    """JSON-friendly copy: tuples become lists, mappings plain dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _section_from_dict(cls: type, data: Any, base: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        _fail(where, f"expected an object, got {data!r}")
    names = [f.name for f in fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        _fail(where, f"unknown key {unknown[0]!r} (known: {', '.join(names)})")
    values = {name: getattr(base, name) for name in names}
    values.update(data)
    if cls is ScaleConfig:
        # factor and size exclude each other: naming one in an override drops the other.
        if "factor" in data and "size" not in data:
            values["size"] = None
        elif "size" in data and "factor" not in data:
            values["factor"] = None
    try:
        return cls(**values)
    except DegradationConfigError:
        raise
    except (TypeError, ValueError) as error:
        _fail(where, str(error))


@dataclass(frozen=True)
class DegradationConfig:
    """A whole recipe. The defaults are the GFP-GAN recipe (``PRESETS["gfpgan"]``)."""

    blur: BlurConfig = field(default_factory=BlurConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)
    color_jitter: ColorJitterConfig = field(default_factory=ColorJitterConfig)
    gray: GrayConfig = field(default_factory=GrayConfig)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                _fail(name, f"expected a {cls.__name__}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples): ``json.dumps`` it as is."""
        return {name: {f.name: _plain(getattr(getattr(self, name), f.name)) for f in fields(_SECTIONS[name])}
                for name in _SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: DegradationConfig | None = None) -> DegradationConfig:
        """Build from a full or partial dict (as from a JSON file).

        Sections and keys left out keep ``base``'s values (default: the dataclass
        defaults, i.e. the GFP-GAN recipe). A key replaces the value as a whole:
        ``{"blur": {"kinds": {"motion": 1}}}`` leaves motion blur as the only kind. In
        ``scale``, naming only ``factor`` or only ``size`` drops the other. Unknown keys
        and bad values raise :class:`DegradationConfigError` naming the key.
        """
        base = base if base is not None else cls()
        if not isinstance(data, Mapping):
            _fail("(top level)", f"expected an object, got {type(data).__name__}")
        unknown = [key for key in data if key not in _SECTIONS]
        if unknown:
            _fail(str(unknown[0]), f"unknown section (known: {', '.join(_SECTIONS)})")
        sections = {
            name: _section_from_dict(section_cls, data[name], getattr(base, name), name)
            if name in data else getattr(base, name)
            for name, section_cls in _SECTIONS.items()
        }
        return cls(**sections)

    def with_overrides(self, overrides: Mapping[str, Any]) -> DegradationConfig:
        """This config with some keys replaced (same rules as :meth:`from_dict`)."""
        return DegradationConfig.from_dict(overrides, base=self)

    @classmethod
    def identity(cls) -> DegradationConfig:
        """Every stage off: the output equals the input. A base for one-stage configs."""
        return cls(
            blur=BlurConfig(probability=0.0),
            scale=ScaleConfig(probability=0.0),
            noise=NoiseConfig(probability=0.0),
            jpeg=JpegConfig(probability=0.0),
            color_jitter=ColorJitterConfig(probability=0.0),
            gray=GrayConfig(probability=0.0),
        )


# -- presets -------------------------------------------------------------------------

_GFPGAN = DegradationConfig()
"""GFP-GAN (options/train_gfpgan_v1.yml, FFHQDegradationDataset; docs anchors.md).

Blur always: 41 px kernel, iso/aniso 50/50, σ ∈ [0.1, 10]; downsample r ∈ [0.8, 8]
(bilinear down and up); Gaussian noise σ ∈ [0, 20]; JPEG q ∈ [60, 100]; colour jitter
p 0.3, shift 20/255; gray p 0.01 applied to LQ and GT (``gt_gray: True``).
"""

_PSFRGAN = DegradationConfig(
    blur=BlurConfig(
        probability=0.5,
        kinds={"iso": 1.0, "average": 1.0, "median": 1.0, "motion": 1.0},
        kernel_size=None,
        sigma=(3.0, 15.0),
        box_size=(3, 15),
        motion_length=(5, 25),
    ),
    scale=ScaleConfig(
        factor=None,
        size=(32, 255),
        down_interpolation=("nearest", "linear", "area", "cubic"),
        up_interpolation=("cubic",),
    ),
    noise=NoiseConfig(probability=0.2, sigma=(0.0, 25.5), gray_probability=0.5),
    jpeg=JpegConfig(probability=0.7, quality=(36, 90)),
    color_jitter=ColorJitterConfig(probability=0.0),
    gray=GrayConfig(probability=0.3, also_target=True),
)
"""PSFR-GAN (data/ffhq_dataset.py ``complex_imgaug`` and ``random_gray``; docs anchors.md).

With p 0.5 one of: Gaussian blur σ ∈ [3, 15], average blur k ∈ [3, 15], median blur
k ∈ [3, 15], motion blur k ∈ [5, 25] (imgaug OneOf, equal weights); resize to a
random size ``np.random.randint(32, 256)`` = 32–255 px with any of imgaug's
interpolations (``ia.ALL``: nearest, linear, area, cubic); noise σ ≤ 0.1·255 with
p 0.2, per channel half the time; JPEG with p 0.7; back to the input size (imgaug's
default cubic); gray p 0.3 on the HQ before degrading (so target and LQ are both gray).

JPEG: the reference writes ``iaa.JpegCompression(compression=(10, 65))``, and anchors.md
repeats "JPEG 10–65". That is imgaug's *compression strength*, not a quality: imgaug
encodes at ``quality = round(1 + 99 * (1 - compression / 101))``, so compression
10–65 is quality 90–36. The preset uses the qualities actually used, [36, 90].
imgaug sizes Gaussian kernels to only ~2.6σ wide; here they span ±3σ (a little
stronger), and imgaug's motion ``direction`` asymmetry is not modelled.
"""

_MMRB = DegradationConfig(
    blur=BlurConfig(
        probability=1.0,
        kinds={"iso": 0.25, "aniso": 0.25, "motion": 0.5},
        kernel_size=(41, 41),
        sigma=(0.1, 10.0),
        motion_length=(5, 25),
    ),
    scale=ScaleConfig(
        factor=(0.4, 8.0),
        down_interpolation=("linear", "area", "cubic"),
        up_interpolation=("linear", "cubic"),
    ),
    noise=NoiseConfig(probability=1.0, sigma=(0.0, 25.0)),
    jpeg=JpegConfig(probability=1.0, quality=(5, 50)),
    color_jitter=ColorJitterConfig(probability=0.0),
    gray=GrayConfig(probability=0.0),
)
"""mmrb, pose-varied restoration (papers/mmrb-pose-varied.txt eq. 17; docs networks.md).

The paper gives: kernel 41, Gaussian and motion blur, downsample s ∈ [0.4, 8], noise
δ ∈ [0, 25], JPEG q ∈ [5, 50], every stage on every pair. It gives no kind weights, σ
range, motion length or interpolation: those are choices here — Gaussian and motion
50/50 (Gaussian split iso/aniso as in GFP-GAN), σ ∈ [0.1, 10] as GFP-GAN (which the
paper says it follows), motion length 5–25 px as PSFR-GAN, bilinear/area/bicubic down
and bilinear/bicubic up; no colour jitter or gray.
"""

_NONE = DegradationConfig.identity()
"""Nothing: for recipes that make their own inputs from the clean face (a super-resolver
shrinks it to its input size itself)."""

#: Named recipes. Configs are frozen: derive variants with ``with_overrides``.
PRESETS: dict[str, DegradationConfig] = {"gfpgan": _GFPGAN, "psfrgan": _PSFRGAN, "mmrb": _MMRB, "none": _NONE}


def get_preset(name: str) -> DegradationConfig:
    """The preset called ``name``, or :class:`DegradationConfigError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise DegradationConfigError(
            f"unknown degradation preset {name!r} (known: {', '.join(PRESETS)})"
        ) from None


# -- sampling ------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradationParams:
    """What one sample drew: enough to redo it exactly; ``to_dict`` for logs.

    ``blur`` is ``None`` or ``{"kind", "size", ...}`` (Gaussian: ``sigma_x``, ``sigma_y``,
    ``angle``; motion: ``length``, ``angle``; degrees). ``lq_size`` is ``(width, height)``
    of the small image, or ``None`` when not resized. ``noise_sigma`` and ``color_shift``
    are in 0–255 units.
    """

    height: int
    width: int
    blur: Mapping[str, Any] | None = None
    lq_size: tuple[int, int] | None = None
    down_interpolation: str | None = None
    up_interpolation: str | None = None
    noise_sigma: float | None = None
    noise_gray: bool = False
    noise_seed: int = 0
    jpeg_quality: int | None = None
    color_shift: tuple[float, float, float] | None = None
    gray: bool = False
    gray_target: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def rng_for(seed: int, index: int) -> np.random.Generator:
    """The generator :func:`degrade_for` uses for sample ``index`` of a run seeded ``seed``."""
    for name, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), _DEGRADATION_STREAM]))


def _odd_in(low: int, high: int, rng: np.random.Generator) -> int:
    first = _first_odd(low)
    return first + 2 * int(rng.integers(0, (high - first) // 2 + 1))


def _sample_blur(blur: BlurConfig, rng: np.random.Generator) -> dict[str, Any] | None:
    if rng.random() >= blur.probability:
        return None
    names = [name for name, weight in blur.kinds.items() if weight > 0]
    weights = np.array([blur.kinds[name] for name in names], np.float64)
    kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if kind in ("iso", "aniso"):
        sigma_x = float(rng.uniform(*blur.sigma))
        sigma_y = sigma_x if kind == "iso" else float(rng.uniform(*blur.sigma))
        angle = 0.0 if kind == "iso" else float(rng.uniform(0.0, 180.0))
        if blur.kernel_size is None:
            size = 2 * math.ceil(3 * max(sigma_x, sigma_y)) + 1
        else:
            size = _odd_in(*blur.kernel_size, rng)
        return {"kind": kind, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "angle": angle}
    if kind == "motion":
        length = int(rng.integers(blur.motion_length[0], blur.motion_length[1] + 1))
        return {"kind": kind, "size": _first_odd(length), "length": length, "angle": float(rng.uniform(0.0, 180.0))}
    return {"kind": kind, "size": _odd_in(*blur.box_size, rng)}


def sample_params(config: DegradationConfig, rng: np.random.Generator, height: int, width: int) -> DegradationParams:
    """Draw one sample's degradation parameters for an ``height x width`` image."""
    if not isinstance(config, DegradationConfig):
        raise TypeError(f"config must be a DegradationConfig, got {type(config).__name__}")
    # One child generator per stage: turning a stage off leaves the others' draws alone.
    blur_rng, scale_rng, noise_rng, jpeg_rng, color_rng, gray_rng = (
        np.random.default_rng(int(seed)) for seed in rng.integers(0, 2**62, size=6)
    )
    values: dict[str, Any] = {"height": int(height), "width": int(width)}
    values["blur"] = _sample_blur(config.blur, blur_rng)

    scale = config.scale
    if scale_rng.random() < scale.probability:
        if scale.factor is not None:
            factor = float(scale_rng.uniform(*scale.factor))
            lq_width, lq_height = int(width / factor), int(height / factor)
        else:
            side = int(scale_rng.integers(scale.size[0], scale.size[1] + 1))
            ratio = side / max(height, width)
            lq_width, lq_height = round(width * ratio), round(height * ratio)
        values["lq_size"] = (max(1, lq_width), max(1, lq_height))
        values["down_interpolation"] = scale.down_interpolation[int(scale_rng.integers(len(scale.down_interpolation)))]
        values["up_interpolation"] = scale.up_interpolation[int(scale_rng.integers(len(scale.up_interpolation)))]

    noise = config.noise
    if noise_rng.random() < noise.probability:
        values["noise_sigma"] = float(noise_rng.uniform(*noise.sigma))
        values["noise_gray"] = bool(noise_rng.random() < noise.gray_probability)
        values["noise_seed"] = int(noise_rng.integers(0, 2**62))

    if jpeg_rng.random() < config.jpeg.probability:
        values["jpeg_quality"] = int(jpeg_rng.integers(config.jpeg.quality[0], config.jpeg.quality[1] + 1))

    jitter = config.color_jitter
    if color_rng.random() < jitter.probability:
        values["color_shift"] = tuple(float(v) for v in color_rng.uniform(-jitter.shift, jitter.shift, 3))

    if gray_rng.random() < config.gray.probability:
        values["gray"] = True
        values["gray_target"] = config.gray.also_target
    return DegradationParams(**values)


# -- applying ------------------------------------------------------------------------


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float = 0.0) -> np.ndarray:
    """``size x size`` float32 Gaussian, σ along x and y rotated by ``angle`` degrees; sums to 1."""
    half = size // 2
    axis = np.arange(-half, half + 1, dtype=np.float64)
    xx, yy = np.meshgrid(axis, axis)
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    u = cos * xx + sin * yy
    v = -sin * xx + cos * yy
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """An odd-sized float32 kernel holding a centred line ``length`` px long at ``angle`` degrees."""
    size = _first_odd(length)
    kernel = np.zeros((size, size), np.float32)
    start = (size - length) // 2
    kernel[size // 2, start:start + length] = 1.0
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (size, size), flags=cv2.INTER_LINEAR)
    total = float(kernel.sum())
    if total <= 0:  # cannot happen for length >= 1, but never divide by zero
        kernel = np.zeros((size, size), np.float32)
        kernel[size // 2, size // 2] = 1.0
        return kernel
    return kernel / total


def _to_uint8(image: np.ndarray) -> np.ndarray:
    # image is float32 in [0, 1]: scale, round, saturate (values are never negative here).
    return cv2.convertScaleAbs(image, alpha=255.0)


def _trim(kernel: np.ndarray) -> np.ndarray:
    """Drop the border of a centred odd kernel where every tap is below 1e-6 of the peak.

    A 41 px kernel with σ 1 becomes 11 px: the same result to well under one grey
    level, many times faster. Renormalised to sum 1.
    """
    half = kernel.shape[0] // 2
    offsets = np.argwhere(kernel >= kernel.max() * 1e-6) - half
    if kernel.shape[1] > 1:  # square 2-D kernel; a (size, 1) column is 1-D
        radius = int(np.abs(offsets).max())
        kernel = kernel[half - radius:half + radius + 1, half - radius:half + radius + 1]
    else:
        radius = int(np.abs(offsets[:, 0]).max())
        kernel = kernel[half - radius:half + radius + 1]
    return kernel / kernel.sum()


def _apply_blur(image: np.ndarray, blur: Mapping[str, Any]) -> np.ndarray:
    kind, size = blur["kind"], int(blur["size"])
    if size <= 1:
        return image
    if kind == "iso":  # separable: two 1-D passes
        line = _trim(cv2.getGaussianKernel(size, float(blur["sigma_x"]), cv2.CV_64F)).astype(np.float32)
        return cv2.sepFilter2D(image, -1, line, line)
    if kind == "aniso":
        kernel = gaussian_kernel(size, float(blur["sigma_x"]), float(blur["sigma_y"]), float(blur["angle"]))
        return cv2.filter2D(image, -1, _trim(kernel))
    if kind == "motion":
        return cv2.filter2D(image, -1, motion_kernel(int(blur["length"]), float(blur["angle"])))
    if kind == "average":
        return cv2.blur(image, (size, size))
    if kind == "median":  # OpenCV's median needs 8-bit images above 5 px
        return cv2.medianBlur(_to_uint8(image), size).astype(np.float32) * np.float32(1 / 255)
    raise ValueError(f"unknown blur kind {kind!r}")


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buffer = cv2.imencode(".jpg", _to_uint8(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode a {image.shape} image")
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    return decoded.astype(np.float32) * np.float32(1 / 255)


def _check_image(hq: np.ndarray) -> None:
    if not isinstance(hq, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(hq).__name__}")
    if hq.ndim != 3 or hq.shape[2] != 3 or hq.shape[0] < 1 or hq.shape[1] < 1:
        raise ValueError(f"expected an H x W x 3 BGR image, got shape {hq.shape}")
    if hq.dtype != np.uint8 and not np.issubdtype(hq.dtype, np.floating):
        raise ValueError(f"expected uint8 (0-255) or floating point (0-1) pixels, got {hq.dtype}")


def _to_float(hq: np.ndarray) -> np.ndarray:
    if hq.dtype == np.uint8:
        return hq.astype(np.float32) * np.float32(1 / 255)
    return np.clip(hq.astype(np.float32), 0.0, 1.0)


def _from_float(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.dtype == np.uint8:
        return _to_uint8(np.clip(image, 0.0, 1.0))
    return np.clip(image, 0.0, 1.0).astype(like.dtype, copy=False)


def _gray(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.merge([gray, gray, gray])


def apply_params(hq: np.ndarray, params: DegradationParams) -> np.ndarray:
    """Degrade ``hq`` exactly as ``params`` says; the LQ has ``hq``'s shape and dtype."""
    _check_image(hq)
    height, width = hq.shape[:2]
    if (height, width) != (params.height, params.width):
        raise ValueError(f"params were drawn for {params.width}x{params.height}, the image is {width}x{height}")
    image = _to_float(hq)
    if params.blur is not None:
        image = _apply_blur(image, params.blur)
    if params.lq_size is not None and params.lq_size != (width, height):
        image = cv2.resize(image, params.lq_size, interpolation=INTERPOLATIONS[params.down_interpolation])
    if params.noise_sigma is not None and params.noise_sigma > 0:
        lq_height, lq_width = image.shape[:2]
        noise = np.random.default_rng(params.noise_seed).standard_normal(
            (lq_height, lq_width, 1 if params.noise_gray else 3), dtype=np.float32
        )
        noise *= np.float32(params.noise_sigma / 255.0)
        image += noise
    np.clip(image, 0.0, 1.0, out=image)
    if params.jpeg_quality is not None:
        image = _jpeg(image, params.jpeg_quality)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[params.up_interpolation or "linear"])
        np.clip(image, 0.0, 1.0, out=image)
    if params.color_shift is not None:
        image += np.asarray(params.color_shift, np.float32) / np.float32(255)
        np.clip(image, 0.0, 1.0, out=image)
    if params.gray:
        image = _gray(image)
    return _from_float(image, hq)


def target_for(hq: np.ndarray, params: DegradationParams) -> np.ndarray:
    """The training target for this sample: ``hq``, or its gray version when the LQ was
    grayed with ``gray.also_target``. Same shape and dtype as ``hq``."""
    _check_image(hq)
    if not params.gray_target:
        return hq
    if hq.dtype == np.uint8 or hq.dtype == np.float32:
        return _gray(hq)
    return _gray(hq.astype(np.float32)).astype(hq.dtype)


def degrade(hq: np.ndarray, config: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """One random LQ version of ``hq`` (``H x W x 3`` BGR, uint8 or float 0–1), same size and dtype."""
    _check_image(hq)
    return apply_params(hq, sample_params(config, rng, hq.shape[0], hq.shape[1]))


def degrade_pair(hq: np.ndarray, config: DegradationConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(target, lq)`` for training: like :func:`degrade`, and the target is grayed
    together with the LQ when the recipe says so (``gray.also_target``)."""
    _check_image(hq)
    params = sample_params(config, rng, hq.shape[0], hq.shape[1])
    return target_for(hq, params), apply_params(hq, params)


def degrade_for(hq: np.ndarray, config: DegradationConfig, seed: int, index: int) -> np.ndarray:
    """:func:`degrade` with the generator :func:`rng_for` ``(seed, index)``: deterministic.

    The same image, config, seed and index give the same LQ on every call, in any
    worker and in any order (byte-identical for uint8 with the same OpenCV build).
    """
    return degrade(hq, config, rng_for(seed, index))
