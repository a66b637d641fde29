"""The restoration pipeline: detect → align → (parse) → restore → blend → write.

One definition, two engines. :func:`plan_images` decides every output first;
:class:`ImageStages` prepares (decode, detect, align) and writes (paste, encode, write
atomically) one image; :class:`FaceBatcher` restores faces of several images in shared
batches; :func:`finish_job` counts the result. :class:`Pipeline` runs them in one process
(the local engine); :mod:`facefix.distributed` runs the same steps on Ray. A bad file is
reported and skipped; the rest go on.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

from facefix import alignment
from facefix.blending import match_color
from facefix.components import DetectedFace
from facefix.errors import FacefixError, InputError, counted, error_text, one_line
from facefix.atomic import write_bytes_atomic
from facefix.image_io import Image, encode_image, from_canvas, loses_transparency, read_image, to_canvas
from facefix.parsing import parse_for_paste
from facefix.sources import not_a_regular_file, resolved
from facefix.upsamplers import background as enlarged_background

#: Faces whose eyes are closer than this (pixels) can't be aligned meaningfully.
MIN_EYE_DISTANCE = 5.0
#: Images larger than this (longer side) are detected on a downscaled copy, which finds
#: their large faces, and then in tiles of this size at full resolution, which finds the
#: small ones the copy shrank out of the detector's reach (a group photo's 110 px faces in
#: a 48 MP frame are 28 px on a 2048 px copy).
DETECTION_MAX_SIDE = 2048
#: Faces (box side) smaller than this the detectors find unreliably: the tiles are detected
#: at the scale that keeps ``--min-face-size`` faces at least this large.
SMALLEST_FINDABLE_FACE = 40.0
#: ... but never shorter than this on its short side (strips of 100000 x 8 px exist).
DETECTION_MIN_SIDE = 16
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
    max_face_size: float = 0.0  # faces larger than this are left as they are (0: no ceiling)
    color_match: bool = True  # undo the restorer's colour drift (tint, lost cast)
    blend: float = 1.0  # share of the restored face mixed with the original (1: restored only)
    keep_detail: bool = True  # faces larger than the restorer's output keep their finer detail


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
            # faces at the border, upside down or small and blurred score below the threshold
            extra.append(f"{self.without_faces} without faces: a lower --detection-threshold may find faces "
                         "the detector scored low")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.processed} processed, {self.failed} failed; {counted(self.faces, 'face')} restored{tail}"


@dataclass
class AlignedFace:
    """One face on its way through the restorer (shared with ``facefix video``)."""

    crop: np.ndarray  # aligned input face, BGR uint8
    affine: np.ndarray  # image → crop
    parsing: np.ndarray | None = None
    restored: np.ndarray | None = None
    paste_size: float | None = None  # px across once pasted back (None: at the restorer's own size)


@dataclass
class ImageTask:
    """One input on its way: where it comes from and where its result goes."""

    source: Path | str  # a local path, or a URI
    output: Path
    #: what --save-faces names its faces after: the output's stem, or its whole name when
    #: another output of the run shares the stem (a.jpg and a.png would write the same a_00.png)
    faces_stem: str = ""


@dataclass
class ImageJob:
    """A decoded image and its faces, between preparing and writing."""

    task: ImageTask
    image: Image
    faces: list[AlignedFace]
    error: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def ready(self) -> bool:
        return self.error is not None or all(face.restored is not None for face in self.faces)


def select_faces(faces: list[DetectedFace], image_shape: tuple[int, ...], options: FaceOptions) -> list[DetectedFace]:
    """Apply the size floor and ceiling and the ``--only-center-face`` / ``--largest-face`` choices."""
    ceiling = options.max_face_size or float("inf")
    kept = [face for face in faces if face.eye_distance >= MIN_EYE_DISTANCE
            and options.min_face_size <= face.size <= ceiling]
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


def detect(detector: Any, image: np.ndarray, min_face_size: float = 0.0, tiled: bool = True) -> list[DetectedFace]:
    """Run the detector on the image; a very large one on a downscaled copy (never so small
    that its short side drops below :data:`DETECTION_MIN_SIDE`; an image that narrow holds
    no face to restore, and has none) and, with ``tiled``, also in overlapping tiles at the
    scale that keeps faces of ``min_face_size`` findable, the two merged."""
    height, width = image.shape[:2]
    if min(height, width) < DETECTION_MIN_SIDE:
        return []
    longest = max(height, width)
    if longest <= DETECTION_MAX_SIDE:
        return detector.detect(image)
    scale = max(DETECTION_MAX_SIDE / longest, DETECTION_MIN_SIDE / min(height, width))
    if scale >= 1.0:
        return detector.detect(image)
    found = _detect_scaled(detector, image, scale)
    fine = min(1.0, SMALLEST_FINDABLE_FACE / max(min_face_size, 1.0))
    if tiled and fine > 1.25 * scale:
        # faces the copy finds (SMALLEST_FINDABLE_FACE / scale and up) must fit whole in some tile
        overlap = int(min(DETECTION_MAX_SIDE // 2, max(256, 1.5 * SMALLEST_FINDABLE_FACE / scale * fine)))
        found = suppress_duplicates(found + _detect_tiled(detector, image, fine, overlap))
    return found


def _scaled_faces(faces: list[DetectedFace], scale: float, x0: float = 0.0, y0: float = 0.0) -> list[DetectedFace]:
    """Faces found at ``scale`` (offset by ``x0, y0`` there) in the full image's pixels."""
    return [DetectedFace(box=((face.box[0] + x0) / scale, (face.box[1] + y0) / scale, (face.box[2] + x0) / scale,
                              (face.box[3] + y0) / scale),
                         score=face.score,
                         landmarks=((face.landmarks + np.float32([x0, y0])) / scale).astype(np.float32))
            for face in faces]


def _detect_scaled(detector: Any, image: np.ndarray, scale: float) -> list[DetectedFace]:
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return _scaled_faces(detector.detect(small), scale)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of ``tile`` px overlapping by ``overlap`` start along ``length`` px, the last
    one flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def _detect_tiled(detector: Any, image: np.ndarray, scale: float, overlap: int) -> list[DetectedFace]:
    """Faces found in overlapping tiles of the image at ``scale``. A face touching an inner
    tile edge is cut there: the overlap holds it whole in the neighbouring tile."""
    scaled = image if scale >= 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    height, width = scaled.shape[:2]
    tile, margin = DETECTION_MAX_SIDE, 2.0
    found = []
    for y0 in tile_starts(height, tile, overlap):
        for x0 in tile_starts(width, tile, overlap):
            crop = np.ascontiguousarray(scaled[y0:y0 + tile, x0:x0 + tile])
            crop_height, crop_width = crop.shape[:2]
            for face in detector.detect(crop):
                x1, y1, x2, y2 = face.box
                cut = ((x1 < margin and x0 > 0) or (y1 < margin and y0 > 0)
                       or (x2 > crop_width - margin and x0 + crop_width < width)
                       or (y2 > crop_height - margin and y0 + crop_height < height))
                if not cut:
                    found.extend(_scaled_faces([face], scale, x0, y0))
    return found


def suppress_duplicates(faces: list[DetectedFace], overlap: float = 0.5) -> list[DetectedFace]:
    """One detection per face when several passes found it: the best-scoring of those whose
    boxes overlap by more than ``overlap`` of the smaller box."""
    kept: list[DetectedFace] = []
    for face in sorted(faces, key=lambda face: face.score, reverse=True):
        x1, y1, x2, y2 = face.box
        duplicate = False
        for other in kept:
            ox1, oy1, ox2, oy2 = other.box
            inter = max(0.0, min(x2, ox2) - max(x1, ox1)) * max(0.0, min(y2, oy2) - max(y1, oy1))
            if inter > overlap * max(1e-6, min(face.area, other.area)):
                duplicate = True
                break
        if not duplicate:
            kept.append(face)
    return kept


def output_path(options: PipelineOptions, out_dir: Path, relative: Path, image_format: str | None) -> Path:
    """Where an input's result goes: its relative path under ``out_dir``, in the chosen format."""
    ext = (options.ext or image_format or relative.suffix.lstrip(".") or "png").lower().lstrip(".")
    return out_dir / relative.parent / f"{relative.stem}{options.suffix}.{ext}"


def check_output_pixels(source: Path | str, shape: tuple[int, ...], upscale: float, max_pixels: int) -> None:
    """``--max-pixels`` bounds the output too: ``--upscale 16`` on a large photo would need a
    canvas of many GB before anything is written."""
    height, width = round(shape[0] * upscale), round(shape[1] * upscale)
    if upscale > 1 and width * height > max_pixels:
        raise InputError(source, f"the output would be {width}x{height} = {width * height} pixels at --upscale "
                                 f"{upscale:g}, over the limit of {max_pixels} (raise it with --max-pixels)")


def output_is_complete(path: Path) -> bool:
    """Whether ``--skip-existing`` may count ``path`` as done: a file that decodes to its end
    (an empty or cut-off file, from a killed run or a full disk, is written again)."""
    if not path.is_file():
        return False
    try:
        read_image(path, max_pixels=1 << 62)  # its size was allowed when it was written
    except Exception:
        return False
    return True


@dataclass
class Plan:
    """What a run will do, decided in input order before any image is decoded."""

    tasks: list[ImageTask]
    skipped: int
    errors: list[str]


def plan_images(files: list[tuple[Path | str, Path]], out_dir: Path, options: PipelineOptions) -> Plan:
    """Each input's output, ``--skip-existing``, and the refusals: an output that would
    overwrite an input, or that an earlier input of the run already writes.

    The output's format comes from the file's header (as decoding would give it), so
    both engines plan the same run whatever order their workers finish in.
    """
    from facefix.image_io import image_format

    inputs = {resolved(path) for path, _ in files if isinstance(path, Path)}
    claimed: set[Path] = set()
    plan = Plan(tasks=[], skipped=0, errors=[])
    root = resolved(out_dir)
    for source, relative in files:
        special = not_a_regular_file(source)
        if special:  # read, a FIFO would wait for a writer and a device would never end
            plan.errors.append(f"{source}: {special}")
            continue
        output = output_path(options, out_dir, relative, image_format(source))
        target = resolved(output)
        if root not in target.parents:
            plan.errors.append(f"{source}: output {output} would lie outside {out_dir}; refused")
            continue
        if options.skip_existing and output_is_complete(output):
            plan.skipped += 1
            continue
        if target in inputs:
            plan.errors.append(f"{source}: output {output} would overwrite an input; choose another folder or --suffix")
            continue
        if target in claimed:
            plan.errors.append(f"{source}: output {output} is already written by another input of this run")
            continue
        claimed.add(target)
        plan.tasks.append(ImageTask(source=source, output=output, faces_stem=output.stem))
    stems = Counter((task.output.parent, task.output.stem) for task in plan.tasks)
    for task in plan.tasks:
        if stems[task.output.parent, task.output.stem] > 1:
            task.faces_stem = task.output.name
    return plan


class ImageStages:
    """The steps of one image, shared by every engine: :meth:`prepare` (decode, detect,
    align), then :func:`restore_faces` on batches of faces, then :meth:`write` (paste,
    encode, write atomically). Only the restorer's sizes are needed here, not the network,
    so these steps can run where the restorer isn't loaded."""

    def __init__(self, options: PipelineOptions, input_size: int, output_size: int, template: Any = None, *,
                 detector: Any | None = None, blender: Any | None = None, upsampler: Any | None = None):
        self.options = options
        self.input_size = input_size
        self.output_size = output_size
        self.template = template  # the restorer's alignment template (None: FFHQ's)
        self.detector = detector
        self.blender = blender
        self.upsampler = upsampler

    def prepare(self, task: ImageTask) -> ImageJob:
        """Decode and align; a bad file comes back with ``error`` set, never raised."""
        seconds: dict[str, float] = defaultdict(float)
        try:
            start = time.perf_counter()
            image = read_image(task.source, self.options.max_pixels)
            check_output_pixels(task.source, image.pixels.shape, self.options.faces.upscale, self.options.max_pixels)
            seconds["decode"] += time.perf_counter() - start
            faces = self._faces(image, seconds)
        except Exception as error:
            return ImageJob(task=task, image=None, faces=[], error=error_text(error, task.source),  # type: ignore[arg-type]
                            stage_seconds=seconds)
        return ImageJob(task=task, image=image, faces=faces, stage_seconds=seconds)

    def _faces(self, image: Image, seconds: dict[str, float]) -> list[AlignedFace]:
        size = self.input_size
        bgr = image.bgr8()
        if self.options.aligned:
            shrinking = bgr.shape[0] > size
            crop = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
            return [AlignedFace(crop=crop, affine=np.eye(2, 3))]
        start = time.perf_counter()
        found = detect(self.detector, bgr, self.options.faces.min_face_size)
        seconds["detect"] += time.perf_counter() - start
        chosen = select_faces(found, bgr.shape, self.options.faces)
        start = time.perf_counter()
        faces = []
        for face in chosen:
            affine = alignment.estimate_affine(face.landmarks, size, self.template)
            faces.append(AlignedFace(crop=alignment.warp_face(bgr, affine, size), affine=affine,
                                     paste_size=alignment.paste_size(affine, size, self.options.faces.upscale)))
        seconds["align"] += time.perf_counter() - start
        return faces

    def write(self, job: ImageJob) -> str | None:
        """Paste, encode and write one restored image; the one-line error, or None."""
        if job.error is not None:
            return job.error
        seconds = job.stage_seconds
        try:
            start = time.perf_counter()
            upsampled = seconds.get("upsample", 0.0)  # paste_faces counts the upsampler's time apart
            faces = self.options.faces
            if self.options.aligned:
                face = job.faces[0]
                pixels = face.restored
                if faces.blend < 1.0 or faces.color_match:
                    original = original_at_output_size(face, self.output_size).astype(np.float32)
                    mixed = pixels.astype(np.float32)
                    if faces.color_match:
                        mixed = match_color(mixed, original)
                    mixed = blend_with_original(mixed, original, faces.blend)
                    pixels = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
                if stored_gray(job.image.pixels):
                    pixels = np.clip(np.rint(as_gray(pixels.astype(np.float32))), 0, 255).astype(np.uint8)
            else:
                pixels = paste_faces(job.image.pixels, job.faces, _Sizes(self.input_size, self.output_size),
                                     self.blender, faces.upscale, faces.color_match, faces.blend, self.upsampler,
                                     seconds, faces.keep_detail)
            seconds["blend"] += time.perf_counter() - start - (seconds.get("upsample", 0.0) - upsampled)
            start = time.perf_counter()
            ext = job.task.output.suffix.lstrip(".")
            quality = self.options.jpeg_quality or max(DEFAULT_JPEG_QUALITY, job.image.jpeg_quality or 0)
            data = encode_image(pixels, ext, quality, exif=job.image.exif, icc=job.image.icc)  # camera, date and place stay
            seconds["encode"] += time.perf_counter() - start
            if loses_transparency(pixels, ext) and not self.options.quiet:
                tqdm.write(one_line(f"facefix: note: {job.task.source}: its transparency can't go into a .{ext} "
                                    "file: flattened onto white (--ext png keeps it)"), file=sys.stderr)
            if job.image.trailer:
                self._motion_photo_note(job, ext)
                if ext in ("jpg", "jpeg"):
                    data += job.image.trailer  # where it was: after the picture's end marker
            write_bytes_atomic(job.task.output, data)
            if self.options.save_faces:
                self._save_faces(job)
        except Exception as error:
            return f"{job.task.source}: {error_text(error)}"
        return None

    def _motion_photo_note(self, job: ImageJob, ext: str) -> None:
        if self.options.quiet:
            return
        size = len(job.image.trailer) / 1024
        kept = ("is kept after the restored picture" if ext in ("jpg", "jpeg")
                else f"is not kept: a .{ext} output can't hold it")
        tqdm.write(one_line(f"facefix: {job.task.source}: a motion photo: its video ({size:.0f} KiB) {kept}"),
                   file=sys.stderr)

    def _save_faces(self, job: ImageJob) -> None:
        root = job.task.output.parent
        stem = job.task.faces_stem or job.task.output.stem
        for index, face in enumerate(job.faces):
            crop = original_at_output_size(face, self.output_size)
            name = f"{stem}_{index:02d}.png"
            for folder, pixels in (
                ("cropped_faces", face.crop),
                ("restored_faces", face.restored),
                ("cmp", np.concatenate([crop, face.restored], axis=1)),
            ):
                write_bytes_atomic(root / folder / name, encode_image(pixels, "png"))


@dataclass(frozen=True)
class _Sizes:
    input_size: int
    output_size: int


class FaceBatcher:
    """Faces of several images share restorer batches of ``batch_size``; a batch that fails
    fails its images (their other faces are then not restored), and the run goes on."""

    def __init__(self, restorer: Any, parser: Any | None, batch_size: int,
                 timed: Callable[..., Any] | None = None):
        self.restorer = restorer
        self.parser = parser
        self.batch_size = max(1, batch_size)
        self.timed = timed
        self.jobs: list[ImageJob] = []  # in input order, until taken by :meth:`take_ready`
        self._queue: list[AlignedFace] = []

    def add(self, job: ImageJob) -> None:
        self.jobs.append(job)
        if job.error is None:
            self._queue.extend(job.faces)

    def drain(self, final: bool = False) -> None:
        """Restore every full batch (and the last partial one when ``final``)."""
        while self._queue and (final or len(self._queue) >= self.batch_size):
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size:]
            try:
                restore_faces(self.restorer, self.parser, batch, self.timed)
            except Exception as error:
                message = error_text(error)
                # by identity: faces hold arrays, so == between them is not a truth value
                batch_ids = {id(face) for face in batch}
                failed_ids: set[int] = set()
                for job in self.jobs:
                    if job.error is None and any(id(face) in batch_ids for face in job.faces):
                        job.error = f"{job.task.source}: restoring failed: {message}"
                        failed_ids.update(id(face) for face in job.faces)
                self._queue = [face for face in self._queue if id(face) not in failed_ids]

    def take_ready(self) -> list[ImageJob]:
        """The leading jobs whose faces are all back (or that failed), in input order."""
        ready = []
        while self.jobs and self.jobs[0].ready:
            ready.append(self.jobs.pop(0))
        return ready


class Pipeline:
    """The local engine: composes the chosen components; :meth:`run` processes files into a folder.

    Images are read and detected one after another, their aligned faces queue up, and
    every ``batch_size`` faces go through the parser and restorer together. An image is
    written as soon as all of its faces are back, in input order.
    """

    def __init__(
        self,
        restorer: Any,
        blender: Any | None = None,
        detector: Any | None = None,
        parser: Any | None = None,
        options: PipelineOptions | None = None,
        report: Callable[[str], None] | None = None,
        upsampler: Any | None = None,
    ):
        self.restorer = restorer
        self.blender = blender
        self.detector = detector
        self.parser = parser
        self.options = options or PipelineOptions()
        self.report = report or (lambda message: tqdm.write(message, file=sys.stderr))
        check_components(restorer, blender, detector, parser, self.options.aligned)
        self.upsampler = upsampler
        self.stages = ImageStages(self.options, *restorer_geometry(restorer), detector=detector, blender=blender,
                                  upsampler=upsampler)
        self.summary = Summary()

    def _timed(self, stage: str, function: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = function(*args)
        self.summary.stage_seconds[stage] += time.perf_counter() - start
        return result

    def output_path(self, out_dir: Path, relative: Path, image_format: str | None) -> Path:
        return output_path(self.options, out_dir, relative, image_format)

    def run(self, files: list[tuple[Path | str, Path]], out_dir: Path) -> Summary:
        """Process ``(input file, relative output path)`` pairs into ``out_dir``."""
        plan = plan_images(files, out_dir, self.options)
        progress = tqdm(total=len(files), desc="restore", unit="img", disable=self.options.quiet, file=sys.stderr)
        start_summary(self.summary, plan, self.report, progress)
        batcher = FaceBatcher(self.restorer, self.parser, self.options.faces.batch_size, self._timed)
        for task in plan.tasks:
            batcher.add(self.stages.prepare(task))
            batcher.drain()
            self._write_ready(batcher, progress)
        batcher.drain(final=True)
        self._write_ready(batcher, progress)
        progress.close()
        return self.summary

    def _write_ready(self, batcher: FaceBatcher, progress: tqdm) -> None:
        for job in batcher.take_ready():
            error = self.stages.write(job)
            finish_job(self.summary, job.task.source, len(job.faces), job.stage_seconds, error, self.options.quiet,
                       self.report)
            progress.update(1)


def restorer_geometry(restorer: Any) -> tuple[int, int, Any]:
    """What the image steps need of the restorer: input size, output size, alignment template."""
    return restorer.input_size, restorer.output_size, getattr(restorer, "template", None)


def check_components(restorer: Any, blender: Any | None, detector: Any | None, parser: Any | None,
                     aligned: bool) -> None:
    needs_parsing = getattr(restorer, "needs_parsing", False) or getattr(blender, "needs_parsing", False)
    if needs_parsing and parser is None:
        raise FacefixError("the chosen restorer or blender needs parsing maps: choose a parser with --parser")
    if not aligned and (detector is None or blender is None):
        raise FacefixError("whole-image restoration needs a detector and a blender")
    if aligned and getattr(restorer, "template", None) is not None:
        raise FacefixError(f"{getattr(restorer, 'name', '') or 'this restorer'} aligns faces to its own template, "
                           "not FFHQ's: --aligned inputs (FFHQ-aligned crops) need another restorer; restore "
                           "whole images instead")


def _fail(summary: Summary, message: str, report: Callable[[str], None]) -> None:
    summary.failed += 1
    summary.errors.append(message)
    report(f"error: {one_line(message)}")


def start_summary(summary: Summary, plan: Plan, report: Callable[[str], None], progress: tqdm) -> None:
    """Count what the plan skipped or refused (each engine's first step)."""
    summary.skipped += plan.skipped
    progress.update(plan.skipped)
    for message in plan.errors:
        _fail(summary, message, report)
        progress.update(1)


def finish_job(summary: Summary, source: Path | str, faces: int, stage_seconds: dict[str, float],
               error: str | None, quiet: bool, report: Callable[[str], None]) -> None:
    """Count one image written (``error`` None) or failed, the same way in every engine."""
    for stage, seconds in stage_seconds.items():
        summary.stage_seconds[stage] += seconds
    if error is not None:
        _fail(summary, error, report)
        return
    summary.processed += 1
    summary.faces += faces
    if not faces:
        summary.without_faces += 1
        if not quiet:
            report(f"{source}: no face found; written unchanged")


def restore_faces(restorer: Any, parser: Any | None, faces: list[AlignedFace],
                  timed: Callable[..., Any] | None = None) -> None:
    """Parse (when a parser is given) and restore ``faces`` as one batch, in place.

    ``timed(stage, function, *args)`` runs each network call, so callers can time the
    stages; by default it just calls the function.
    """
    run = timed or (lambda stage, function, *args: function(*args))
    crops = np.stack([face.crop for face in faces])
    parsing = None
    restorer_parses = getattr(restorer, "needs_parsing", False)
    if parser is not None and restorer_parses:  # the restorer's input: at the size it was trained on
        parsing = run("parse", parser.parse, crops)
    elif parser is not None:  # only for the paste masks: no finer than each paste needs
        parsing = run("parse", parse_for_paste, parser, crops, [face.paste_size for face in faces])
    if parsing is not None:
        for face, labels in zip(faces, parsing):
            face.parsing = labels
    restorer_parsing = parsing if restorer_parses else None
    restored = run("restore", restorer.restore, crops, restorer_parsing)
    expected = (len(faces), restorer.output_size, restorer.output_size, 3)
    if restored.shape != expected or restored.dtype != np.uint8:
        raise FacefixError(f"restorer returned {restored.shape} {restored.dtype}, expected {expected} uint8")
    for face, output in zip(faces, restored):
        face.restored = output


def original_at_output_size(face: AlignedFace, size: int) -> np.ndarray:
    """The aligned input face enlarged (bicubic) to the restorer's output size, uint8."""
    return cv2.resize(face.crop, (size, size), interpolation=cv2.INTER_CUBIC)


def blend_with_original(restored: np.ndarray, original: np.ndarray, blend: float) -> np.ndarray:
    """``blend`` of the restored face and ``1 - blend`` of the original (facefusion's enhancer
    blend), in float32 on the inputs' scale; 1 returns the restored face unchanged."""
    restored = restored.astype(np.float32)
    if blend >= 1.0:
        return restored
    return blend * restored + (1.0 - blend) * original.astype(np.float32)


#: Channels of a colour image this close everywhere (levels of 8 bits) make it a grey one.
GRAY_TOLERANCE = 1


def stored_gray(pixels: np.ndarray) -> bool:
    """Whether a BGR(A) image is grey stored as colour (a scan, an old photo saved as RGB)."""
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return False
    tolerance = GRAY_TOLERANCE * (257 if pixels.dtype == np.uint16 else 1)
    sample = pixels[::2, ::2, :3].astype(np.int32)  # every other pixel: colour anywhere shows
    return bool(np.abs(sample[:, :, 0] - sample[:, :, 1]).max() <= tolerance
                and np.abs(sample[:, :, 1] - sample[:, :, 2]).max() <= tolerance)


def as_gray(face: np.ndarray) -> np.ndarray:
    """A BGR float face as grey (ITU-R BT.601 luma, as OpenCV's BGR2GRAY), in three channels."""
    luma = face[:, :, 0] * 0.114 + face[:, :, 1] * 0.587 + face[:, :, 2] * 0.299
    return np.repeat(luma[:, :, None], 3, axis=2).astype(np.float32)


#: A face pasted at least this much larger than the restorer's output keeps its own detail.
DETAIL_MIN_SCALE = 1.1


def octave_band(face: np.ndarray) -> np.ndarray:
    """The detail of ``face`` above half its resolution: itself less itself halved and back."""
    size = face.shape[0]
    half = cv2.resize(face, (size // 2, size // 2), interpolation=cv2.INTER_AREA)
    return face - cv2.resize(half, (size, size), interpolation=cv2.INTER_CUBIC)


def with_clean_top_octave(restored: np.ndarray, original: np.ndarray) -> np.ndarray:
    """``restored`` with its top octave taken from ``original`` (the same face, same size) as
    far as the original holds as much detail there: a large face that was sharp already keeps
    its own texture instead of the network's rendering of it; a blurred one (no energy in
    that octave) keeps what the network restored."""
    restored_band, original_band = octave_band(restored), octave_band(original)
    restored_energy = float(np.var(restored_band))
    if restored_energy <= 0.0:
        return restored
    share = min(1.0, float(np.var(original_band)) / restored_energy)
    return restored + share * (original_band - restored_band)


def with_own_detail(restored: np.ndarray, pixels: np.ndarray, face: AlignedFace, input_size: int,
                    upscale: float) -> tuple[np.ndarray, float] | None:
    """A face the image holds at more pixels than the restorer gives back (a 2048 px portrait's
    face, shrunk 1.5x into a 512 px crop) loses, pasted from the network's output, every detail
    finer than that crop: brow hair, lashes, skin texture. The network can't restore what its
    crop doesn't hold, so this keeps the original's own: the restored face enlarged to the
    paste size plus the band of the original above the crop's resolution (the aligned face at
    the paste size, less itself brought down to the crop and back). Returns the larger face and
    its scale against the input crop, or None for a face pasted no larger than the output."""
    size = restored.shape[0]
    paste = face.paste_size
    if paste is None or paste < DETAIL_MIN_SCALE * size:
        return None
    native = paste / upscale  # the face's own pixels: finer detail than that isn't in the image
    if native < DETAIL_MIN_SCALE * size:
        return None
    big = int(round(paste))
    scale = big / input_size
    source = pixels if pixels.ndim == 3 else pixels[:, :, None].repeat(3, axis=2)
    hr_affine = alignment.scaled_affine(np.asarray(face.affine, np.float64), scale)
    fine = cv2.warpAffine(np.ascontiguousarray(source[:, :, :3]), hr_affine, (big, big), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
    small = cv2.resize(fine, (size, size), interpolation=cv2.INTER_AREA)  # the original at the crop's scale
    coarse = cv2.resize(small, (big, big), interpolation=cv2.INTER_CUBIC)
    enlarged = cv2.resize(with_clean_top_octave(restored, small), (big, big), interpolation=cv2.INTER_CUBIC)
    return enlarged + (fine - coarse), scale


def paste_faces(pixels: np.ndarray, faces: list[AlignedFace], restorer: Any, blender: Any, upscale: float,
                color_match: bool = True, blend: float = 1.0, upsampler: Any | None = None,
                seconds: dict[str, float] | None = None, keep_detail: bool = True) -> np.ndarray:
    """The whole image resized by ``upscale`` with every restored face pasted back.

    ``pixels`` keeps its layout and depth (gray, BGR, BGRA; 8 or 16 bit); the faces'
    ``affine`` map ``pixels`` to their crops, and ``restored`` holds the restorer's output.
    ``blend`` below 1 mixes each restored face with its original before it goes back.
    ``upsampler`` (a background upsampler) enlarges the background when ``upscale`` grows
    the image; its time is added to ``seconds["upsample"]``.
    """
    height, width = pixels.shape[:2]
    start = time.perf_counter()
    background = enlarged_background(pixels, round(width * upscale), round(height * upscale), upsampler)
    if seconds is not None and upsampler is not None:
        seconds["upsample"] += time.perf_counter() - start
    if not faces:
        return background
    value_range = 65535.0 if pixels.dtype == np.uint16 else 255.0
    canvas = to_canvas(background)
    value_scale = value_range / 255.0
    face_scale = restorer.output_size / restorer.input_size
    gray = stored_gray(pixels)
    for face in faces:
        restored = face.restored.astype(np.float32) * value_scale
        if color_match or blend < 1.0:
            original = original_at_output_size(face, restorer.output_size).astype(np.float32) * value_scale
            if color_match:
                restored = match_color(restored, original, value_range=value_range)
            restored = blend_with_original(restored, original, blend)
        if gray:  # a black-and-white photo stays black and white: no tint the network invents
            restored = as_gray(restored)
        scale = face_scale
        detailed = with_own_detail(restored, pixels, face, restorer.input_size, upscale) if keep_detail else None
        parsing = face.parsing
        if detailed is not None:
            restored, scale = detailed
            np.clip(restored, 0.0, value_range, out=restored)
            if parsing is not None:
                parsing = cv2.resize(parsing, restored.shape[:2][::-1], interpolation=cv2.INTER_NEAREST)
        inverse = alignment.inverse_affine(face.affine, scale, upscale)
        canvas = blender.blend(canvas, restored, inverse, parsing, upscale)
    return from_canvas(canvas, like=background)
