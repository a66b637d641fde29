"""The plugin manager and the registry of what plugins provide.

Every plugin, the built-in ones under ``plugins/`` included, is a module named in the
``facefix`` entry-point group. Built-ins are those whose distribution is facefix itself;
``FACEFIX_LOAD_PLUGINS`` (comma-separated entry-point names) restricts which *other*
plugins load. A plugin that fails to import or to register, or that implements a hook
facefix doesn't have (a misspelt name), gives one warning line naming it, and
everything else keeps working.

Components come from the ``register_*`` hooks and from network cards
(``register_networks``): a card becomes one component per weights variant.
"""

from __future__ import annotations

import difflib

import importlib.metadata
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import pluggy

from facefix import hookspecs
from facefix.cards import NetworkCard, WeightsVariant
from facefix.components import KINDS, ComponentContext, ComponentSpec
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
    "upsampler": "register_upsamplers",
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

    def distribution(entry_point: importlib.metadata.EntryPoint) -> str:
        dist = entry_point.dist
        return (dist.metadata["Name"] if dist is not None else None) or "?"

    def is_builtin(entry_point: importlib.metadata.EntryPoint) -> bool:
        return distribution(entry_point).lower() == BUILTIN_DISTRIBUTION

    # built-ins first, whatever order the environment lists distributions in: they win
    # every clash of names (components, cards, commands) against later plugins
    entry_points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: not is_builtin(e))
    for entry_point in entry_points:
        dist, dist_name, builtin = entry_point.dist, distribution(entry_point), is_builtin(entry_point)
        if not builtin and allowed is not None and entry_point.name not in allowed:
            continue
        if pm.has_plugin(entry_point.name):
            if not builtin and entry_point.name in _builtin_names:
                warn(f"plugin {entry_point.name!r} ({dist_name}) not loaded: a built-in plugin has that name")
            continue
        try:
            module = entry_point.load()
            pm.register(module, name=entry_point.name)
        except (Exception, SystemExit) as error:  # a broken plugin must not take the CLI down, sys.exit() included
            what = f"SystemExit({error.code!r})" if isinstance(error, SystemExit) else type(error).__name__
            warn(f"plugin {entry_point.name!r} ({dist_name}) failed to load: {what}: {error}")
            continue
        unknown = unknown_hooks(module)
        if unknown:
            pm.unregister(name=entry_point.name)
            warn(f"plugin {entry_point.name!r} ({dist_name}) failed to load: {unknown}")
            continue
        if builtin:
            _builtin_names.add(entry_point.name)
        _distributions[entry_point.name] = f"{dist_name} {dist.version if dist else ''}".strip()


def unknown_hooks(plugin: object) -> str:
    """'' when every hook ``plugin`` implements is a facefix hook, else what is wrong.

    pluggy's ``check_pending``, narrowed to one plugin so the message can name it: a
    misspelt ``register_restorer`` would otherwise be silently never called.
    """
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        if error.plugin is plugin:
            known = ", ".join(name for name in dir(hookspecs) if name.startswith("register_"))
            names = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if not caller.has_spec())
            return f"{', '.join(names)} {'is not a facefix hook' if len(names) == 1 else 'are not facefix hooks'} " \
                   f"(the hooks are {known})"
    return ""


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
        except (Exception, SystemExit) as error:
            warn(f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(error).__name__}: {error}")
            continue
        results.append((impl.plugin_name, result))
    return results


def card_registrations() -> list[tuple[str, NetworkCard]]:
    """``(plugin name, card)`` for every registered network card, built-ins first; a
    later card of an already registered kind and name is ignored, with a warning."""
    found: list[tuple[str, NetworkCard]] = []
    owners: dict[tuple[str, str], str] = {}
    current_plugin = [""]

    def register(card: NetworkCard) -> None:
        if not isinstance(card, NetworkCard):
            raise TypeError(f"register() wants a facefix.NetworkCard, got {type(card).__name__}")
        key = (card.kind, card.name)
        if key in owners:
            warn(f"{card.kind} network {card.name!r} from plugin {current_plugin[0]!r} ignored: "
                 f"already registered by {owners[key]!r}")
            return
        owners[key] = current_plugin[0]
        found.append((current_plugin[0], card))

    load_plugins()
    for impl in reversed(pm.hook.register_networks.get_hookimpls()):  # built-ins first, as for components
        current_plugin[0] = impl.plugin_name
        try:
            impl.function(register)
        except (Exception, SystemExit) as error:
            warn(f"plugin {impl.plugin_name!r} failed to register networks: {type(error).__name__}: {error}")
    return found


def cards(kind: str | None = None) -> list[NetworkCard]:
    """Every registered network card (of ``kind``, if given)."""
    return [card for _, card in card_registrations() if kind is None or card.kind == kind]


def _card_factory(card: NetworkCard, variant: WeightsVariant | None, name: str) -> Callable[[ComponentContext], Any]:
    def build(context: ComponentContext) -> Any:
        from facefix.networks import build_component  # torch loads only when a network is built

        return build_component(card, variant, name, context)

    return build


def card_specs(card: NetworkCard, plugin: str = "") -> list[ComponentSpec]:
    """The components a card provides: one per weights variant (``NAME``, ``NAME.TAG``,
    older names), or one named ``NAME`` that needs ``--weights`` when nothing is released."""
    if not card.variants:
        return [ComponentSpec(kind=card.kind, name=card.name, factory=_card_factory(card, None, card.name),
                              description=card.description, weights=card.uses, plugin=plugin, card=card)]
    specs = []
    for variant in card.variants:
        name, *aliases = card.component_names(variant)
        default = variant is card.default_variant
        specs.append(ComponentSpec(
            kind=card.kind, name=name, factory=_card_factory(card, variant, name),
            description=variant.description or card.description,
            weights=tuple(dict.fromkeys((variant.weights_name, *card.uses))), plugin=plugin,
            rank=card.rank if default else None, aliases=tuple(aliases), card=card, tag=variant.tag,
        ))
    return specs


def _collect(kind: str) -> dict[str, ComponentSpec]:
    specs: dict[str, ComponentSpec] = {}
    registered: list[ComponentSpec] = []  # every registration, then added built-ins first
    current_plugin = [""]

    def accept(spec: ComponentSpec) -> None:
        taken = next((name for name in (spec.name, *spec.aliases) if find(specs, name) is not None), None)
        if taken is not None:
            owner = find(specs, taken)
            warn(f"{kind} {spec.name!r} from plugin {spec.plugin!r} ignored: {taken!r} is already registered "
                 f"by {owner.plugin!r}")
            return
        specs[spec.name] = spec

    def register(
        name: str,
        factory: Callable[..., Any],
        description: str = "",
        weights: tuple[str, ...] | list[str] = (),
        rank: int | None = None,
        aliases: tuple[str, ...] | list[str] = (),
    ) -> None:
        registered.append(ComponentSpec(kind=kind, name=name, factory=factory, description=description,
                                        weights=tuple(weights), plugin=current_plugin[0], rank=rank,
                                        aliases=tuple(aliases)))

    load_plugins()
    # pluggy calls implementations newest-registered first; reversed, built-ins (loaded first) come first
    for impl in reversed(getattr(pm.hook, _HOOK_FOR_KIND[kind]).get_hookimpls()):
        current_plugin[0] = impl.plugin_name
        try:
            impl.function(register)
        except (Exception, SystemExit) as error:
            warn(f"plugin {impl.plugin_name!r} failed to register {kind}s: {type(error).__name__}: {error}")
    for plugin, card in card_registrations():
        if card.kind == kind:
            registered.extend(card_specs(card, plugin))
    # a third-party 'compact' or 'PassThrough' (component or card) never replaces a built-in
    for spec in sorted(registered, key=lambda spec: spec.plugin not in _builtin_names):
        accept(spec)
    return specs


def find(specs: dict[str, ComponentSpec], name: str) -> ComponentSpec | None:
    """The spec registered as ``name`` or answering to it as an alias; in any letter case
    (``--restorer GFPGAN``) when no name matches exactly."""
    if name in specs:
        return specs[name]
    exact = next((spec for spec in specs.values() if name in spec.aliases), None)
    if exact is not None:
        return exact
    folded = name.casefold()
    return next((spec for spec in specs.values()
                 if folded in (spec.name.casefold(), *(alias.casefold() for alias in spec.aliases))), None)


def components(kind: str) -> dict[str, ComponentSpec]:
    """Every registered component of one kind, by name."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
    return _collect(kind)


def get_component(kind: str, name: str) -> ComponentSpec:
    """One component by name, or a :class:`ComponentError` listing the choices."""
    available = components(kind)
    spec = find(available, name)
    if spec is None:
        choices = ", ".join(sorted(available)) or "none registered"
        close = difflib.get_close_matches(name.casefold(), [key.casefold() for key in available], n=1, cutoff=0.6)
        hint = f"; did you mean {next(key for key in available if key.casefold() == close[0])!r}?" if close else ""
        raise ComponentError(f"unknown {kind} {name!r}{hint}; available: {choices}")
    return spec


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
