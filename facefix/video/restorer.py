"""Restoring the faces of a video: ffmpeg pipes in and out, face tracks, overlapping stages.

Frames never touch the disk and are never all in memory:

    ffmpeg (decode) ─ bgr24 pipe ─▶ read ─▶ detect + track + align ─▶ restore (batches
    across frames) ─▶ paste back ─ Matroska pipe ─▶ ffmpeg (encode + audio from the input)

Each arrow is a bounded queue between threads, so decoding, the networks and encoding
run at the same time, and memory holds a fixed number of frames whatever the length.

Timing is kept exactly. ffmpeg's ``showinfo`` filter reports every decoded frame's
timestamp (in the stream's own time base) on stderr; frames go to the encoder in a
minimal Matroska stream that carries those timestamps, and mp4/mov outputs get the
input's time base as their track timescale. So constant rates such as 30000/1001,
variable frame rates and the video's start offset against the audio all survive. A raw
pipe would make every frame last ``1/fps``.

ffprobe is not needed: stream information comes from the header ffmpeg prints for
``-i`` and from one demux-only pass (``-c copy -f framecrc``) that lists the packets.
"""

from __future__ import annotations

import collections
import queue
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

from facefix import alignment
from facefix.atomic import atomic_path
from facefix.errors import FacefixError, InputError, counted
from facefix.pipeline import (
    MIN_EYE_DISTANCE,
    AlignedFace,
    FaceOptions,
    detect,
    paste_faces,
    restore_faces,
    select_faces,
)
from facefix.video.commands import EncodeSettings, check_codec, encode_args, output_container, output_size
from facefix.video.ffmpeg import find_ffmpeg, probe
from facefix.video.info import VideoInfo, run_times
from facefix.video.segments import keyframe_plan
from facefix.video.pipes import Frame, FrameReader, FrameWriter
from facefix.video.tracking import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, FaceTracker

#: Frames waiting between two stages; what bounds memory.
QUEUE_FRAMES = 4


@dataclass
class VideoOptions:
    faces: FaceOptions = field(default_factory=FaceOptions)
    detect_every: int = 1
    smoothing: bool = True
    smooth_cutoff: float = DEFAULT_MIN_CUTOFF
    smooth_beta: float = DEFAULT_BETA
    start: float | None = None
    end: float | None = None
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    seed: int = 0
    quiet: bool = False
    # one segment of a longer run (facefix.distributed.video): the first ``warmup_frames``
    # decoded frames only settle the face tracks, ``first_index`` is the first decoded
    # frame's number in the whole run (the --detect-every schedule), and the file gets
    # video alone, without rotation metadata (the join adds both)
    warmup_frames: int = 0
    first_index: int = 0
    segment: bool = False
    max_frames: int | None = None  # stop after this many decoded frames
    keyframes: tuple[int, ...] | None = None  # frames (numbered from the first written) to encode as
                                              # keyframes; None: where the input has them
    seek_absolute: bool = False  # ``start`` is a timestamp, not a time after the file's start


@dataclass
class VideoSummary:
    output: Path
    frames: int = 0
    faces: int = 0
    tracks: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))

    def line(self) -> str:
        fps = self.frames / self.seconds if self.seconds else 0.0
        tracks = counted(self.tracks, "face track")
        return (f"{counted(self.frames, 'frame')}, {counted(self.faces, 'face')} restored ({tracks}) in "
                f"{self.seconds:.1f} s "
                f"({fps:.2f} fps) -> {self.output}")


@dataclass
class _Work:
    frame: Frame
    faces: list[AlignedFace]

    @property
    def ready(self) -> bool:
        return all(face.restored is not None for face in self.faces)


class _Stopped(Exception):
    """Another stage failed or the user interrupted: leave quietly."""


_END = object()


class VideoRestorer:
    """Restores the faces of one video into another file, atomically."""

    def __init__(self, restorer: Any, detector: Any, blender: Any, parser: Any | None = None,
                 options: VideoOptions | None = None, ffmpeg_exe: str | None = None,
                 report: Callable[[str], None] | None = None, upsampler: Any | None = None):
        self.restorer = restorer
        self.upsampler = upsampler  # the background upsampler, if any
        self.detector = detector
        self.blender = blender
        self.parser = parser
        self.options = options or VideoOptions()
        self.ffmpeg = ffmpeg_exe or find_ffmpeg()
        self.report = report or (lambda message: tqdm.write(message, file=sys.stderr))
        needs_parsing = getattr(restorer, "needs_parsing", False) or getattr(blender, "needs_parsing", False)
        if needs_parsing and parser is None:
            raise FacefixError("the chosen restorer or blender needs parsing maps: choose a parser with --parser")
        if self.options.detect_every < 1:
            raise FacefixError("--detect-every must be at least 1")

    # -- stages (each runs in its own thread) --

    def _decode(self, reader: FrameReader, out: queue.Queue) -> None:
        iterator = iter(reader)
        limit = self.options.max_frames
        decoded = 0
        while limit is None or decoded < limit:
            decoded += 1
            started = time.perf_counter()
            frame = next(iterator, None)
            self._add("decode", started)
            if frame is None:
                break
            self._put(out, frame)
        self._put(out, _END)

    def _analyse(self, source: queue.Queue, out: queue.Queue) -> None:
        options = self.options
        tracker = FaceTracker(smoothing=options.smoothing, min_cutoff=options.smooth_cutoff, beta=options.smooth_beta)
        size = self.restorer.input_size
        track_ids: set[int] = set()
        while True:
            frame = self._get(source)
            if frame is _END:
                break
            started = time.perf_counter()
            # a frame is detected on schedule, and whenever no face is being tracked, so
            # a face entering the picture is found without waiting for the next slot
            detections = None
            if (frame.index + options.first_index) % options.detect_every == 0 or tracker.active == 0:
                # frames are detected whole: tiles would cost every frame seconds (4K: 6 tiles)
                found = detect(self.detector, frame.pixels, options.faces.min_face_size, tiled=False)
                detections = select_faces(found, frame.pixels.shape, options.faces)
            self._add("detect", started)
            started = time.perf_counter()
            gray = cv2.cvtColor(frame.pixels, cv2.COLOR_BGR2GRAY)
            tracked = tracker.update(detections, frame.time, gray)
            self._add("track", started)
            if frame.index < options.warmup_frames:
                continue
            started = time.perf_counter()
            faces = []
            for face in tracked:
                if np.linalg.norm(face.landmarks[1] - face.landmarks[0]) < MIN_EYE_DISTANCE:
                    continue
                affine = alignment.estimate_affine(face.landmarks, size, getattr(self.restorer, "template", None))
                faces.append(AlignedFace(crop=alignment.warp_face(frame.pixels, affine, size), affine=affine,
                                         paste_size=alignment.paste_size(affine, size, options.faces.upscale)))
                track_ids.add(face.track_id)
            self._add("align", started)
            self._put(out, _Work(frame=frame, faces=faces))
        self._summary.tracks = len(track_ids)
        self._put(out, _END)

    def _restore(self, source: queue.Queue, out: queue.Queue) -> None:
        import torch

        batch_size = max(1, self.options.faces.batch_size)
        # frames held while their batch fills; bounded so a run of faceless frames
        # can't pile up behind a partial batch
        limit = batch_size + QUEUE_FRAMES
        pending: collections.deque[_Work] = collections.deque()
        waiting: list[AlignedFace] = []

        def run_batch(faces: list[AlignedFace]) -> None:
            # restorers that draw noise draw the same noise for every batch, so a still
            # face doesn't shimmer from frame to frame
            torch.manual_seed(self.options.seed)
            restore_faces(self.restorer, self.parser, faces, self._timed)

        def flush(everything: bool) -> None:
            while waiting and (everything or len(waiting) >= batch_size or len(pending) >= limit):
                batch, waiting[:] = waiting[:batch_size], waiting[batch_size:]
                run_batch(batch)
            while pending and pending[0].ready:
                self._put(out, pending.popleft())

        while True:
            work = self._get(source)
            if work is _END:
                break
            pending.append(work)
            waiting.extend(work.faces)
            flush(False)
        flush(True)
        self._put(out, _END)

    def _encode(self, source: queue.Queue, reader: FrameReader, info: VideoInfo, source_path: Path,
                temporary: Path, target: Path, container: str, progress: tqdm) -> None:
        settings = self.options.encode
        rotation = info.rotation
        writer: FrameWriter | None = None
        first_time = 0.0
        try:
            while True:
                work = self._get(source)
                if work is _END:
                    break
                frame = work.frame
                started = time.perf_counter()
                pixels = paste_faces(frame.pixels, work.faces, self.restorer, self.blender, self.options.faces.upscale,
                                     self.options.faces.color_match, self.options.faces.blend, self.upsampler,
                                     keep_detail=self.options.faces.keep_detail)
                if rotation:  # back to the input's stored orientation; the metadata turns it upright
                    pixels = np.rot90(pixels, -(rotation // 90))
                self._add("blend", started)
                started = time.perf_counter()
                if writer is None:
                    first_time = frame.time
                    width, height = output_size(info.width, info.height, self.options.faces.upscale, settings.pix_fmt)
                    exact = (round(info.width * self.options.faces.upscale), round(info.height * self.options.faces.upscale))
                    if (width, height) != exact and not self.options.quiet:
                        self.report(f"facefix: note: {settings.pix_fmt} needs even sizes; {exact[0]}x{exact[1]} "
                                    f"frames are cropped to {width}x{height}")
                    written = replace(info, audio=(), rotation=0) if self.options.segment else info
                    args = encode_args(self.ffmpeg, source_path, temporary, written, settings, container=container,
                                       first_time=first_time, time_base=reader.time_base,
                                       start=self.options.start, end=self.options.end, keyframes=self._keyframes(info))
                    writer = FrameWriter(args, width, height, target)
                    self._writer = writer
                pixels = np.ascontiguousarray(pixels[: writer.height, : writer.width])
                writer.write(pixels, round((frame.time - first_time) * 1e6), round(frame.duration * 1e6))
                self._add("encode", started)
                self._summary.frames += 1
                self._summary.faces += len(work.faces)
                progress.update(1)
            if writer is None:
                span = "" if self.options.start is None and self.options.end is None else " between --start and --end"
                raise InputError(source_path, f"no video frames to decode{span}")
            started = time.perf_counter()
            writer.close()
            self._add("encode", started)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    def _keyframes(self, info: VideoInfo) -> tuple[int, ...]:
        if self.options.keyframes is not None:
            return self.options.keyframes
        return tuple(keyframe_plan(run_times(info, self.options.start, self.options.end), list(info.keyframe_times)))

    # -- plumbing --

    def _add(self, stage: str, started: float) -> None:
        self._summary.stage_seconds[stage] += time.perf_counter() - started

    def _timed(self, stage: str, function: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self._add(stage, started)

    def _put(self, target: queue.Queue, item: Any) -> None:
        while not self._stop.is_set():
            try:
                target.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _get(self, source: queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)
            except _Stopped:
                pass
            except BaseException as error:
                with self._lock:
                    if self._error is None:
                        self._error = error
                self._stop.set()

        thread = threading.Thread(target=body, name=f"facefix-{name}", daemon=True)
        thread.start()
        return thread

    def run(self, source: Path, target: Path, info: VideoInfo | None = None) -> VideoSummary:
        """Restore ``source`` into ``target`` (written under a temporary name, then renamed).

        ``info`` is ``probe(source)`` when the caller has it already.
        """
        source, target = Path(source), Path(target)
        if target.resolve() == source.resolve():
            raise FacefixError(f"{target}: the output would overwrite the input; choose another -o")
        container = output_container(target)
        check_codec(container, self.options.encode.codec)
        info = info if info is not None else probe(source, self.ffmpeg)
        start, end = self.options.start, self.options.end
        if start is not None and end is not None and end <= start:
            raise FacefixError(f"--end ({end:g} s) must be after --start ({start:g} s)")
        expected = max(0, info.frames_between(start, end) - self.options.warmup_frames)
        if expected == 0 and (start is not None or end is not None):
            raise InputError(source, "no video frames between --start and --end")

        self._summary = VideoSummary(output=target)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._writer: FrameWriter | None = None
        reader = FrameReader(self.ffmpeg, info, start, end, self.options.seek_absolute)
        progress = tqdm(total=expected, desc="video", unit="frame", disable=self.options.quiet, file=sys.stderr,
                        dynamic_ncols=True)
        decoded, analysed, restored = (queue.Queue(maxsize=QUEUE_FRAMES) for _ in range(3))
        started = time.perf_counter()
        threads = []
        # the cleanup below runs inside the block: the encoder is stopped before its
        # temporary file is removed, so it can't recreate the file afterwards
        with atomic_path(target) as temporary:
            try:
                threads = [
                    self._thread("decode", self._decode, reader, decoded),
                    self._thread("analyse", self._analyse, decoded, analysed),
                    self._thread("restore", self._restore, analysed, restored),
                    self._thread("encode", self._encode, restored, reader, info, source, temporary, target,
                                 container, progress),
                ]
                for thread in threads:
                    while thread.is_alive():  # join with a timeout, so Ctrl-C is seen at once
                        thread.join(timeout=0.2)
                        if self._stop.is_set():
                            break
                    if self._stop.is_set():
                        break
                if self._error is not None:
                    raise self._error
                if self._stop.is_set():
                    raise _Stopped
                self._verify(temporary, target)
            except BaseException as error:
                self._stop.set()
                reader.close()
                if self._writer is not None:
                    self._writer.abort()
                for thread in threads:
                    thread.join(timeout=10)
                if isinstance(error, _Stopped) and self._error is not None:
                    raise self._error from None
                raise
            finally:
                progress.close()
                reader.close()
        self._summary.seconds = time.perf_counter() - started
        return self._summary

    def _verify(self, temporary: Path, target: Path) -> None:
        """The written file must hold every frame: a muxer that dropped some is an error."""
        written = probe(temporary, self.ffmpeg)
        if len(written.packet_times) != self._summary.frames:
            raise FacefixError(f"{target}: the encoder wrote {len(written.packet_times)} frames of "
                               f"{self._summary.frames}")
