"""From a weights file to a strictly loaded network: one path for every network.

    file ─ read_state ────▶ raw dict (``weights_only``: pickled code is refused)
         ─ canonicalize ──▶ the state dict (``params_ema``, else ``params``, else
                            ``state_dict``, else the file's own tensors; a DataParallel
                            ``module.`` prefix dropped) and the stored config, if any
         ─ config ────────▶ stored, or inferred from the keys and shapes (the card's rule)
         ─ build on meta ─▶ the layout that config implies, at no cost in memory or time
         ─ layout check ──▶ one line naming missing, unexpected and reshaped keys
         ─ strict load ───▶ the module, in eval mode

Restorers, parsers, detectors and the loss networks (VGG, ArcFace) all load through
here, so every file is unwrapped the same way and every mismatch reads the same.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from facefix.errors import WeightsError, brief

#: Where training frameworks keep the weights inside a checkpoint, most wanted first:
#: the EMA generator (what papers evaluate and what facefix exports), then the raw one.
STATE_KEYS = ("params_ema", "params", "state_dict")
DATA_PARALLEL_PREFIX = "module."
_UNSAFE = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)|(\S+) must be \S+ to load")


def _check_inflation(path: Path) -> None:
    """Refuse a zip whose members inflate far past the file's own size (a zip bomb): torch
    stores tensors uncompressed, so a real weights file unpacks to about its size."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # the legacy format, or a damaged file: torch.load says what is wrong
    size = path.stat().st_size
    if declared > 2 * size + INFLATION_ALLOWANCE:
        raise WeightsError(f"{path}: refused to load: its {size / 2**20:.1f} MiB unpack to "
                           f"{declared / 2**20:.0f} MiB (a PyTorch file stores its tensors uncompressed)")


#: What a weights zip may declare beyond twice its own size (pickles and small records compress).
INFLATION_ALLOWANCE = 16 * 2**20


def read_state(path: Path | str, *, mmap: bool = False) -> dict:
    """Load a PyTorch weights file safely (``weights_only``): zip or legacy format.

    ``mmap``: map the tensors' storage instead of reading it (zip files only), for
    looking at keys and shapes without paying for the data.
    """
    path = Path(path)
    if not path.is_file():
        reason = "not a file" if path.exists() else "no such file"
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({reason})")
    _check_inflation(path)
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    except pickle.UnpicklingError as error:
        match = _UNSAFE.search(str(error))
        if match is None:  # the weights-only unpickler also fails on corrupt data
            raise WeightsError(f"{path}: not a readable PyTorch weights file (corrupt pickle data)") from None
        needs = match.group(1) or match.group(2)
        raise WeightsError(
            f"{path}: refused to load: the file needs arbitrary code execution (not a plain weights file); "
            f"re-save it as a state dict (it references {needs})"
        ) from None
    except PermissionError as error:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({error.strerror})") from None
    except Exception as error:  # torch raises EOFError, RuntimeError, KeyError, OSError...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if len(reason) > 100:  # torch's messages run to paragraphs; keep the line short
            reason = reason[:97] + "..."
        detail = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
        raise WeightsError(f"{path}: not a readable PyTorch weights file (truncated or corrupt; {detail})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: not a state dict (the file holds a {type(data).__name__})")
    return data


def strip_prefix(state: Mapping[str, Any], prefix: str = DATA_PARALLEL_PREFIX) -> dict[str, Any]:
    """Drop ``prefix`` when every key has it (a DataParallel-saved file); else keep the keys."""
    keys = list(state)
    if keys and all(key.startswith(prefix) for key in keys):
        return {key[len(prefix):]: value for key, value in state.items()}
    return dict(state)


def canonicalize(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(state dict, stored config or None) of a checkpoint in any of the usual wrappings."""
    config = raw.get("config") if isinstance(raw.get("config"), Mapping) else None
    for key in STATE_KEYS:
        if isinstance(raw.get(key), Mapping):
            return strip_prefix(raw[key]), dict(config) if config else None
    tensors = {key: value for key, value in raw.items() if isinstance(value, torch.Tensor)}
    return strip_prefix(tensors), None


@dataclass(frozen=True)
class Checkpoint:
    """A weights file, unwrapped: its state dict, its stored config, and the raw dict
    (for what a checkpoint carries beside the network, such as PSFR-GAN's parser)."""

    path: Path
    state: dict[str, Any]
    config: dict[str, Any] | None
    raw: Mapping[str, Any]

    def nested(self) -> list[Checkpoint]:
        """Checkpoints stored inside this one (a generator file that carries its parser)."""
        found = []
        for value in self.raw.values():
            if isinstance(value, Mapping) and any(isinstance(value.get(key), Mapping) for key in STATE_KEYS):
                state, config = canonicalize(value)
                found.append(Checkpoint(self.path, state, config, value))
        return found


def read_checkpoint(path: Path | str, *, mmap: bool = False) -> Checkpoint:
    raw = read_state(path, mmap=mmap)
    state, config = canonicalize(raw)
    return Checkpoint(Path(path), state, config, raw)


def shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}


def meta_shapes(factory: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """The state-dict layout of the module ``factory`` builds, built on the meta device
    (no memory is allocated, whatever sizes the config asks for)."""
    with torch.device("meta"):
        return shapes(factory().state_dict())


def layout_differences(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> str:
    """One line naming missing, unexpected and wrongly shaped keys ('' when identical)."""
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = sorted(key for key in set(expected) & set(found) if tuple(expected[key]) != tuple(found[key]))
    parts = [f"{label}: {few(keys)}" for label, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("keys of another shape", reshaped)) if keys]
    return "; ".join(parts)


def _check(expected: Mapping[str, tuple], state: Mapping[str, Any], path: Path | str, problem: str,
           optional: Callable[[str], bool] | None) -> None:
    if optional is not None:  # keys the module can do without (BatchNorm's num_batches_tracked in old files)
        expected = {key: shape for key, shape in expected.items() if key in state or not optional(key)}
    differences = layout_differences(expected, shapes(state))
    if differences:
        raise WeightsError(f"{path}: {problem}; {differences}")


def load_into(module: nn.Module, state: Mapping[str, Any], path: Path | str, problem: str, *,
              optional: Callable[[str], bool] | None = None) -> nn.Module:
    """Load ``state`` into an already built ``module`` after checking its layout.

    ``problem`` opens the one-line error, after the file name ("not torchvision vgg16
    weights"). Keys ``optional`` accepts may be absent: the module keeps its own values.
    """
    own = module.state_dict()
    _check(shapes(own), state, path, problem, optional)
    complete = {**{key: value for key, value in own.items() if key not in state}, **state}
    module.load_state_dict(complete, strict=True)
    return module.eval()


def build_strict(factory: Callable[[], nn.Module], state: Mapping[str, Any], path: Path | str, problem: str, *,
                 optional: Callable[[str], bool] | None = None) -> nn.Module:
    """Build the module on the meta device first, check ``state`` fits it, then build it
    for real and load strictly: a file that doesn't fit costs no allocation."""
    try:
        expected = meta_shapes(factory)
    except KeyError as error:  # a stored config without a key the architecture needs
        raise WeightsError(f"{path}: {problem}: bad config (no {error})") from None
    except (TypeError, ValueError, AttributeError, AssertionError) as error:  # unknown keys, wrong types
        raise WeightsError(f"{path}: {problem}: bad config ({brief(error, 200)})") from None
    _check(expected, state, path, problem, optional)
    return load_into(factory(), state, path, problem, optional=optional)
