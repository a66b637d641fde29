"""Choosing and building the components of one invocation.

The command line gives a :class:`ComponentSelection` (built once, shared by
``restore``, ``video`` and ``eval``); :func:`assemble` turns it into working
components. Where a kind isn't named, the registered component with the best
``rank`` whose weights are on disk is chosen, else the best-ranked one (its weights are
then downloaded). ``--weights FILE`` without ``--restorer`` picks the network card that
recognises the file. The core names no plugin: ranks and cards come from the plugins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from facefix import plugins
from facefix.components import ComponentContext, ComponentSpec
from facefix.errors import ComponentError, FacefixError, WeightsError, one_line
from facefix.threads import use_threads
from facefix.weights import WeightsResolver, get_entry


@dataclass(frozen=True)
class ComponentSelection:
    """Which components run and how: one object from the command line to the factories."""

    detector: str | None = None
    parser: str | None = None  # "none" forbids a parser
    restorer: str | None = None
    blender: str | None = None
    weights: Path | None = None  # the restorer's weights file
    parser_weights: Path | None = None
    model_dir: Path | None = None
    device: str = "auto"
    backend: str = "auto"
    precision: str = "fp32"
    onnx: Path | None = None
    fidelity: float | None = None
    detection_threshold: float | None = None
    upsampler: str | None = None  # the background upsampler; None: the background is resized
    upsampler_tile: int = 400  # its tiles, in input pixels (0: the whole image at once)
    threads: int = 0  # CPU threads of torch, OpenCV and onnxruntime (0: the CPUs this process may use)

    @property
    def chosen_parser(self) -> str | None:
        """The parser named on the command line (None for none named, or ``none``)."""
        return None if self.parser in (None, "none") else self.parser


@dataclass
class Assembly:
    """The built components of a run, by kind, and what the user is told about them."""

    components: dict[str, Any]
    chosen: list[str]
    device: str
    names: dict[str, str] = field(default_factory=dict)  # kind -> component name, for :func:`rebuild`

    def get(self, kind: str) -> Any:
        return self.components.get(kind)

    def describe(self) -> str:
        return f"facefix: {', '.join(self.chosen)} on {self.device}"


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


def ranked(kind: str) -> list[ComponentSpec]:
    """Every registered component of ``kind``: ranked ones by rank, then the rest by name."""
    registered = plugins.components(kind).values()
    order = sorted(registered, key=lambda spec: (spec.rank is None, spec.rank or 0, spec.name))
    return order


def choose(kind: str, name: str | None, resolver: WeightsResolver) -> ComponentSpec:
    """The spec for ``name``, or the default for ``kind`` when ``name`` is None."""
    if name is not None:
        return plugins.get_component(kind, name)
    ordered = ranked(kind)
    if not ordered:
        raise ComponentError(f"no {kind} is registered: install a plugin that provides one")
    # unranked components run only when named (the anime upsampler must not enlarge photos
    # because its file happens to be on disk), unless none of the kind has a rank
    ordered = [spec for spec in ordered if spec.rank is not None] or ordered
    for spec in ordered:
        if weights_available(spec, resolver):
            return spec
    return ordered[0]


def detect_component(path: Path, kind: str = "restorer") -> ComponentSpec:
    """The component (a restorer, or another card kind) of the network card that recognises
    the weights file ``path``.

    Only key names are read (the file is memory-mapped), so detection costs next to
    nothing before the chosen network loads the file for real.
    """
    from facefix.checkpoints import read_checkpoint
    from facefix.networks import recognises

    checkpoint = read_checkpoint(path, mmap=True)
    # one candidate per card: its default variant (the file decides the architecture)
    candidates = [spec for spec in plugins.components(kind).values()
                  if spec.card is not None and (spec.tag is None or spec.tag == spec.card.default_variant.tag)]
    matches = [spec for spec in candidates if recognises(spec.card, checkpoint)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(sorted(spec.name for spec in matches))
        raise FacefixError(f"{path}: recognised by several {kind}s ({names}): choose one with --{kind}")
    others = [card for card in plugins.cards() if card.kind != kind and recognises(card, checkpoint)]
    hint = (f"; it holds a {others[0].kind} ({others[0].name}): use it with --{others[0].kind} {others[0].name} "
            f"--{others[0].kind}-weights" if others else f"; name its network with --{kind}")
    raise FacefixError(f"{path}: no registered {kind} recognises these weights{hint}")


def build(spec: ComponentSpec, *, device: str, resolver: WeightsResolver,
          selection: ComponentSelection = ComponentSelection(), weights_path: Path | None = None,
          note: Callable[[str], None] | None = None) -> Any:
    """Build one component, its context filled from the selection; ``note`` hears of an
    option the component ignores (``--fidelity`` given to a restorer without one)."""
    context = ComponentContext(
        device=device,
        resolve_weights=resolver.resolve,
        weights_path=weights_path,
        fidelity=selection.fidelity,
        detection_threshold=selection.detection_threshold,
        onnx_path=selection.onnx,
        parser=selection.chosen_parser,
        parser_weights=selection.parser_weights,
        tile=selection.upsampler_tile,
    )
    component = spec.build(context)
    if note is not None and spec.kind == "restorer" and selection.fidelity is not None and not context.fidelity_read:
        note(f"facefix: note: {spec.name} has no fidelity setting: --fidelity {selection.fidelity:g} is ignored")
    return component


def _default_note(spec: ComponentSpec) -> str | None:
    """What to tell the user when the default restorer isn't the first choice."""
    first = ranked("restorer")[0]
    if spec is first:
        return None
    get = f"`facefix weights download {first.weights[0]}`" if first.weights else f"--restorer {first.name}"
    if not spec.weights:  # not a network: nothing with weights on disk could restore
        return (f"facefix: note: no restoring network has its weights on disk, so {spec.name} runs "
                f"({spec.description}); get one with {get} or choose --restorer")
    return (f"facefix: note: {first.name}'s weights are not on disk, so {spec.name} restores; "
            f"for {first.name} run {get} or pass --model-dir")


def licence_note(spec: ComponentSpec, weights_file: Path | None = None) -> str | None:
    """A line for a component whose weights may not be used commercially, else None. With
    ``weights_file`` (``--weights``), only when that file is the released one (by its
    SHA-256, or by its name where the release has no published digest): a user's own
    trained ``compact`` or ``psfrgan`` file is theirs, not the release's."""
    from facefix.weights import sha256_file

    restricted = []
    digest = None
    for name in spec.weights:
        try:
            entry = get_entry(name)
        except Exception:
            continue
        if "non-commercial" not in entry.license.lower() or entry.license in restricted:
            continue
        if weights_file is not None:
            if entry.sha256 is None:
                if Path(weights_file).name != entry.filename:
                    continue
            else:
                try:
                    digest = digest or sha256_file(weights_file)
                except OSError:
                    continue
                if digest != entry.sha256:
                    continue
        restricted.append(entry.license)
    if not restricted:
        return None
    return f"facefix: note: {spec.name}'s weights are licensed {'; '.join(restricted)}"


def _silent(message: str) -> None:
    """The note of a --quiet run: nothing."""


def assemble(selection: ComponentSelection, *, aligned: bool = False, quiet: bool = False,
             note: Callable[[str], None] = print) -> Assembly:
    """Choose and build the components of a restore (or video) run.

    The result holds ``restorer`` always; ``detector`` and ``blender`` unless
    ``aligned``; ``parser`` when chosen or needed; ``upsampler`` when named (and not
    ``aligned``). Raises FacefixError.
    """
    from facefix.inference import select_device

    if selection.parser_weights is not None and selection.chosen_parser is None:
        raise FacefixError("--parser-weights needs --parser NAME (the parser those weights belong to)")
    use_threads(selection.threads)
    torch_device = select_device(selection.device)
    resolver = WeightsResolver(model_dir=selection.model_dir, progress=not quiet)
    if selection.restorer is None and selection.weights is not None:
        restorer_spec = detect_component(selection.weights)
        detected = f" [detected from {selection.weights.name}]"
    else:
        restorer_spec = choose("restorer", selection.restorer, resolver)
        detected = ""
    # The licence comes first and even under --quiet: it is what a user of restricted weights
    # must not miss. Every other note --quiet silences.
    messages = [licence_note(restorer_spec, selection.weights)]
    if not quiet and selection.restorer is None and selection.weights is None:
        messages.append(_default_note(restorer_spec))
    for message in messages:
        if message:
            note(message)
    ignored = note  # an option the chosen restorer ignores (--fidelity) is said even under --quiet
    if quiet:
        note = _silent
    restorer, how = _build_restorer(restorer_spec, selection, torch_device, resolver, ignored, note)
    built: dict[str, Any] = {"restorer": restorer}
    names = {"restorer": restorer_spec.name}
    chosen = [f"restorer {restorer_spec.name}{detected}" + (f" ({how})" if how else "")]
    if not aligned:
        for kind, name in (("detector", selection.detector), ("blender", selection.blender)):
            spec = choose(kind, name, resolver)
            built[kind] = build(spec, device=torch_device, resolver=resolver, selection=selection)
            names[kind] = spec.name
            chosen.append(f"{kind} {spec.name}")
        if selection.upsampler is not None:
            spec = plugins.get_component("upsampler", selection.upsampler)
            built["upsampler"], how = build_upsampler(spec, selection, torch_device, resolver, note)
            names["upsampler"] = spec.name
            chosen.append(f"upsampler {spec.name}" + (f" ({how})" if how else ""))
    needs_parsing = getattr(built["restorer"], "needs_parsing", False) or (
        not aligned and getattr(built.get("blender"), "needs_parsing", False)
    )
    if selection.parser == "none":
        if needs_parsing:
            raise FacefixError("--parser none, but the chosen restorer or blender needs parsing maps")
    elif selection.parser is not None or needs_parsing:
        spec = choose("parser", selection.parser, resolver)
        try:
            built["parser"], how = _build_parser(spec, selection, torch_device, resolver, note)
        except WeightsError as error:
            # Only the blender wanted a parser: paste with the default blender rather than fail
            # a run that can do without (offline, every parser needs a download).
            if selection.parser is not None or getattr(built["restorer"], "needs_parsing", False):
                raise
            fallback = choose("blender", None, resolver)
            built["blender"] = build(fallback, device=torch_device, resolver=resolver, selection=selection)
            if getattr(built["blender"], "needs_parsing", False):
                raise
            note(one_line(f"facefix: note: the {names['blender']} blender needs a face parser, and none is on "
                          f"disk: pasting with {fallback.name} instead ({error})"))
            chosen[chosen.index(f"blender {names['blender']}")] = f"blender {fallback.name}"
            names["blender"] = fallback.name
            return Assembly(built, chosen, torch_device, names)
        names["parser"] = spec.name
        chosen.append(f"parser {spec.name}" + (f" ({how})" if how else ""))
    return Assembly(built, chosen, torch_device, names)


def _build_restorer(spec: ComponentSpec, selection: ComponentSelection, device: str, resolver: WeightsResolver,
                    note: Callable[[str], None], backend_note: Callable[[str], None]) -> tuple[Any, str]:
    from facefix.backends import apply_backend
    from facefix.weights import default_cache_dir

    restorer = build(spec, device=device, resolver=resolver, selection=selection, weights_path=selection.weights,
                     note=note)
    return apply_backend(restorer, selection.backend, selection.precision, device, selection.onnx,
                         default_cache_dir().parent / "onnx", warn=backend_note)


def _build_parser(spec: ComponentSpec, selection: ComponentSelection, device: str, resolver: WeightsResolver,
                  note: Callable[[str], None]) -> tuple[Any, str]:
    from facefix.backends import parser_backend
    from facefix.weights import default_cache_dir

    parser = build(spec, device=device, resolver=resolver, selection=selection, weights_path=selection.parser_weights)
    return parser_backend(parser, selection.backend, device, default_cache_dir().parent / "onnx", warn=note)


def build_upsampler(spec: ComponentSpec, selection: ComponentSelection, device: str, resolver: WeightsResolver,
                    note: Callable[[str], None] = print, weights_path: Path | None = None) -> tuple[Any, str]:
    """The upsampler ``spec`` (from ``weights_path`` if given) on the selection's backend, and how it runs."""
    from facefix.upsamplers import upsampler_backend
    from facefix.weights import default_cache_dir

    upsampler = build(spec, device=device, resolver=resolver, selection=selection, weights_path=weights_path)
    return upsampler_backend(upsampler, selection.backend, device, default_cache_dir().parent / "onnx", warn=note)


def rebuild(selection: ComponentSelection, names: dict[str, str], kinds: tuple[str, ...]) -> dict[str, Any]:
    """Build again, in another process, the components :func:`assemble` chose (``Assembly.names``),
    only those of ``kinds``: a worker that detects needs no restorer. Quiet: the first
    assembly said everything worth saying."""
    from facefix.inference import select_device

    if selection.threads:  # else the engine's own sizing of its workers stands
        use_threads(selection.threads)
    device = select_device(selection.device)
    resolver = WeightsResolver(model_dir=selection.model_dir, progress=False)
    built: dict[str, Any] = {}
    for kind in kinds:
        if kind not in names:
            continue
        spec = choose(kind, names[kind], resolver)
        if kind == "restorer":
            built[kind], _ = _build_restorer(spec, selection, device, resolver, note=_silent, backend_note=_silent)
        elif kind == "upsampler":
            built[kind], _ = build_upsampler(spec, selection, device, resolver, note=lambda message: None)
        elif kind == "parser":
            built[kind], _ = _build_parser(spec, selection, device, resolver, note=lambda message: None)
        else:
            built[kind] = build(spec, device=device, resolver=resolver, selection=selection)
    return built
