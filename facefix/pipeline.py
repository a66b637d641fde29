"""The restoration pipeline: detect → align → (parse) → restore → blend → write.

Faces from several images share restorer batches: images are read and detected one
after another, their aligned faces queue up, and every ``batch_size`` faces go
through the parser and restorer together. An image is written as soon as all of its
faces are back, in input order. A bad file is reported and skipped; the rest go on.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

from facefix import alignment
from facefix.blending import match_color
from facefix.components import DetectedFace
from facefix.errors import FacefixError, InputError
from facefix.atomic import write_bytes_atomic
from facefix.image_io import Image, encode_image, from_canvas, read_image, to_canvas

#: Faces whose eyes are closer than this (pixels) can't be aligned meaningfully.
MIN_EYE_DISTANCE = 5.0
#: Images larger than this (longer side) are detected on a downscaled copy; faces
#: in such images are large, and full-resolution detection costs seconds on a CPU.
DETECTION_MAX_SIDE = 2048
#: Outputs are written at least this good, and as good as a JPEG input was.
DEFAULT_JPEG_QUALITY = 95


@dataclass
class FaceOptions:
    """Which faces are restored and how they go back: what ``restore`` and ``video`` share."""

    upscale: float = 1.0
    batch_size: int = 4
    only_center_face: bool = False
    largest_face: bool = False
    min_face_size: float = 0.0
    color_match: bool = False


@dataclass
class PipelineOptions:
    faces: FaceOptions = field(default_factory=FaceOptions)
    aligned: bool = False
    save_faces: bool = False
    ext: str | None = None
    suffix: str = ""
    skip_existing: bool = False
    max_pixels: int = 150_000_000
    jpeg_quality: int | None = None  # None: the input's own quality, at least DEFAULT_JPEG_QUALITY
    quiet: bool = False


@dataclass
class Summary:
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    faces: int = 0
    without_faces: int = 0
    errors: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def line(self) -> str:
        extra = []
        if self.skipped:
            extra.append(f"{self.skipped} skipped (already done)")
        if self.without_faces:
            extra.append(f"{self.without_faces} without faces")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.processed} processed, {self.failed} failed; {self.faces} faces restored{tail}"


@dataclass
class AlignedFace:
    """One face on its way through the restorer (shared with ``facefix video``)."""

    crop: np.ndarray  # aligned input face, BGR uint8
    affine: np.ndarray  # image → crop
    parsing: np.ndarray | None = None
    restored: np.ndarray | None = None


_Face = AlignedFace


@dataclass
class _Job:
    image: Image
    output: Path
    faces: list[_Face]
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.error is not None or all(face.restored is not None for face in self.faces)


def select_faces(faces: list[DetectedFace], image_shape: tuple[int, ...], options: FaceOptions) -> list[DetectedFace]:
    """Apply the size floor and the ``--only-center-face`` / ``--largest-face`` choices."""
    kept = [face for face in faces if face.eye_distance >= MIN_EYE_DISTANCE and face.size >= options.min_face_size]
    if not kept:
        return []
    if options.largest_face:
        return [max(kept, key=lambda face: face.area)]
    if options.only_center_face:
        height, width = image_shape[:2]
        centre = np.array([width / 2.0, height / 2.0])

        def distance(face: DetectedFace) -> float:
            x1, y1, x2, y2 = face.box
            return float(np.linalg.norm(np.array([(x1 + x2) / 2, (y1 + y2) / 2]) - centre))

        return [min(kept, key=distance)]
    return kept


def detect(detector: Any, image: np.ndarray) -> list[DetectedFace]:
    """Run the detector, on a downscaled copy when the image is very large."""
    longest = max(image.shape[:2])
    if longest <= DETECTION_MAX_SIDE:
        return detector.detect(image)
    scale = DETECTION_MAX_SIDE / longest
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    faces = detector.detect(small)
    return [
        DetectedFace(
            box=tuple(v / scale for v in face.box),
            score=face.score,
            landmarks=(face.landmarks / scale).astype(np.float32),
        )
        for face in faces
    ]


class Pipeline:
    """Composes the chosen components; :meth:`run` processes files into a folder."""

    def __init__(
        self,
        restorer: Any,
        blender: Any | None = None,
        detector: Any | None = None,
        parser: Any | None = None,
        options: PipelineOptions | None = None,
        report: Callable[[str], None] | None = None,
    ):
        self.restorer = restorer
        self.blender = blender
        self.detector = detector
        self.parser = parser
        self.options = options or PipelineOptions()
        self.report = report or (lambda message: tqdm.write(message, file=sys.stderr))
        needs_parsing = getattr(restorer, "needs_parsing", False) or getattr(blender, "needs_parsing", False)
        if needs_parsing and parser is None:
            raise FacefixError("the chosen restorer or blender needs parsing maps: choose a parser with --parser")
        if not self.options.aligned and (detector is None or blender is None):
            raise FacefixError("whole-image restoration needs a detector and a blender")
        self.summary = Summary()
        self._progress: tqdm | None = None
        self._queue: list[_Face] = []
        self._jobs: list[_Job] = []

    # -- stages -------------------------------------------------------------------

    def _timed(self, stage: str, function: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = function(*args)
        self.summary.stage_seconds[stage] += time.perf_counter() - start
        return result

    def _prepare(self, image: Image) -> list[_Face]:
        size = self.restorer.input_size
        bgr = image.bgr8()
        if self.options.aligned:
            shrinking = bgr.shape[0] > size
            crop = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
            return [_Face(crop=crop, affine=np.eye(2, 3))]
        found = self._timed("detect", detect, self.detector, bgr)
        chosen = select_faces(found, bgr.shape, self.options.faces)
        faces = []
        start = time.perf_counter()
        for face in chosen:
            affine = alignment.estimate_affine(face.landmarks, size)
            faces.append(_Face(crop=alignment.warp_face(bgr, affine, size), affine=affine))
        self.summary.stage_seconds["align"] += time.perf_counter() - start
        return faces

    def _restore_batch(self, faces: list[_Face]) -> None:
        restore_faces(self.restorer, self.parser, faces, self._timed)

    def _drain(self, final: bool = False) -> None:
        batch_size = max(1, self.options.faces.batch_size)
        while self._queue and (final or len(self._queue) >= batch_size):
            batch, self._queue = self._queue[:batch_size], self._queue[batch_size:]
            try:
                self._restore_batch(batch)
            except Exception as error:  # the batch's images fail; the run goes on
                message = error_text(error)
                # by identity: faces hold arrays, so == between them is not a truth value
                batch_ids = {id(face) for face in batch}
                failed_ids: set[int] = set()
                for job in self._jobs:
                    if any(id(face) in batch_ids for face in job.faces):
                        job.error = f"restoring failed: {message}"
                        failed_ids.update(id(face) for face in job.faces)
                # the failed images' faces still queued for later batches need no restoring
                self._queue = [face for face in self._queue if id(face) not in failed_ids]
        while self._jobs and self._jobs[0].ready:
            self._finish(self._jobs.pop(0))

    def _compose(self, job: _Job) -> np.ndarray:
        return paste_faces(job.image.pixels, job.faces, self.restorer, self.blender, self.options.faces.upscale,
                           self.options.faces.color_match)

    def _advance(self) -> None:
        # the bar counts finished images (written or failed), not images read: with
        # faces batched across images, reading runs ahead of writing
        if self._progress is not None:
            self._progress.update(1)

    def _finish(self, job: _Job) -> None:
        self._advance()
        if job.error is not None:
            self._fail(f"{job.image.path}: {job.error}")
            return
        try:
            if self.options.aligned:
                pixels = job.faces[0].restored
            else:
                pixels = self._timed("blend", self._compose, job)
            ext = job.output.suffix.lstrip(".")
            quality = self.options.jpeg_quality or max(DEFAULT_JPEG_QUALITY, job.image.jpeg_quality or 0)
            data = self._timed("encode", encode_image, pixels, ext, quality)
            write_bytes_atomic(job.output, data)
            if self.options.save_faces:
                self._save_faces(job)
        except Exception as error:
            self._fail(f"{job.image.path}: {error_text(error)}")
            return
        self.summary.processed += 1
        self.summary.faces += len(job.faces)
        if not job.faces:
            self.summary.without_faces += 1
            if not self.options.quiet:
                self.report(f"{job.image.path}: no face found; written unchanged")

    def _save_faces(self, job: _Job) -> None:
        root = job.output.parent
        stem = job.output.stem
        size = self.restorer.output_size
        for index, face in enumerate(job.faces):
            crop = cv2.resize(face.crop, (size, size), interpolation=cv2.INTER_CUBIC)
            name = f"{stem}_{index:02d}.png"
            for folder, pixels in (
                ("cropped_faces", face.crop),
                ("restored_faces", face.restored),
                ("cmp", np.concatenate([crop, face.restored], axis=1)),
            ):
                write_bytes_atomic(root / folder / name, encode_image(pixels, "png"))

    def _fail(self, message: str) -> None:
        self.summary.failed += 1
        self.summary.errors.append(message)
        self.report(f"error: {message}")

    # -- driver -------------------------------------------------------------------

    def output_path(self, out_dir: Path, relative: Path, image_format: str | None) -> Path:
        ext = (self.options.ext or image_format or relative.suffix.lstrip(".") or "png").lower().lstrip(".")
        if self.options.aligned and ext in ("jpg", "jpeg") and self.options.ext is None:
            ext = "png"  # restored faces are small: keep them lossless unless asked
        return out_dir / relative.parent / f"{relative.stem}{self.options.suffix}.{ext}"

    def run(self, files: list[tuple[Path, Path]], out_dir: Path) -> Summary:
        """Process ``(input file, relative output path)`` pairs into ``out_dir``."""
        inputs = {path.resolve() for path, _ in files}
        claimed: set[Path] = set()
        self._progress = tqdm(total=len(files), desc="restore", unit="img", disable=self.options.quiet, file=sys.stderr)
        for path, relative in files:
            expected_output = self.output_path(out_dir, relative, relative.suffix.lstrip(".").lower() or None)
            if self.options.skip_existing and expected_output.exists():
                self.summary.skipped += 1
                self._advance()
                continue
            try:
                image = self._timed("decode", read_image, path, self.options.max_pixels)
                output = self.output_path(out_dir, relative, image.format)
                if output.resolve() in inputs:
                    raise InputError(path, f"output {output} would overwrite an input; choose another folder or --suffix")
                if output.resolve() in claimed:
                    raise InputError(path, f"output {output} is already written by another input of this run")
                claimed.add(output.resolve())
                faces = self._prepare(image)
            except Exception as error:
                self._advance()
                self._fail(error_text(error, path))
                continue
            self._jobs.append(_Job(image=image, output=output, faces=faces))
            self._queue.extend(faces)
            self._drain()
        self._drain(final=True)
        self._progress.close()
        self._progress = None
        return self.summary


def restore_faces(restorer: Any, parser: Any | None, faces: list[AlignedFace],
                  timed: Callable[..., Any] | None = None) -> None:
    """Parse (when a parser is given) and restore ``faces`` as one batch, in place.

    ``timed(stage, function, *args)`` runs each network call, so callers can time the
    stages; by default it just calls the function.
    """
    run = timed or (lambda stage, function, *args: function(*args))
    crops = np.stack([face.crop for face in faces])
    parsing = None
    if parser is not None:
        parsing = run("parse", parser.parse, crops)
        for face, labels in zip(faces, parsing):
            face.parsing = labels
    restorer_parsing = parsing if getattr(restorer, "needs_parsing", False) else None
    restored = run("restore", restorer.restore, crops, restorer_parsing)
    expected = (len(faces), restorer.output_size, restorer.output_size, 3)
    if restored.shape != expected or restored.dtype != np.uint8:
        raise FacefixError(f"restorer returned {restored.shape} {restored.dtype}, expected {expected} uint8")
    for face, output in zip(faces, restored):
        face.restored = output


def paste_faces(pixels: np.ndarray, faces: list[AlignedFace], restorer: Any, blender: Any, upscale: float,
                color_match: bool = False) -> np.ndarray:
    """The whole image resized by ``upscale`` with every restored face pasted back.

    ``pixels`` keeps its layout and depth (gray, BGR, BGRA; 8 or 16 bit); the faces'
    ``affine`` map ``pixels`` to their crops, and ``restored`` holds the restorer's output.
    """
    height, width = pixels.shape[:2]
    background = alignment.resize_to(pixels, round(width * upscale), round(height * upscale))
    if not faces:
        return background
    value_range = 65535.0 if pixels.dtype == np.uint16 else 255.0
    canvas = to_canvas(background)
    value_scale = value_range / 255.0
    face_scale = restorer.output_size / restorer.input_size
    for face in faces:
        restored = face.restored.astype(np.float32) * value_scale
        if color_match:
            reference = cv2.resize(face.crop, restored.shape[1::-1], interpolation=cv2.INTER_CUBIC)
            restored = match_color(restored, reference.astype(np.float32) * value_scale, value_range=value_range)
        inverse = alignment.inverse_affine(face.affine, face_scale, upscale)
        canvas = blender.blend(canvas, restored, inverse, face.parsing, upscale)
    return from_canvas(canvas, like=background)


def error_text(error: BaseException, path: Path | None = None) -> str:
    """One line: facefix's own errors carry their message; others get their type."""
    if isinstance(error, InputError):
        return str(error)
    text = str(error) if isinstance(error, FacefixError) else f"{type(error).__name__}: {error}"
    text = " ".join(text.split())
    return f"{path}: {text}" if path is not None else text
