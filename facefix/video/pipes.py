"""The decoder and encoder processes: frames in through a bgr24 pipe, out through a
Matroska pipe, with ffmpeg's stderr read beside them (timestamps, errors)."""

from __future__ import annotations

import collections
import queue
import re
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from facefix.errors import FacefixError
from facefix.video.commands import decode_args
from facefix.video.ffmpeg import start_ffmpeg
from facefix.video.info import VideoInfo, ffmpeg_reason
from facefix.video.matroska import matroska_frame, matroska_header


@dataclass
class Frame:
    index: int
    pixels: np.ndarray  # upright BGR uint8
    time: float  # presentation time, seconds
    duration: float  # seconds


_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(\S+)\s+pts_time:\S+(?:\s+duration:\s*(\S+))?")
_SHOWINFO_CONFIG = re.compile(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)")


class _StderrReader(threading.Thread):
    """Drains a process's stderr (a full pipe would stall ffmpeg), keeping the last
    lines for error messages and handing ``showinfo`` frame timings to a queue."""

    def __init__(self, stream: IO[bytes], timings: queue.Queue | None = None):
        super().__init__(daemon=True)
        self.stream = stream
        self.timings = timings
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.time_base: Fraction | None = None
        self.frame_rate: Fraction | None = None
        self.configured = threading.Event()

    def run(self) -> None:
        try:
            self._drain()
        except (OSError, ValueError):  # the process was killed under us
            pass
        finally:
            self.configured.set()
            if self.timings is not None:
                self.timings.put(None)
            try:
                self.stream.close()
            except (OSError, ValueError):
                pass

    def _drain(self) -> None:
        for raw in self.stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if self.timings is not None and "showinfo" in line.lower():
                config = _SHOWINFO_CONFIG.search(line)
                if config and self.time_base is None:
                    num, den, rate_num, rate_den = map(int, config.groups())
                    self.time_base = Fraction(num, den) if den else None
                    self.frame_rate = Fraction(rate_num, rate_den) if rate_den and rate_num else None
                    self.configured.set()
                timing = _SHOWINFO.search(line)
                if timing:
                    pts, duration = timing.group(2), timing.group(3)
                    self.timings.put((int(timing.group(1)), _int_or_none(pts), _int_or_none(duration)))
                continue
            if line.strip():
                self.tail.append(line)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None  # NOPTS


class FrameReader:
    """Upright BGR frames of a video, one at a time, from an ffmpeg pipe."""

    def __init__(self, ffmpeg_exe: str, info: VideoInfo, start: float | None = None, end: float | None = None,
                 absolute: bool = False):
        self.info = info
        self.width, self.height = info.display_size
        self.frame_bytes = self.width * self.height * 3
        self._timings: queue.Queue = queue.Queue()
        self.process = start_ffmpeg(decode_args(ffmpeg_exe, info.path, start, end, absolute), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stderr = _StderrReader(self.process.stderr, self._timings)
        self._stderr.start()
        self._timings_done = False

    @property
    def time_base(self) -> Fraction | None:
        self._stderr.configured.wait(timeout=30)
        return self._stderr.time_base

    def _read_exact(self) -> bytearray | None:
        buffer = bytearray(self.frame_bytes)
        view = memoryview(buffer)
        filled = 0
        while filled < self.frame_bytes:
            count = self.process.stdout.readinto(view[filled:])
            if not count:
                break
            filled += count
        if filled == 0:
            return None
        if filled < self.frame_bytes:
            raise FacefixError(f"{self.info.path}: the decoder stopped inside a frame ({self._reason()})")
        return buffer

    def _next_timing(self, index: int) -> tuple[int | None, int | None]:
        while not self._timings_done:
            try:
                item = self._timings.get(timeout=60)
            except queue.Empty:
                break
            if item is None:
                self._timings_done = True
                break
            number, pts, duration = item
            if number == index:
                return pts, duration
        return None, None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        previous_time: float | None = None
        previous_duration = 0.0
        while True:
            buffer = self._read_exact()
            if buffer is None:
                break
            pts, duration = self._next_timing(index)
            time_base = self._stderr.time_base
            rate = self._stderr.frame_rate or Fraction(25)
            step = float(1 / rate)
            if pts is not None and time_base is not None:
                t = float(pts * time_base)
            else:  # no timestamp (raw streams): one nominal frame after the last
                t = 0.0 if previous_time is None else previous_time + (previous_duration or step)
            d = float(duration * time_base) if duration and time_base is not None else step
            pixels = np.frombuffer(buffer, np.uint8).reshape(self.height, self.width, 3)
            yield Frame(index=index, pixels=pixels, time=t, duration=d)
            previous_time, previous_duration = t, d
            index += 1
        self.process.stdout.close()
        code = self.process.wait()
        self._stderr.join(timeout=5)
        if code != 0:
            raise FacefixError(f"{self.info.path}: decoding failed ({self._reason()})")

    def _reason(self) -> str:
        self._stderr.join(timeout=2)
        return ffmpeg_reason(list(self._stderr.tail))

    def close(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen) -> None:
    """Kill and reap. Its output pipes are left to the threads reading them, which see
    end-of-file now (closing a pipe under a reading thread is not safe)."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    if process.stdin is not None:
        try:
            process.stdin.close()
        except (OSError, ValueError):
            pass


class FrameWriter:
    """Feeds timestamped frames to an encoding ffmpeg through a Matroska pipe."""

    def __init__(self, args: list[str], width: int, height: int, target: Path):
        self.width, self.height = width, height
        self.target = target
        self.frames = 0
        self._last_us = -1
        self._last_duration_us = 0
        self.process = start_ffmpeg(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._stderr = _StderrReader(self.process.stderr)
        self._stderr.start()
        self._write(matroska_header(width, height))

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self.process.stdin.write(data)
        except (BrokenPipeError, ValueError):
            raise FacefixError(f"{self.target}: encoding failed ({self._reason()})") from None

    def write(self, pixels: np.ndarray, time_us: int, duration_us: int) -> None:
        if pixels.shape != (self.height, self.width, 3) or pixels.dtype != np.uint8:
            raise FacefixError(f"frame of {pixels.shape} {pixels.dtype} for a {self.width}x{self.height} bgr24 stream")
        if time_us <= self._last_us:  # broken input timestamps: keep the output monotonic
            time_us = self._last_us + max(1, self._last_duration_us)
        before, after = matroska_frame(time_us, duration_us, pixels.nbytes)
        self._write(before)
        self._write(memoryview(np.ascontiguousarray(pixels)).cast("B"))
        self._write(after)
        self._last_us, self._last_duration_us = time_us, duration_us
        self.frames += 1

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        code = self.process.wait()
        self._stderr.join(timeout=5)
        if code != 0:
            raise FacefixError(f"{self.target}: encoding failed ({self._reason()})")

    def _reason(self) -> str:
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._stderr.join(timeout=2)
        return ffmpeg_reason(list(self._stderr.tail))

    def abort(self) -> None:
        _stop(self.process)
