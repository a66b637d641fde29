"""ONNX export of any restorer, and running exported or third-party models in onnxruntime.

onnxruntime-gpu silently falls back to the CPU when its CUDA libraries don't load;
:func:`create_session` asks for CUDA only when a GPU is wanted, and reports the
provider the session really uses.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facefix.atomic import atomic_path
from facefix.components import Normalization
from facefix.errors import ComponentError, brief
from facefix.threads import session_threads

INPUT_NAME = "input"
OUTPUT_NAME = "output"
#: An export's metadata key for the fidelity its ``weight`` input takes when none is given.
DEFAULT_FIDELITY_KEY = "facefix_default_fidelity"
DEFAULT_OPSET = 17


@contextlib.contextmanager
def _quiet_onnxruntime():
    """onnxruntime logs a multi-line error when the CUDA provider can't load: hide it,
    since :func:`create_session` reports the provider actually in use."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)
    try:
        yield
    finally:
        onnxruntime.set_default_logger_severity(2)


def _cuda_available() -> bool:
    import torch  # only to ask; running an ONNX model needs no torch

    return torch.cuda.is_available()


_SHARED_ARENA: list[bool] = []  # [registered?] once per process


def _share_cpu_arena() -> bool:
    """Register one CPU arena with onnxruntime's environment for sessions to share (once)."""
    import onnxruntime

    if not _SHARED_ARENA:
        try:
            info = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                             onnxruntime.OrtMemType.DEFAULT)
            onnxruntime.create_and_register_allocator(info, onnxruntime.OrtArenaCfg(0, -1, -1, -1))
            _SHARED_ARENA.append(True)
        except Exception:  # an onnxruntime without shared allocators: each session keeps its own
            _SHARED_ARENA.append(False)
    return _SHARED_ARENA[0]


def create_session(path: Path | str, device: str = "auto") -> tuple[Any, str]:
    """An inference session and the name of the execution provider it really runs on."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    want_gpu = device.startswith("cuda") or (device == "auto" and _cuda_available())
    providers = ["CPUExecutionProvider"]
    if want_gpu and "CUDAExecutionProvider" in available:
        providers.insert(0, "CUDAExecutionProvider")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = session_threads()
    if threads:
        options.intra_op_num_threads = threads
    if "CUDAExecutionProvider" not in providers:
        # the memory pattern plans one block for the graph's whole peak, and the CPU arena
        # keeps it: without it GFP-GAN's session holds ~440 MB less at about the same speed;
        # and one arena for every CPU session of the process (restorer, parser, upsampler)
        # holds the largest peak among them, not their sum (benchmarks/README.md)
        options.enable_mem_pattern = False
        if _share_cpu_arena():
            options.add_session_config_entry("session.use_env_allocators", "1")
    try:
        with _quiet_onnxruntime():
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as error:
        raise ComponentError(f"{path}: onnxruntime cannot load this model ({brief(error, 300)})") from None
    used = session.get_providers()[0]
    if want_gpu and used != "CUDAExecutionProvider":
        reason = "not in this onnxruntime build" if "CUDAExecutionProvider" not in available else "its CUDA libraries did not load"
        print(f"facefix: onnxruntime runs on CPU: the CUDA provider is {reason}", file=sys.stderr)
    return session, used


@dataclass
class ExportReport:
    path: Path
    max_abs_difference: float  # onnxruntime vs PyTorch on the sample, in network units ([-1, 1])
    provider: str
    opset: int


@contextlib.contextmanager
def weights_apart(temporary: Path, path: Path, separate: bool = True):
    """Around writing an export to ``temporary`` (later renamed to ``path``): when
    ``separate``, the finished graph's weights move to a data file beside ``path``.

    onnxruntime loads a model with its weights apart in less memory: GFP-GAN's session
    holds ~200 MB less and peaks ~220 MB lower while loading (benchmarks/README.md), since
    the weights are read straight into tensors instead of through one big protobuf. The
    data file's name is unique to this writer (concurrent exports never share one) and
    recorded in the graph; it is removed again if the export fails."""
    data = path.with_name(f"{path.name}.{hashlib.sha256(temporary.name.encode()).hexdigest()[:8]}.data")
    try:
        yield
        if separate:
            import onnx

            model = onnx.load(str(temporary))
            onnx.save_model(model, str(temporary), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data.name, size_threshold=1024)
            data.chmod(temporary.stat().st_mode & 0o777)  # as readable as the graph
    except BaseException:
        data.unlink(missing_ok=True)
        raise


def remove_export(path: Path) -> None:
    """Remove an export and the weights files :func:`weights_apart` wrote beside it."""
    for data in path.parent.glob(f"{glob.escape(path.name)}.*.data"):
        data.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def from_cache(path: Path, export: Callable[[], None], load: Callable[[], Any]) -> Any:
    """``load()`` the cached export at ``path``, made by ``export()`` if missing. A cached file
    that no longer loads (damaged, half-deleted, from an onnxruntime that changed) is
    exported again, once, instead of being skipped on every run."""
    if not path.exists():
        export()
        return load()
    try:
        return load()
    except ComponentError as error:
        print(f"facefix: the cached export {path} does not load ({brief(error, 160)}); "
              "exporting it again", file=sys.stderr)
        remove_export(path)
        export()
        return load()


def export_restorer(
    restorer: Any,
    path: Path | str,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    fp16: bool = False,
    sample: np.ndarray | None = None,
    separate_weights: bool = False,
) -> ExportReport:
    """Export ``restorer.export_module()`` to ONNX, check it, and compare with PyTorch.

    ``sample``: one aligned BGR uint8 face (``input_size`` square) to compare on;
    a deterministic synthetic face-sized image is used when omitted. The file is
    written atomically; ``separate_weights`` puts the weights in a data file beside it
    (:func:`weights_apart`: what the caches do, to load in less memory).
    """
    import onnx
    import torch

    from facefix.restorers import FIDELITY_INPUT

    path = Path(path)
    fidelity = getattr(restorer, "fidelity", None)
    with_fidelity = fidelity is not None and hasattr(restorer, "onnx_module")
    module = (restorer.onnx_module() if with_fidelity else restorer.export_module()).eval().cpu().float()
    size = restorer.input_size
    if sample is None:
        sample = _synthetic_face(size)
    example = torch.from_numpy(restorer.normalization.to_network(sample[None]))
    examples = (example, torch.tensor([fidelity], dtype=torch.float32)) if with_fidelity else (example,)
    names = [INPUT_NAME, FIDELITY_INPUT] if with_fidelity else [INPUT_NAME]
    with torch.inference_mode():
        reference = module(*examples).float().numpy()
    export_module = module.half() if fp16 else module
    export_inputs = tuple(item.half() for item in examples) if fp16 else examples
    try:
        with atomic_path(path) as temporary, weights_apart(temporary, path, separate_weights):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter chatter (legacy-exporter deprecation, tracer warnings)
                torch.onnx.export(
                    export_module,
                    export_inputs,
                    str(temporary),
                    input_names=names,
                    output_names=[OUTPUT_NAME],
                    opset_version=opset,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
                    do_constant_folding=True,
                    dynamo=False,
                )
            if with_fidelity:  # what a plain onnxruntime user (and --restorer onnx) feeds by default
                model = onnx.load(str(temporary), load_external_data=False)
                onnx.helper.set_model_props(model, {DEFAULT_FIDELITY_KEY: repr(float(fidelity))})
                onnx.save_model(model, str(temporary))
            onnx.checker.check_model(str(temporary), full_check=True)
            session, provider = create_session(temporary, "cpu")
            dtype = np.float16 if fp16 else np.float32
            feed = {item.name: tensor.numpy().astype(dtype) for item, tensor in zip(session.get_inputs(), examples)}
            output = session.run(None, feed)[0].astype(np.float32)
    finally:
        module.float()
    return ExportReport(path=path, max_abs_difference=float(np.abs(output - reference).max()), provider=provider,
                        opset=opset)


def _synthetic_face(size: int) -> np.ndarray:
    """A smooth, deterministic stand-in face when no sample is given (gradients and blobs)."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.dstack([0.5 + 0.4 * np.sin(6 * x + 2 * y), 0.5 + 0.3 * np.cos(5 * y), 0.4 + 0.3 * x * y])
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


#: The largest face a restorer may declare (CFGPFSSR's 1024 px output, and room above it):
#: past it a file's declared shape is taken for what it is, a request for an allocation.
MAX_FACE_SIZE = 4096


class OnnxRestorer:
    """The restorer contract on top of an onnxruntime session.

    Input ``(N or 1, 3, S, S)`` float RGB in the model's normalisation, output the same
    layout at the output size. A model whose batch axis is fixed at 1, and any model on
    a CPU, is run face by face. A second input named ``weight`` (CodeFormer's fidelity, and facefix's
    exports') is fed ``fidelity``; without one, the value the export recorded, else CodeFormer's 0.5.
    """

    needs_parsing = False

    def __init__(self, path: Path | str, device: str = "auto", normalization: Normalization = Normalization(),
                 fidelity: float | None = None):
        self.path = Path(path)
        self.session, self.provider = create_session(self.path, device)
        inputs = self.session.get_inputs()
        image_inputs = [item for item in inputs if len(item.shape) == 4]
        if not image_inputs:
            raise ComponentError(f"{self.path}: no (N, 3, S, S) image input in this ONNX model")
        self.image_input = image_inputs[0]
        shape = self.image_input.shape
        if not isinstance(shape[2], int) or shape[2] != shape[3] or shape[1] != 3:
            raise ComponentError(f"{self.path}: expected a fixed square (N, 3, S, S) input, got {shape}")
        self.input_size = int(shape[2])
        if not 8 <= self.input_size <= MAX_FACE_SIZE:  # a crafted file could ask for any allocation
            raise ComponentError(f"{self.path}: declares a {self.input_size} px input; a face restorer takes "
                                 f"8 to {MAX_FACE_SIZE} px")
        # on a CPU faces go one at a time: batches are no faster per face on a few cores, and
        # onnxruntime's arena keeps the peak of the largest batch (GFP-GAN at 4: ~3 GB more)
        self.face_by_face = isinstance(shape[0], int) or self.provider == "CPUExecutionProvider"
        self.extra_inputs = {}
        for item in inputs:
            if item is self.image_input:
                continue
            if item.name == "weight":
                if fidelity is None:  # the export's own default, else CodeFormer's
                    stored = self.session.get_modelmeta().custom_metadata_map.get(DEFAULT_FIDELITY_KEY)
                    fidelity = float(stored) if stored is not None else 0.5
                value = float(fidelity)
                dtype = np.float64 if "double" in item.type else np.float32
                self.extra_inputs[item.name] = np.array([value] if item.shape else value, dtype)
            else:
                raise ComponentError(f"{self.path}: unsupported extra input {item.name!r} {item.shape}")
        self.input_dtype = np.float16 if "float16" in self.image_input.type else np.float32
        output_shape = self.session.get_outputs()[0].shape
        if isinstance(output_shape[2], int):
            self.output_size = int(output_shape[2])
        else:  # symbolic output size: find it by running once
            probe = np.zeros((1, 3, self.input_size, self.input_size), self.input_dtype)
            self.output_size = int(self._run(probe).shape[2])
        if not 8 <= self.output_size <= MAX_FACE_SIZE:
            raise ComponentError(f"{self.path}: declares a {self.output_size} px output; a face restorer gives "
                                 f"8 to {MAX_FACE_SIZE} px")
        self.normalization = normalization

    def _run(self, batch: np.ndarray) -> np.ndarray:
        feed = {self.image_input.name: batch.astype(self.input_dtype), **self.extra_inputs}
        return self.session.run(None, feed)[0]

    def restore(self, faces: np.ndarray, parsing: np.ndarray | None = None) -> np.ndarray:
        batch = self.normalization.to_network(faces)
        if self.face_by_face:
            output = np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])
        else:
            output = self._run(batch)
        return self.normalization.from_network(output.astype(np.float32))


#: Bumped when the cached exports change form, so older ones aren't taken for them (2: the
#: weights in a data file beside the graph).
CACHE_FORMAT = 2


def cached_export_path(restorer: Any, cache_dir: Path) -> Path:
    """Where ``--backend onnx`` keeps the automatic export of ``restorer``."""
    key = restorer.onnx_key() if hasattr(restorer, "onnx_key") else restorer.export_key()
    digest = hashlib.sha256(f"{key}:format{CACHE_FORMAT}".encode()).hexdigest()[:16]
    return cache_dir / f"{restorer.name or 'restorer'}-{digest}.onnx"


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def onnx_backend(restorer: Any, device: str, onnx_path: Path | None, cache_dir: Path,
                 note: Callable[[str], None] = _to_stderr) -> OnnxRestorer:
    """Run ``restorer`` through onnxruntime: from ``onnx_path``, or from a cached export."""
    if onnx_path is None:
        if not hasattr(restorer, "export_module"):
            raise ComponentError("this restorer has no PyTorch module to export; pass --onnx FILE")
        onnx_path = cached_export_path(restorer, cache_dir)

        def export() -> None:
            note(f"facefix: exporting {restorer.name or 'the restorer'} to ONNX once: {onnx_path}")
            export_restorer(restorer, onnx_path, dynamic_batch=True, separate_weights=True)

        runner = from_cache(onnx_path, export, lambda: OnnxRestorer(onnx_path, device, restorer.normalization,
                                                                    fidelity=getattr(restorer, "fidelity", None)))
    else:
        runner = OnnxRestorer(onnx_path, device, restorer.normalization, fidelity=getattr(restorer, "fidelity", None))
    if (runner.input_size, runner.output_size) != (restorer.input_size, restorer.output_size):
        raise ComponentError(
            f"{onnx_path}: model maps {runner.input_size}→{runner.output_size} px, "
            f"but the restorer expects {restorer.input_size}→{restorer.output_size}"
        )
    return runner


def export_parser(parser: Any, path: Path | str, *, opset: int = DEFAULT_OPSET,
                  sample: np.ndarray | None = None, separate_weights: bool = False) -> ExportReport:
    """Export a :class:`~facefix.inference.SegmentationParser`'s network, argmax included (uint8
    labels out, free batch; free height and width when the parser has a ``size_multiple``),
    and compare with PyTorch: ``max_abs_difference`` is the largest share of pixels whose
    label differs on ``sample`` (a synthetic face when omitted), at the network's size and,
    for a free-size export, at the smallest size a paste asks for."""
    import onnx
    import torch

    from facefix.parsing import paste_parse_size

    path = Path(path)
    size = parser.network_size
    module = parser.export_module().eval().cpu().float()
    face = _synthetic_face(size) if sample is None else sample
    free_size = getattr(parser, "size_multiple", None) is not None
    axes = {0: "batch", 1: "height", 2: "width"} if free_size else {0: "batch"}
    smallest = paste_parse_size(parser, 0) if free_size else None
    examples = [face] + ([_area_resized(face, smallest)] if smallest else [])
    inputs = [torch.from_numpy(parser.normalization.to_network(item[None])) for item in examples]
    with torch.inference_mode():
        references = [module(item).numpy() for item in inputs]
    with atomic_path(path) as temporary, weights_apart(temporary, path, separate_weights):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter chatter
            torch.onnx.export(module, (inputs[0],), str(temporary), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"} if free_size
                                            else {0: "batch"}, OUTPUT_NAME: axes},
                              do_constant_folding=True, dynamo=False)
        onnx.checker.check_model(str(temporary), full_check=True)
        session, provider = create_session(temporary, "cpu")
        name = session.get_inputs()[0].name
        differing = max(float(np.mean(session.run(None, {name: item.numpy()})[0] != reference))
                        for item, reference in zip(inputs, references))
    module.to(parser.device)
    return ExportReport(path=path, max_abs_difference=differing, provider=provider, opset=opset)


def _area_resized(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


class OnnxParser:
    """An exported parser run by onnxruntime, the same steps around it as its PyTorch original
    (resize, normalise, map the labels, resize back); one face at a time on a CPU."""

    def __init__(self, path: Path | str, parser: Any, device: str = "auto"):
        self.path = Path(path)
        self.session, self.provider = create_session(self.path, device)
        self.input_name = self.session.get_inputs()[0].name
        self.network_size = parser.network_size
        self.normalization = parser.normalization
        self.label_map = parser.label_map
        self.name = parser.name
        self.batch_size = parser.batch_size if self.provider != "CPUExecutionProvider" else 1
        free_size = not isinstance(self.session.get_inputs()[0].shape[2], int)
        self.size_multiple = getattr(parser, "size_multiple", None) if free_size else None

    def parse(self, faces: np.ndarray, network_input: int | None = None) -> np.ndarray:
        from facefix.parsing import label_faces

        return label_faces(faces, lambda part: self.session.run(None, {self.input_name: part})[0], self,
                           network_input if self.size_multiple else None)


def onnx_parser(parser: Any, device: str, cache_dir: Path, note: Callable[[str], None] = _to_stderr) -> OnnxParser:
    """Run ``parser`` through onnxruntime from a cached export (one per weights file)."""
    path = cached_export_path(parser, cache_dir)

    def export() -> None:
        note(f"facefix: exporting the {parser.name or 'parser'} parser to ONNX once: {path}")
        report = export_parser(parser, path, separate_weights=True)
        if report.max_abs_difference > 0.01:
            remove_export(path)
            raise ComponentError(f"the ONNX export of {parser.name} labels {report.max_abs_difference:.1%} of pixels "
                                 "differently from PyTorch")

    return from_cache(path, export, lambda: OnnxParser(path, parser, device))
