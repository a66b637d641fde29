"""Background upsamplers: a whole image enlarged by a super-resolution network, in tiles.

One tiling implementation serves every backend: :class:`TiledUpsampler` splits the image
into tiles of ``tile`` input pixels, runs each with ``overlap`` pixels of context on every
side (clipped at the image border) and keeps only the tile's own part of the output. With
``overlap`` at least the network's receptive radius (what its plugin declares), the tiled
image is the untiled one up to float rounding; a smaller overlap trades exactness for
less recomputation. ``multiple`` is the side every network input must divide by
(RRDBNet x2 unshuffles pixels 2 by 2): the image is reflect-padded to it first, as
Real-ESRGAN's own ``RealESRGANer`` does.

Networks see RGB in [0, 1] and return it clipped to [0, 1]; :func:`upscale_pixels` maps any
image layout to that and back (gray through three equal channels, alpha enlarged with
Lanczos beside the network, 16-bit kept 16-bit).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from facefix.alignment import resize_to
from facefix.atomic import atomic_path
from facefix.components import weights_key
from facefix.errors import ComponentError, FacefixError, brief
from facefix.onnx import (DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, ExportReport, cached_export_path, create_session,
                          from_cache, weights_apart)


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(start, end, padded_start, padded_end)`` along one axis of ``length`` pixels: the tile's
    own pixels and the context read around them (``overlap`` each side, clipped)."""
    if tile <= 0 or length <= tile:
        return [(0, length, 0, length)]
    spans = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        spans.append((start, end, max(0, start - overlap), min(length, end + overlap)))
    return spans


def run_tiled(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, scale: int, tile: int, overlap: int,
              multiple: int = 1, convert: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``run`` (``(1, C, h, w)`` → ``(1, C, h*scale, w*scale)``) over ``batch`` in tiles.

    ``tile`` 0 runs the whole image at once. Tiles, overlaps and the padded image are
    multiples of ``multiple``; the padding is cut off the result. ``convert`` turns each
    tile's output into ``h x w x k`` pixels as soon as it is made, so only the final
    image is held at full size, never a float copy of it; without it the result is the
    networks' float output, ``(1, C, H*scale, W*scale)``.
    """
    height, width = batch.shape[2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        batch = np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
    tile = -(-tile // multiple) * multiple if tile > 0 else 0
    overlap = -(-overlap // multiple) * multiple
    rows = tile_spans(batch.shape[2], tile, overlap)
    columns = tile_spans(batch.shape[3], tile, overlap)
    finish = convert or (lambda part: part[0].transpose(1, 2, 0))  # as pixels, HWC, while tiling
    if len(rows) == 1 and len(columns) == 1:
        output = finish(run(batch))
    else:
        output = None
        for y0, y1, py0, py1 in rows:
            for x0, x1, px0, px1 in columns:
                part = finish(run(np.ascontiguousarray(batch[:, :, py0:py1, px0:px1])))
                if output is None:
                    output = np.empty((batch.shape[2] * scale, batch.shape[3] * scale, part.shape[2]), part.dtype)
                output[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = part[
                    (y0 - py0) * scale:(y1 - py0) * scale, (x0 - px0) * scale:(x1 - px0) * scale]
    output = output[:height * scale, :width * scale]
    return output if convert is not None else np.ascontiguousarray(output.transpose(2, 0, 1)[None])


def upscale_pixels(image: np.ndarray, enlarge: Callable[..., np.ndarray], scale: int) -> np.ndarray:
    """``image`` in any layout and depth, enlarged by ``enlarge(batch, convert)`` and returned in
    its own layout and depth. ``batch`` is ``(1, 3, h, w)`` RGB in [0, 1]; ``convert`` turns the
    network's output for any part of it into pixels of the image's kind (see :func:`run_tiled`)."""
    value_range = 65535.0 if image.dtype == np.uint16 else 255.0
    squeeze = image.ndim == 2
    pixels = image[:, :, None] if squeeze else image
    channels = pixels.shape[2]
    if channels not in (1, 3, 4):
        raise FacefixError(f"cannot upscale an image with {channels} channels")
    colour = pixels[:, :, :3] if channels >= 3 else np.repeat(pixels, 3, axis=2)
    rgb = colour[:, :, ::-1].astype(np.float32) / value_range
    batch = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])

    def to_pixels(part: np.ndarray) -> np.ndarray:
        bgr = np.clip(part[0].transpose(1, 2, 0)[:, :, ::-1], 0.0, 1.0)
        if channels == 1:
            bgr = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)[:, :, None]
        return np.rint(bgr * value_range).astype(image.dtype)

    result = enlarge(batch, to_pixels)
    if channels == 4:
        height, width = result.shape[:2]
        alpha = resize_to(pixels[:, :, 3:], width, height)
        result = np.concatenate([result, alpha.reshape(height, width, 1)], axis=2)
    return result[:, :, 0] if squeeze else np.ascontiguousarray(result)


class TiledUpsampler:
    """The upsampler contract for any network runner: subclasses give :meth:`run`."""

    def __init__(self, *, scale: int, tile: int = 0, overlap: int = 0, multiple: int = 1, name: str = ""):
        self.scale = int(scale)
        self.tile = int(tile)
        self.overlap = int(overlap)
        self.multiple = int(multiple)
        self.name = name

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``(1, 3, h, w)`` RGB float32 in [0, 1] → ``(1, 3, h*scale, w*scale)``."""
        raise NotImplementedError

    def enlarge(self, batch: np.ndarray, convert: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        return run_tiled(self.run, batch, self.scale, self.tile, self.overlap, self.multiple, convert)

    def upscale(self, image: np.ndarray) -> np.ndarray:
        return upscale_pixels(image, self.enlarge, self.scale)


class TorchUpsampler(TiledUpsampler):
    """A PyTorch super-resolution module as an upsampler (exportable to ONNX)."""

    exportable = True

    def __init__(self, module: Any, *, scale: int, tile: int = 0, overlap: int = 0, multiple: int = 1,
                 device: str = "cpu", name: str = "", weights: Path | None = None):
        super().__init__(scale=scale, tile=tile, overlap=overlap, multiple=multiple, name=name)
        self.module = module.eval().to(device)
        self.device = device
        self.weights = weights

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            output = self.module(torch.from_numpy(batch).to(self.device))
            return output.clamp_(0, 1).float().cpu().numpy()

    def export_module(self) -> Any:
        return self.module

    def export_key(self) -> str:
        """What an export of it contains, for the cache: name, and the weights file's path, size, time."""
        return weights_key(self.name, self.weights, "upsampler")


class OnnxUpsampler(TiledUpsampler):
    """An exported upsampler (``(N, 3, H, W)`` with free height and width) run by onnxruntime."""

    def __init__(self, path: Path | str, *, scale: int, tile: int = 0, overlap: int = 0, multiple: int = 1,
                 device: str = "auto", name: str = ""):
        super().__init__(scale=scale, tile=tile, overlap=overlap, multiple=multiple, name=name)
        self.path = Path(path)
        self.session, self.provider = create_session(self.path, device)
        first = self.session.get_inputs()[0]
        if len(first.shape) != 4 or isinstance(first.shape[2], int):
            raise ComponentError(f"{self.path}: an upsampler model needs a (N, 3, H, W) input of free size, "
                                 f"got {first.shape}")
        self.input_name = first.name
        self.input_dtype = np.float16 if "float16" in first.type else np.float32

    def run(self, batch: np.ndarray) -> np.ndarray:
        output = self.session.run(None, {self.input_name: batch.astype(self.input_dtype)})[0]
        return np.clip(output.astype(np.float32), 0.0, 1.0)


def export_upsampler(upsampler: TorchUpsampler, path: Path | str, *, opset: int = DEFAULT_OPSET,
                     fp16: bool = False, sample: np.ndarray | None = None,
                     separate_weights: bool = False) -> ExportReport:
    """Export with free batch, height and width; check it and compare with PyTorch on ``sample``
    (a BGR uint8 image; a synthetic 64 px one when omitted) and on a second, odd-sized crop."""
    import onnx
    import torch

    path = Path(path)
    module = upsampler.export_module().eval().cpu().float()
    if sample is None:
        y, x = np.mgrid[0:64, 0:64] / 64.0
        sample = (np.dstack([0.5 + 0.4 * np.sin(9 * x + 3 * y), 0.5 + 0.3 * np.cos(7 * y), 0.3 + 0.5 * x * y])
                  * 255).astype(np.uint8)
    multiple = upsampler.multiple
    height, width = (sample.shape[0] // multiple) * multiple, (sample.shape[1] // multiple) * multiple
    first = sample[:height, :width, :3][:, :, ::-1].astype(np.float32) / 255.0
    examples = [np.ascontiguousarray(first.transpose(2, 0, 1)[None])]
    # a second shape proves the height and width are free in the exported graph
    examples.append(np.ascontiguousarray(examples[0][:, :, : height - multiple, : width - 2 * multiple]))
    with torch.inference_mode():
        references = [module(torch.from_numpy(example)).float().numpy() for example in examples]
    dtype = torch.float16 if fp16 else torch.float32
    try:
        with atomic_path(path) as temporary, weights_apart(temporary, path, separate_weights):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter chatter
                torch.onnx.export(
                    module.to(dtype), (torch.from_numpy(examples[0]).to(dtype),), str(temporary),
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                    dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in (INPUT_NAME, OUTPUT_NAME)},
                    do_constant_folding=True, dynamo=False,
                )
            onnx.checker.check_model(str(temporary), full_check=True)
            session, provider = create_session(temporary, "cpu")
            difference = 0.0
            for example, reference in zip(examples, references):
                feed = example.astype(np.float16 if fp16 else np.float32)
                output = session.run(None, {session.get_inputs()[0].name: feed})[0].astype(np.float32)
                difference = max(difference, float(np.abs(output - reference).max()))
    finally:
        module.float()
    return ExportReport(path=path, max_abs_difference=difference, provider=provider, opset=opset)


def upsampler_backend(upsampler: Any, backend: str, device: str, cache_dir: Path,
                      warn: Callable[[str], None] = print) -> tuple[Any, str]:
    """The upsampler to run and how it runs, as :func:`facefix.backends.apply_backend` does for
    restorers: ``auto`` is onnxruntime on a CPU (exported once per weights file, cached)."""
    if not isinstance(upsampler, TorchUpsampler):
        return upsampler, ""
    if backend == "auto":
        backend = "onnx" if device == "cpu" else "torch"
        if backend == "onnx":
            try:
                return _onnx_upsampler(upsampler, device, cache_dir, warn), "onnxruntime"
            except Exception as error:  # auto never fails where PyTorch works
                warn(f"facefix: onnxruntime not used for {upsampler.name} "
                     f"({brief(error, 200)}); running in PyTorch")
                backend = "torch"
    if backend == "onnx":
        return _onnx_upsampler(upsampler, device, cache_dir, warn), "onnxruntime"
    if backend == "compile":
        import torch

        upsampler.module = torch.compile(upsampler.module, dynamic=True)
    return upsampler, f"torch{' compiled' if backend == 'compile' else ''}"


def _onnx_upsampler(upsampler: TorchUpsampler, device: str, cache_dir: Path,
                    note: Callable[[str], None]) -> OnnxUpsampler:
    path = cached_export_path(upsampler, cache_dir)

    def export() -> None:
        note(f"facefix: exporting {upsampler.name or 'the upsampler'} to ONNX once: {path}")
        export_upsampler(upsampler, path, separate_weights=True)

    return from_cache(path, export, lambda: OnnxUpsampler(path, scale=upsampler.scale, tile=upsampler.tile,
                                                          overlap=upsampler.overlap, multiple=upsampler.multiple,
                                                          device=device, name=upsampler.name))


def background(pixels: np.ndarray, width: int, height: int, upsampler: Any | None) -> np.ndarray:
    """The image at ``width`` x ``height``: through the upsampler when one is given and the image
    grows (then resized from the upsampler's scale to the size asked for), else resized."""
    if upsampler is None or (width <= pixels.shape[1] and height <= pixels.shape[0]):
        return resize_to(pixels, width, height)
    return resize_to(upsampler.upscale(pixels), width, height)
