"""The component options ``restore``, ``video`` and ``eval`` share, gathered into objects.

:func:`component_options` adds the options and hands the command two typed objects
instead of twenty loose values: ``selection`` (a
:class:`~facefix.compose.ComponentSelection`: which components run, and how) and
``faces`` (a :class:`~facefix.pipeline.FaceOptions`: which faces, and how they go
back). ``quiet`` stays a plain value. :func:`selection_options` adds a subset of the
selection's options, for commands that build only some components (``eval``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from facefix.cli.types import FiniteFloat, InputFile, TileSize
from facefix.compose import ComponentSelection

def _option(*decls: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return decls, kwargs


#: ComponentSelection field -> its option (declarations, click keyword arguments)
SELECTION_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "detector": _option("--detector", help="Face detector (default: retinaface_resnet50 or retinaface_mobile0.25 "
                                                "when facexlib's files are on disk, else retinaface_bundled, "
                                                "which ships with facefix)."),
    "parser": _option("--parser", help="Face parser, or 'none' (default: only when a component needs one)."),
    "restorer": _option("--restorer", help="Face restorer (see `facefix plugins`; default: gfpgan when its "
                                                "weights are on disk, else compact, which ships with facefix; "
                                                "with --weights, the network the file holds)."),
    "blender": _option("--blender", default=None,
                            help="Paste-back blender: soft, parse (face classes; needs a parser), poisson (seamless, but pulls "
                                 "the surrounding colour into the face), ... (default: soft)."),
    "device": _option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
                      help="Where the networks run (auto: CUDA when torch sees a GPU)."),
    "model_dir": _option("--model-dir", type=click.Path(file_okay=False, path_type=Path),
                              envvar="FACEFIX_MODEL_DIR",
                              help="Folder with weights files, used as given (also FACEFIX_MODEL_DIR)."),
    "weights": _option("--weights", type=InputFile(exists=False, path_type=Path),
                            help="Weights file for the restorer; without --restorer, its network is read from the file."),
    "parser_weights": _option("--parser-weights", type=InputFile(exists=False, path_type=Path),
                                   help="Weights file for the parser (e.g. one trained with "
                                        "`facefix train psfrgan-parse`)."),
    "fidelity": _option("-w", "--fidelity", type=FiniteFloat(0, 1), default=None,
                             help="Restorers that support it: 0 = strongest restoration, 1 = most faithful "
                                  "conditioning (default: the network's own: 1 for GFP-GAN, MMRB and CFGPFSSR, "
                                  "0.5 for CodeFormer)."),
    "backend": _option("--backend", type=click.Choice(["auto", "torch", "compile", "onnx"]), default="auto",
                            show_default=True,
                            help="How the restorer, the parser and the background upsampler run: auto = the fastest exact "
                                 "path for the device (onnxruntime on CPU, exported on first use and cached; PyTorch on "
                                 "GPU); compile = the restorer compiled once with AOTInductor and cached (with "
                                 "--precision bf16: 2.7x faster on a CPU with bf16, within 3 levels)."),
    "precision": _option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
                              show_default=True, help="Arithmetic precision for the torch and compile backends."),
    "onnx": _option("--onnx", type=InputFile(path_type=Path),
                         help="ONNX file for --backend onnx or --restorer onnx."),
    "upsampler": _option("--bg-upsampler", "--bg_upsampler", "upsampler", default=None,
                         help="Background upsampler, e.g. realesrgan-x2plus or realesr-animevideov3 (see `facefix "
                              "plugins`); runs when --upscale enlarges the image. Default: none (Lanczos)."),
    "upsampler_tile": _option("--bg-tile", "upsampler_tile", type=TileSize(), default=400,
                              show_default=True,
                              help="The background upsampler's tile size in input pixels, 0 = the whole image at "
                                   "once (tiles overlap, so the result is the same; smaller tiles need less memory)."),
    "threads": _option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
                       help="CPU threads for torch, OpenCV and onnxruntime; 0: for torch and OpenCV the CPUs "
                            "this process may use (its affinity and cgroup quota, not the machine's cores), "
                            "onnxruntime its own default. Give 1 or 2 when running several facefix "
                            "processes side by side."),
    "detection_threshold": _option("--detection-threshold", type=FiniteFloat(0, 1), default=None,
                                        help="Detector confidence threshold (default: the detector's own, 0.97 for the bundled "
                                             "RetinaFace, 0.8 for facexlib's)."),
}
#: FaceOptions field -> its option
FACE_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "upscale": _option("-s", "--upscale", type=FiniteFloat(min=0.05, max=16), default=1.0, show_default=True,
                            help="Scale of the output image; faces are pasted at the matching scale."),
    "batch_size": _option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
                               help="Faces per restorer batch (faces from several images share a batch)."),
    "only_center_face": _option("--only-center-face", is_flag=True,
                                     help="Restore only the face nearest the image centre."),
    "largest_face": _option("--largest-face", is_flag=True, help="Restore only the largest face."),
    "min_face_size": _option("--min-face-size", type=FiniteFloat(min=0), default=0, show_default=True,
                                  help="Skip faces whose box is smaller than this many pixels."),
    "max_face_size": _option("--max-face-size", type=FiniteFloat(min=0), default=0, show_default=True,
                                  help="Leave faces whose box is larger than this many pixels as they are "
                                       "(clean close-ups need no restoring; 0: no limit)."),
    "color_match": _option("--color-match/--no-color-match", default=True, show_default=True,
                                help="Give each restored face the original's colour (Lab mean; a/b spread) so "
                                     "the restorer adds no tint and keeps the photo's cast; its contrast stays."),
    "blend": _option("--blend", type=FiniteFloat(0, 1), default=1.0, show_default=True,
                          help="Mix each restored face with the original before paste-back (facefusion's "
                               "enhancer blend): 1 = restored only, 0 = the original face."),
    "keep_detail": _option("--keep-detail/--no-keep-detail", default=True, show_default=True,
                                help="A face larger than the restorer's output keeps its own detail finer than "
                                     "the network's crop (brows, lashes, skin texture), which the network can't "
                                     "restore and would otherwise smooth away."),
}
QUIET_OPTION = click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes (errors are still shown).")
#: The order ``--help`` lists them in.
_ORDER = ("detector", "parser", "restorer", "blender", "upscale", "device", "model_dir", "weights", "parser_weights",
          "fidelity", "backend", "precision", "onnx", "threads", "batch_size", "only_center_face", "largest_face",
          "min_face_size", "max_face_size", "detection_threshold", "color_match", "blend", "keep_detail", "upsampler", "upsampler_tile")


def _gather(command: Callable[..., Any], selection_fields: tuple[str, ...], with_faces: bool,
            help_texts: dict[str, str] | None = None) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(**values: Any) -> Any:
        selection = ComponentSelection(**{name: values.pop(name) for name in selection_fields})
        if with_faces:
            from facefix.pipeline import FaceOptions

            values["faces"] = FaceOptions(**{name: values.pop(name) for name in FACE_OPTIONS})
        return command(selection=selection, **values)

    decorated = wrapper
    fields = [name for name in _ORDER if name in selection_fields or (with_faces and name in FACE_OPTIONS)]
    decorated = QUIET_OPTION(decorated)
    specs = {**SELECTION_OPTIONS, **FACE_OPTIONS}
    for name in reversed(fields):
        decls, kwargs = specs[name]
        if help_texts and name in help_texts:
            kwargs = {**kwargs, "help": help_texts[name]}
        decorated = click.option(*decls, **kwargs)(decorated)
    return decorated


def component_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every component and face option; the command gets ``selection``, ``faces`` and ``quiet``."""
    return _gather(command, tuple(SELECTION_OPTIONS), with_faces=True)


def selection_options(*fields: str, help_texts: dict[str, str] | None = None
                      ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Some of the selection's options (and ``--quiet``); the command gets ``selection`` and
    ``quiet``. ``help_texts`` words an option's help for this command."""
    unknown = set(fields) - set(SELECTION_OPTIONS)
    if unknown:
        raise ValueError(f"not selection options: {', '.join(sorted(unknown))}")
    return lambda command: _gather(command, fields, with_faces=False, help_texts=help_texts)


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--engine`` and Ray's placement options; the command gets ``engine`` (an
    :class:`~facefix.distributed.EngineOptions`)."""
    @functools.wraps(command)
    def wrapper(**values: Any) -> Any:
        from facefix.distributed import EngineOptions

        engine = EngineOptions(engine=values.pop("engine"), address=values.pop("address"),
                               actors=values.pop("actors"), num_cpus=values.pop("num_cpus"),
                               num_gpus=values.pop("num_gpus"))
        return command(engine=engine, **values)

    decorated = wrapper
    for decls, kwargs in reversed([
        _option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                help="local: this process. ray: the same pipeline on a Ray cluster (the ray extra).",),
        _option("--address", default=None,
                help="--engine ray: an existing cluster (e.g. ray://head:10001, or 'auto'); default: start a "
                     "local one."),
        _option("--actors", type=click.IntRange(min=1), default=1, show_default=True,
                help="--engine ray: restorer actors (each loads the networks once)."),
        _option("--num-cpus", type=FiniteFloat(min=0), default=1.0, show_default=True,
                help="--engine ray: CPUs each restorer actor reserves."),
        _option("--num-gpus", type=FiniteFloat(min=0), default=0.0, show_default=True,
                help="--engine ray: GPUs each restorer actor reserves (fractions share a GPU)."),
    ]):
        decorated = click.option(*decls, **kwargs)(decorated)
    return decorated

