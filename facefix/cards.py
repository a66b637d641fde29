"""Network cards: one declaration holds everything facefix needs to know about a network.

A plugin that ships a trained network registers a :class:`NetworkCard` through the
``register_networks`` hook. From the card the core generates the rest: the restorer
(or parser) components, one per weights variant, named ``NAME`` for the default
variant and ``NAME.TAG`` for each (timm's ``arch.tag``); the weights registry entries;
``facefix export NAME`` and ``facefix train NAME``; the place in the default choice;
and the recognition of a weights file, so ``facefix restore --weights FILE`` needs no
``--restorer``.

Declaring a card imports nothing heavy: the card names its torch code with
:class:`lazy` (``lazy("my_plugin.arch:build")``), imported only when the network is
built. Loading follows :mod:`facefix.checkpoints`; building the component,
:mod:`facefix.networks`.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from facefix.components import Normalization, WeightsEntry

#: What a card may describe: the pipeline's trained kinds.
CARD_KINDS = ("restorer", "parser", "upsampler")
PRECISIONS = ("fp32", "bf16", "fp16")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class lazy:
    """A callable named ``"package.module:attribute"``, imported on its first call.

    Cards name their architecture, rules and recipes this way, so loading every plugin
    (``facefix --help`` does) imports no torch and builds no network.
    """

    def __init__(self, target: str):
        if not _TARGET.match(target):
            raise ValueError(f"lazy() wants 'package.module:attribute', got {target!r}")
        self.target = target
        self._resolved: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        if self._resolved is None:
            module, _, attribute = self.target.partition(":")
            self._resolved = getattr(importlib.import_module(module), attribute)
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


@dataclass(frozen=True)
class StateRule:
    """Recognises a network's state dicts by their key names (spandrel's way).

    True when every key of ``all_of``, at least one of ``any_of`` (if given) and none of
    ``none_of`` are in the state dict. Only names are read: a memory-mapped file is
    recognised without loading its tensors.
    """

    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()

    def __call__(self, state: Mapping[str, Any]) -> bool:
        return (all(key in state for key in self.all_of)
                and (not self.any_of or any(key in state for key in self.any_of))
                and not any(key in state for key in self.none_of))

    def describe(self) -> str:
        """What a matching file has, for the error when one doesn't."""
        parts = []
        if self.all_of:
            parts.append(" and ".join(self.all_of))
        if self.any_of:
            parts.append(" or ".join(self.any_of))
        return f"it needs {', '.join(parts)}" if parts else "no rule"


@dataclass(frozen=True)
class WeightsVariant:
    """One released (or shipped) weights file of a network: ``NAME.TAG``.

    ``weights`` is a :class:`~facefix.components.WeightsEntry` declared here (it joins
    the weights registry) or the registry name of one declared elsewhere. ``names`` are
    more component names for this variant; the first is the one it is listed under
    (older names stay valid that way).
    """

    tag: str
    weights: WeightsEntry | str
    description: str = ""
    names: tuple[str, ...] = ()

    @property
    def weights_name(self) -> str:
        return self.weights.name if isinstance(self.weights, WeightsEntry) else self.weights


@dataclass(frozen=True)
class Training:
    """How ``facefix train COMMAND`` trains the network on facefix's engine.

    ``recipe()`` returns the recipe (:class:`facefix.training.trainer.Recipe`);
    ``options`` are the recipe's own flags as ``(flag, recipe key, click kwargs)``.
    """

    recipe: Callable[[], Any]
    command: str | None = None  # default: the card's name
    options: tuple[tuple[str, str, dict], ...] = ()
    size: int = 512
    help: str = ""


@dataclass(frozen=True)
class NetworkCard:
    """Everything about one network, declared once.

    * ``architecture(config)`` builds the module; ``recognise(state)`` says whether a
      state dict is this network's; ``infer_config(state)`` reads the constructor
      options off its keys and shapes (None: files must store a ``config``), and
      ``accepts_config(stored)`` says whether a stored config is one (default: yes).
    * ``input_size`` / ``output_size``: pixels, or the config key that holds them
      (``output_size`` None: the same as the input). ``normalization``: its pixels.
    * ``component(network, context, name)`` wraps the loaded
      :class:`facefix.networks.LoadedNetwork` into the component (default for a
      restorer: :class:`facefix.restorers.TorchRestorer`). ``carries`` names the
      checkpoint keys under which its files may hold another card's network (PSFR-GAN
      keeps its parser there); ``uses``, more weights the component may resolve.
    * ``rank``: its place in the default choice (lower first; None: only when named).
    * ``tiny_config``: a small configuration that builds in milliseconds, for the
      conformance tests every card passes.
    """

    name: str
    architecture: Callable[[Mapping[str, Any]], Any]
    recognise: Callable[[Mapping[str, Any]], bool]
    kind: str = "restorer"
    title: str = ""
    description: str = ""
    infer_config: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    accepts_config: Callable[[Mapping[str, Any]], bool] | None = None
    input_size: int | str = 512
    output_size: int | str | None = None
    normalization: Normalization = Normalization()
    precisions: tuple[str, ...] = PRECISIONS
    exportable: bool = True
    variants: tuple[WeightsVariant, ...] = ()
    default_tag: str | None = None
    component: Callable[..., Any] | None = None
    carries: Mapping[str, NetworkCard] = field(default_factory=dict)
    uses: tuple[str, ...] = ()
    rank: int | None = None
    training: Training | None = None
    tiny_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in CARD_KINDS:
            raise ValueError(f"network card {self.name!r}: kind must be one of {', '.join(CARD_KINDS)}")
        if self.kind != "restorer" and self.component is None:
            raise ValueError(f"network card {self.name!r}: a {self.kind} card needs a component factory")
        unknown = set(self.precisions) - set(PRECISIONS)
        if unknown:
            raise ValueError(f"network card {self.name!r}: unknown precisions {', '.join(sorted(unknown))}")
        tags = [variant.tag for variant in self.variants]
        if len(set(tags)) != len(tags):
            raise ValueError(f"network card {self.name!r}: variant tags repeat: {', '.join(tags)}")
        if self.default_tag is not None and self.default_tag not in tags:
            raise ValueError(f"network card {self.name!r}: default tag {self.default_tag!r} is not a variant")
        if not self.title:
            object.__setattr__(self, "title", self.name)

    @property
    def default_variant(self) -> WeightsVariant | None:
        if not self.variants:
            return None
        return self.variant(self.default_tag) if self.default_tag else self.variants[0]

    def variant(self, tag: str) -> WeightsVariant:
        for variant in self.variants:
            if variant.tag == tag:
                return variant
        raise KeyError(f"{self.name} has no variant {tag!r}; tags: {', '.join(v.tag for v in self.variants)}")

    def component_names(self, variant: WeightsVariant) -> tuple[str, ...]:
        """The names the variant's component answers to; the first is its listed name."""
        timm_style = f"{self.name}.{variant.tag}"
        default = variant is self.default_variant
        names = [*variant.names, self.name if default else timm_style, timm_style]
        return tuple(dict.fromkeys(names))

    def size(self, config: Mapping[str, Any], which: str = "input") -> int:
        """The face size in pixels for ``config``: ``which`` is ``input`` or ``output``."""
        value = self.output_size if which == "output" and self.output_size is not None else self.input_size
        return int(config[value]) if isinstance(value, str) else int(value)

    def weights_entries(self) -> list[WeightsEntry]:
        """The registry entries this card declares (variants may name others instead)."""
        return [variant.weights for variant in self.variants if isinstance(variant.weights, WeightsEntry)]

    @property
    def train_command(self) -> str | None:
        if self.training is None:
            return None
        return self.training.command or self.name
