"""Choosing and building the components of one invocation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facefix import plugins
from facefix.components import ComponentContext, ComponentSpec
from facefix.errors import ComponentError
from facefix.weights import WeightsResolver, get_entry

#: When a kind isn't chosen on the command line, the first of these that is
#: registered and has its weights on disk wins; failing that, the first registered
#: (its weights are then downloaded). Names only: the core imports no plugin.
DEFAULT_PREFERENCE = {
    "detector": ("retinaface_resnet50", "retinaface_mobile0.25", "yunet"),
    "parser": ("parsenet", "bisenet"),
    "restorer": ("gfpgan", "passthrough"),
    "blender": ("soft",),
}


def weights_available(spec: ComponentSpec, resolver: WeightsResolver) -> bool:
    """True when every weights file the component names is already on disk."""
    for name in spec.weights:
        try:
            entry = get_entry(name)
        except Exception:
            return False
        if resolver.find_local(entry) is None:
            return False
    return True


def choose(kind: str, name: str | None, resolver: WeightsResolver) -> ComponentSpec:
    """The spec for ``name``, or the default for ``kind`` when ``name`` is None."""
    if name is not None:
        return plugins.get_component(kind, name)
    registered = plugins.components(kind)
    preferred = [registered[n] for n in DEFAULT_PREFERENCE.get(kind, ()) if n in registered]
    ordered = preferred + [spec for n, spec in sorted(registered.items()) if spec not in preferred]
    if not ordered:
        raise ComponentError(f"no {kind} is registered: install a plugin that provides one")
    for spec in ordered:
        if weights_available(spec, resolver):
            return spec
    return ordered[0]


def build(spec: ComponentSpec, *, device: str, resolver: WeightsResolver, weights_path: Path | None = None,
          options: dict[str, Any] | None = None) -> Any:
    context = ComponentContext(
        device=device,
        resolve_weights=resolver.resolve,
        weights_path=weights_path,
        options=dict(options or {}),
    )
    return spec.build(context)
