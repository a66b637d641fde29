"""Choosing and building the components of one invocation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from facefix import plugins
from facefix.components import ComponentContext, ComponentSpec
from facefix.errors import ComponentError, FacefixError
from facefix.weights import WeightsResolver, get_entry

#: When a kind isn't chosen on the command line, the first of these that is
#: registered and has its weights on disk wins; failing that, the first registered
#: (its weights are then downloaded). Names only: the core imports no plugin.
DEFAULT_PREFERENCE = {
    # the bundled RetinaFace ships inside facefix: the offline fallback when the facexlib files are absent
    "detector": ("retinaface_resnet50", "retinaface_mobile0.25", "retinaface_bundled", "yunet"),
    "parser": ("parsenet", "bisenet"),
    # compact's weights ship inside facefix, so a fresh offline install still restores
    "restorer": ("gfpgan", "compact", "passthrough"),
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


def assemble(
    *,
    detector: str | None = None,
    parser: str | None = None,
    restorer: str | None = None,
    blender: str | None = None,
    aligned: bool = False,
    device: str = "auto",
    model_dir: Path | None = None,
    weights_path: Path | None = None,
    parser_weights_path: Path | None = None,
    fidelity: float | None = None,
    backend: str = "auto",
    precision: str = "fp32",
    onnx_path: Path | None = None,
    detection_threshold: float | None = None,
    quiet: bool = False,
    note: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[str], str]:
    """Choose and build the components of a restore (or video) run from command-line choices.

    Returns the built components by kind (``restorer`` always; ``detector`` and ``blender``
    unless ``aligned``; ``parser`` when chosen or needed), a description of each for the
    user, and the torch device. ``parser="none"`` forbids a parser. Raises FacefixError.
    """
    from facefix.backends import apply_backend
    from facefix.inference import select_device
    from facefix.weights import default_cache_dir

    if parser_weights_path is not None and parser in (None, "none"):
        raise FacefixError("--parser-weights needs --parser NAME (the parser those weights belong to)")
    # "parser": a restorer with its own parser (PSFR-GAN) uses the one chosen on the command line instead
    options = {"detection_threshold": detection_threshold, "fidelity": fidelity, "onnx": onnx_path,
               "parser": parser if parser != "none" else None}
    torch_device = select_device(device)
    resolver = WeightsResolver(model_dir=model_dir, progress=not quiet)
    restorer_spec = choose("restorer", restorer, resolver)
    built: dict[str, Any] = {
        "restorer": build(restorer_spec, device=torch_device, resolver=resolver, weights_path=weights_path,
                          options=options)
    }
    chosen = [f"restorer {restorer_spec.name}"]
    first_choice = DEFAULT_PREFERENCE["restorer"][0]
    if restorer is None and restorer_spec.name == "passthrough" and not quiet:
        note("facefix: note: no restoring network has its weights on disk, so faces pass through "
             "unchanged; get one with `facefix weights download gfpgan-v1.4` or choose --restorer")
    elif restorer is None and restorer_spec.name != first_choice and not quiet:
        note(f"facefix: note: {first_choice}'s weights are not on disk, so {restorer_spec.name} restores; "
             f"for {first_choice} run `facefix weights download gfpgan-v1.4` or pass --model-dir")
    if restorer_spec.name != "onnx":
        built["restorer"], how = apply_backend(built["restorer"], backend, precision, torch_device, onnx_path,
                                               default_cache_dir().parent / "onnx", warn=note)
        if how:
            chosen[0] += f" ({how})"
    elif hasattr(built["restorer"], "provider"):
        chosen[0] += f" (onnxruntime {built['restorer'].provider})"
    if not aligned:
        for kind, name in (("detector", detector), ("blender", blender)):
            spec = choose(kind, name, resolver)
            built[kind] = build(spec, device=torch_device, resolver=resolver, options=options)
            chosen.append(f"{kind} {spec.name}")
    needs_parsing = getattr(built["restorer"], "needs_parsing", False) or (
        not aligned and getattr(built.get("blender"), "needs_parsing", False)
    )
    if parser == "none":
        if needs_parsing:
            raise FacefixError("--parser none, but the chosen restorer or blender needs parsing maps")
    elif parser is not None or needs_parsing:
        spec = choose("parser", parser, resolver)
        built["parser"] = build(spec, device=torch_device, resolver=resolver, weights_path=parser_weights_path,
                                options=options)
        chosen.append(f"parser {spec.name}")
    return built, chosen, torch_device
