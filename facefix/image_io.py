"""Reading and writing images without surprises.

Decoding is done by OpenCV (fast, keeps 16-bit and alpha); Pillow only reads the
header first, to refuse non-images and oversized images before decoding them and to
get the EXIF orientation. Writes go to a temporary file beside the target and are
renamed into place, so an interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from facefix.atomic import write_bytes_atomic
from facefix.errors import InputError, brief
from facefix.sources import is_uri, list_uri, read_source

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 150_000_000  # ~12k x 12k: well past any camera, short of a decompression bomb

# facefix enforces --max-pixels from the header itself; PIL's own bomb guard would refuse
# (and warn about) sizes the user allowed
PILImage.MAX_IMAGE_PIXELS = None

_PIL_FORMAT_TO_EXT = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp", "MPO": "jpg"}

# EXIF orientation tag values → how to turn the stored pixels upright.
_ORIENTATION_OPS = {
    2: (None, 1),  # mirrored horizontally
    3: (cv2.ROTATE_180, None),
    4: (None, 0),  # mirrored vertically
    5: (cv2.ROTATE_90_CLOCKWISE, 1),
    6: (cv2.ROTATE_90_CLOCKWISE, None),
    7: (cv2.ROTATE_90_COUNTERCLOCKWISE, 1),
    8: (cv2.ROTATE_90_COUNTERCLOCKWISE, None),
}


@dataclass
class Image:
    """A decoded image, upright, in OpenCV channel order.

    ``pixels`` is ``H x W`` (gray), ``H x W x 3`` (BGR) or ``H x W x 4`` (BGRA), uint8
    or uint16, exactly as stored apart from the EXIF rotation.
    """

    path: Path | str  # a URI stays a string
    pixels: np.ndarray
    format: str  # file extension to write by default, without the dot
    jpeg_quality: int | None = None  # estimated quality of a JPEG input
    trailer: bytes = b""  # a motion photo's video, stored after the JPEG's end
    exif: bytes = b""  # its EXIF, orientation set upright, for a JPEG output to carry on

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def value_range(self) -> float:
        return 65535.0 if self.pixels.dtype == np.uint16 else 255.0

    def bgr8(self) -> np.ndarray:
        """The 3-channel 8-bit BGR view detectors and restorers work on."""
        return to_bgr8(self.pixels)


def to_bgr8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if pixels.shape[2] == 4:
        return np.ascontiguousarray(pixels[:, :, :3])
    return pixels


# IJG's standard luminance quantisation table (quality 50), in the row-major order
# Pillow reports tables in.
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], np.float64)  # fmt: skip


def estimate_jpeg_quality(luminance_table: list[int] | np.ndarray) -> int:
    """The IJG quality (1-100) whose scaled standard table is closest to ``luminance_table``."""
    table = np.asarray(luminance_table, np.float64)
    best_quality, best_error = 95, float("inf")
    for quality in range(1, 101):
        scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
        candidate = np.clip(np.floor((_IJG_LUMINANCE * scale + 50.0) / 100.0), 1, 255)
        error = float(np.abs(candidate - table).sum())
        if error < best_error:
            best_quality, best_error = quality, error
    return best_quality


#: The largest EXIF block a JPEG's APP1 segment holds (its length field counts itself).
MAX_EXIF_BYTES = 65533


def _upright_exif(exif: Any) -> bytes:
    """``exif`` serialised again with its orientation set to upright (the pixels are turned),
    or b"" when there is none or it doesn't fit one JPEG segment."""
    if not exif:
        return b""
    for tag in (0x8769, 0x8825):  # the Exif and GPS sub-IFDs: loaded, so they are written again
        if tag in exif:
            exif.get_ifd(tag)
    if 0x0112 in exif:
        exif[0x0112] = 1
    data = exif.tobytes()
    return data if len(data) <= MAX_EXIF_BYTES else b""


def with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """``jpeg`` with ``exif`` (``Exif\\0\\0`` and its TIFF block) as an APP1 segment, after
    the JFIF header when there is one, as cameras and photo tools write it."""
    if not exif or not jpeg.startswith(b"\xff\xd8"):
        return jpeg
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # APP0 (JFIF) first
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    segment = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    return jpeg[:at] + segment + jpeg[at:]


def _probe(path: Path, data: bytes, max_pixels: int) -> tuple[str, int, int | None, bytes]:
    """Format extension, EXIF orientation, (for JPEG) estimated quality and the EXIF to write
    again (orientation upright), from the header."""
    import io

    try:
        with warnings.catch_warnings(), PILImage.open(io.BytesIO(data)) as probe:
            # PIL's "corrupt EXIF" and TIFF-tag warnings would be a second line about the file
            warnings.simplefilter("ignore")
            width, height = probe.size
            pil_format = probe.format or ""
            frames = int(getattr(probe, "n_frames", 1) or 1)
            try:
                exif = probe.getexif()
                orientation = int(exif.get(0x0112, 1) or 1)
            except Exception:  # malformed EXIF must not make a good image unreadable
                exif, orientation = None, 1
            try:
                exif_data = _upright_exif(exif)
            except Exception:  # EXIF PIL reads but can't write back: the output goes without
                exif_data = b""
            quality = None
            tables = getattr(probe, "quantization", None)
            if tables and 0 in tables and len(tables[0]) == 64:
                quality = estimate_jpeg_quality(tables[0])
    except UnidentifiedImageError:
        raise InputError(path, "not an image file (unrecognised format)") from None
    except Exception as error:
        raise InputError(path, f"unreadable image header ({error})") from None
    if frames > 1 and pil_format != "MPO":  # MPO: a phone's JPEG with a depth map or preview after it
        raise InputError(path, f"holds {frames} frames (an animation or a multi-page file): facefix restores "
                               "still images; split it into frames first (or use `facefix video`)")
    if width * height > max_pixels:
        raise InputError(
            path,
            f"image too large: {width}x{height} = {width * height} pixels is over the limit of "
            f"{max_pixels} (raise it with --max-pixels)",
        )
    ext = _PIL_FORMAT_TO_EXT.get(pil_format, Path(str(path)).suffix.lower().lstrip(".") or "png")
    return ext, orientation, quality, exif_data


def motion_photo_start(data: bytes) -> int | None:
    """Where a motion photo's video begins after its JPEG (phones append an MP4 after the
    end-of-image marker: Google's directly, Samsung's behind ``MotionPhoto_Data``), or None."""
    for marker, before in ((b"MotionPhoto_Data", 0), (b"ftyp", 4)):
        found = data.find(marker, 2)
        while found != -1:
            start = found - before
            if start >= 2 and data[start - 2:start] == b"\xff\xd9":
                return start
            found = data.find(marker, found + 1)
    return None


def _jpeg_is_complete(data: bytes) -> bool:
    # libjpeg decodes a truncated file into a half-grey image with only a warning;
    # a complete JPEG ends with the EOI marker (some writers pad a few bytes after it).
    return b"\xff\xd9" in data[-64:]


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _c_stderr_captured():
    """What C libraries (libpng, libjpeg, libtiff inside OpenCV) print to stderr while the
    block runs, collected instead of printed: their "libpng warning: iCCP: too short" would
    be a second, unexplained line about a file that decodes fine. Yields a list that holds
    the text once the block is done."""
    said: list[str] = []
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no real stderr (embedded, pytest capture)
            yield said
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield said
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                said.append(capture.read(4096).decode("utf-8", "replace"))


def read_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode one image file (a path, or a URI fsspec can open), or raise :class:`InputError`
    saying why not."""
    if not is_uri(path):
        path = Path(path)
    data = read_source(path)
    if not data:
        raise InputError(path, "empty file (0 bytes)")
    ext, orientation, quality, exif = _probe(path, data, max_pixels)
    trailer = b""
    start = motion_photo_start(data) if ext == "jpg" else None
    if start is not None:  # the picture ends where the video begins
        data, trailer = data[:start], data[start:]
    if ext == "jpg" and not _jpeg_is_complete(data):
        raise InputError(path, "truncated JPEG (the end-of-image marker is missing)")
    with _c_stderr_captured() as said:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        detail = f": {brief(said[0], 200)}" if said and said[0].strip() else ""
        raise InputError(path, f"corrupt or truncated image (the decoder could not read it{detail})")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise InputError(path, f"unsupported pixel type {pixels.dtype} (8- and 16-bit images are supported)")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # gray + alpha, rare: expand to BGRA
        gray, alpha = pixels[:, :, 0], pixels[:, :, 1]
        pixels = np.dstack([gray, gray, gray, alpha])
    rotate, flip = _ORIENTATION_OPS.get(orientation, (None, None))
    if rotate is not None:
        pixels = cv2.rotate(pixels, rotate)
    if flip is not None:
        pixels = cv2.flip(pixels, flip)
    return Image(path=path, pixels=np.ascontiguousarray(pixels), format=ext, jpeg_quality=quality, trailer=trailer,
                 exif=exif)


def _fit_for_format(pixels: np.ndarray, ext: str) -> np.ndarray:
    """Drop what a format can't hold (JPEG: alpha and 16-bit; BMP: 16-bit)."""
    if ext in ("jpg", "jpeg", "bmp", "webp") and pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if ext in ("jpg", "jpeg") and pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    return np.ascontiguousarray(pixels)


def encode_image(pixels: np.ndarray, ext: str, jpeg_quality: int = 95, exif: bytes = b"") -> bytes:
    """``pixels`` encoded as ``ext``; a JPEG carries ``exif`` (an input's, see :func:`with_exif`)."""
    ext = ext.lower().lstrip(".")
    params: list[int] = []
    if ext in ("jpg", "jpeg"):
        # 4:4:4: no chroma subsampling. 4:2:0 alone costs some photos 10+ dB around
        # coloured edges, which a restoration tool should not add on top of its work.
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality),
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    elif ext == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(jpeg_quality)]
    try:
        ok, buffer = cv2.imencode(f".{ext}", _fit_for_format(pixels, ext), params)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"could not encode a {pixels.shape} {pixels.dtype} image as {ext}")
    data = buffer.tobytes()
    return with_exif(data, exif) if exif and ext in ("jpg", "jpeg") else data


def write_image(path: Path | str, pixels: np.ndarray, jpeg_quality: int = 95) -> None:
    """Encode by the file extension and write atomically."""
    path = Path(path)
    write_bytes_atomic(path, encode_image(pixels, path.suffix, jpeg_quality))


#: Rows of the float canvas converted back at a time (:func:`from_canvas`).
CANVAS_BAND_ROWS = 256


def to_canvas(pixels: np.ndarray) -> np.ndarray:
    """The float32 ``H x W x 3`` canvas blenders draw on, in the image's own value range."""
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2).astype(np.float32)
    return pixels[:, :, :3].astype(np.float32)


def from_canvas(canvas: np.ndarray, like: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Back to the layout and depth of ``like`` (gray stays gray; alpha is re-attached)."""
    info = np.iinfo(like.dtype)
    pixels = np.empty(canvas.shape, like.dtype)
    # in bands of rows: rounding and clipping a whole 4K float canvas at once would hold two
    # more float copies of it (~240 MB) for a moment
    for top in range(0, canvas.shape[0], CANVAS_BAND_ROWS):
        band = np.rint(canvas[top:top + CANVAS_BAND_ROWS])
        np.clip(band, info.min, info.max, out=band)
        pixels[top:top + CANVAS_BAND_ROWS] = band
    if like.ndim == 2:
        gray = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
        return gray
    if like.shape[2] == 4:
        if alpha is None:
            alpha = like[:, :, 3]
        return np.dstack([pixels, alpha.astype(like.dtype)])
    return pixels


def image_format(path: Path | str) -> str | None:
    """The extension ``read_image`` would give the file, from its header alone (None if unreadable)."""
    try:
        if is_uri(path):
            import fsspec

            with fsspec.open(str(path), "rb") as stream, PILImage.open(stream) as probe:
                pil_format = probe.format or ""
        else:
            with PILImage.open(path) as probe:
                pil_format = probe.format or ""
    except Exception:  # reading it properly will say why
        return None
    suffix = Path(str(path)).suffix.lower().lstrip(".")
    return _PIL_FORMAT_TO_EXT.get(pil_format, suffix or "png")


def _inside_any(file: Path, folders: list[Path]) -> bool:
    resolved = file.resolve().parent
    return any(resolved == folder or folder in resolved.parents for folder in folders)


def find_images(paths: list[Path | str], recursive: bool,
                exclude: Sequence[Path] = ()) -> list[tuple[Path | str, Path]]:
    """Expand inputs into ``(file, relative output path)`` pairs, sorted and unique.

    Files given directly are kept whatever their extension (a wrong one is reported
    when read); folders contribute the files with image extensions, except those under
    ``exclude`` (the run's own output folder, when it lies inside an input). URIs
    (``s3://...``) are listed through fsspec.
    """
    found: dict[Path | str, Path] = {}
    for root in paths:
        if is_uri(root):
            for uri, relative in list_uri(str(root), IMAGE_EXTENSIONS, recursive):
                found.setdefault(uri, relative)
        elif root.is_dir():
            pattern = "**/*" if recursive else "*"
            # an output folder below the input is left out; one that is the input itself can't
            # be (its inputs are there too), and the overwrite check guards it
            excluded = [Path(folder).resolve() for folder in exclude if Path(folder).resolve() != root.resolve()]
            for file in sorted(root.glob(pattern)):
                # FIFOs and devices with an image's name are kept, to be refused in one line each
                if (file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith(".") and not file.is_dir()
                        and not _inside_any(file, excluded)):
                    found.setdefault(file.resolve(), file.relative_to(root))
        else:
            found.setdefault(root.resolve(), Path(root.name))
    return sorted(((file, rel) for file, rel in found.items()), key=lambda item: str(item[1]))
