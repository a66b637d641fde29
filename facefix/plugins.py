"""The plugin manager: built-in and third-party plugins load the same way.

Every plugin, the built-in ones under ``plugins/`` included, is a module named in the
``facefix`` entry-point group. Built-ins are those whose distribution is facefix itself;
``FACEFIX_LOAD_PLUGINS`` (comma-separated entry-point names) restricts which *other*
plugins load. A plugin that fails to import or to register gives one warning line
naming it, and everything else keeps working.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import pluggy

from facefix import hookspecs
from facefix.components import KINDS, ComponentSpec
from facefix.errors import ComponentError

ENTRY_POINT_GROUP = "facefix"
BUILTIN_DISTRIBUTION = "facefix"

pm = pluggy.PluginManager("facefix")
pm.add_hookspecs(hookspecs)

_loaded = False
_builtin_names: set[str] = set()
_distributions: dict[str, str] = {}  # plugin name -> "dist version"
_warned: set[str] = set()

_HOOK_FOR_KIND = {
    "detector": "register_detectors",
    "parser": "register_parsers",
    "restorer": "register_restorers",
    "blender": "register_blenders",
}


def warn(message: str) -> None:
    """One line on stderr; repeated messages are shown once per process."""
    if message not in _warned:
        _warned.add(message)
        print(f"facefix: warning: {message}", file=sys.stderr)


def _allowed_third_party() -> set[str] | None:
    value = os.environ.get("FACEFIX_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def load_plugins() -> None:
    """Load every entry point in the ``facefix`` group (once per process)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    allowed = _allowed_third_party()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        builtin = dist_name is not None and dist_name.lower() == BUILTIN_DISTRIBUTION
        if not builtin and allowed is not None and entry_point.name not in allowed:
            continue
        if pm.has_plugin(entry_point.name):
            continue
        try:
            module = entry_point.load()
            pm.register(module, name=entry_point.name)
        except Exception as error:  # a broken plugin must not take the CLI down
            warn(f"plugin {entry_point.name!r} ({dist_name}) failed to load: {type(error).__name__}: {error}")
            continue
        if builtin:
            _builtin_names.add(entry_point.name)
        _distributions[entry_point.name] = f"{dist_name} {dist.version if dist else ''}".strip()


def call_each(hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call one hook implementation at a time so a failure is pinned on its plugin.

    Returns ``(plugin name, result)`` pairs for the implementations that succeeded.
    """
    load_plugins()
    results = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        argnames = impl.argnames
        try:
            result = impl.function(*[kwargs[name] for name in argnames])
        except Exception as error:
            warn(f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(error).__name__}: {error}")
            continue
        results.append((impl.plugin_name, result))
    return results


def _collect(kind: str) -> dict[str, ComponentSpec]:
    specs: dict[str, ComponentSpec] = {}
    current_plugin = [""]

    def register(
        name: str,
        factory: Callable[..., Any],
        description: str = "",
        weights: tuple[str, ...] | list[str] = (),
    ) -> None:
        if name in specs:
            warn(
                f"{kind} {name!r} from plugin {current_plugin[0]!r} ignored: "
                f"already registered by {specs[name].plugin!r}"
            )
            return
        specs[name] = ComponentSpec(
            kind=kind,
            name=name,
            factory=factory,
            description=description,
            weights=tuple(weights),
            plugin=current_plugin[0],
        )

    load_plugins()
    # pluggy calls implementations newest-registered first; reverse so that built-ins
    # (loaded first) win name clashes against later plugins.
    for impl in reversed(getattr(pm.hook, _HOOK_FOR_KIND[kind]).get_hookimpls()):
        current_plugin[0] = impl.plugin_name
        try:
            impl.function(register)
        except Exception as error:
            warn(f"plugin {impl.plugin_name!r} failed to register {kind}s: {type(error).__name__}: {error}")
    return specs


def components(kind: str) -> dict[str, ComponentSpec]:
    """Every registered component of one kind, by name."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
    return _collect(kind)


def get_component(kind: str, name: str) -> ComponentSpec:
    """One component by name, or a :class:`ComponentError` listing the choices."""
    available = components(kind)
    if name not in available:
        choices = ", ".join(sorted(available)) or "none registered"
        raise ComponentError(f"unknown {kind} {name!r}; available: {choices}")
    return available[name]


@dataclass(frozen=True)
class PluginInfo:
    name: str
    builtin: bool
    distribution: str
    hooks: tuple[str, ...]


def plugin_infos() -> list[PluginInfo]:
    """Every registered plugin with the hooks it implements."""
    load_plugins()
    infos = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or []))
        infos.append(
            PluginInfo(
                name=name,
                builtin=name in _builtin_names,
                distribution=_distributions.get(name, ""),
                hooks=hooks,
            )
        )
    return sorted(infos, key=lambda info: (not info.builtin, info.name))
