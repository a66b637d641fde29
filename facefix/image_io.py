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
from facefix.sources import is_uri, list_uri, read_source, resolved

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: files an image folder may hold that `restore` leaves to `facefix video` (said, not silently skipped)
VIDEO_EXTENSIONS = (".gif", ".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                    ".3gp", ".ts", ".mts")
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
    icc: bytes = b""  # its colour profile (Display P3 from phones, Adobe RGB...), written back with the pixels

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


def _probe(path: Path, data: bytes, max_pixels: int) -> tuple[str, int, int | None, bytes, bytes]:
    """Format extension, EXIF orientation, (for JPEG) estimated quality, the EXIF to write
    again (orientation upright) and the ICC colour profile, from the header."""
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
            icc = probe.info.get("icc_profile") or b""
            quality = None
            tables = getattr(probe, "quantization", None)
            if tables and 0 in tables and len(tables[0]) == 64:
                quality = estimate_jpeg_quality(tables[0])
    except UnidentifiedImageError:
        if Path(str(path)).suffix.lower() in VIDEO_EXTENSIONS:
            raise InputError(path, "a video, not an image: restore it with `facefix video`") from None
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
    return ext, orientation, quality, exif_data, icc if isinstance(icc, bytes) else b""


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


def jpeg_end(data: bytes) -> int | None:
    """Where a JPEG's end-of-image marker ends, found by walking its segments and scans
    (what follows may be padding: cameras and messengers append zeros), or None when the
    file is cut before it. libjpeg decodes a truncated file into a half-grey image with
    only a warning, so completeness is checked here."""
    at, size = 2, len(data)
    while at + 1 < size:
        if data[at] != 0xFF:
            return None  # not at a marker: damaged
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == 0xD9:
            return at + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            at += 2
            continue
        if at + 4 > size:
            return None
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
        if marker != 0xDA:
            continue
        while True:  # entropy-coded data: 0xFF is stuffed (FF 00) or a restart marker within it
            at = data.find(b"\xff", at)
            if at < 0 or at + 1 >= size:
                return None
            following = data[at + 1]
            if following == 0 or 0xD0 <= following <= 0xD7:
                at += 2
            elif following == 0xFF:
                at += 1
            else:
                break
    return None


def _jpeg_is_complete(data: bytes) -> bool:
    return jpeg_end(data) is not None


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


#: what a file may hold beyond its pixels (8 bytes each, more than any image format
#: needs uncompressed): a motion photo's video, metadata, previews
EXTRA_BYTES = 256 << 20


def _most_bytes(path: Path | str, head: bytes, max_pixels: int) -> int:
    """The most bytes a file starting with ``head`` may hold: its pixels (from the header),
    8 bytes each, plus :data:`EXTRA_BYTES`; a header that says too many pixels, or none
    found in ``head``, bounds it by ``max_pixels`` instead."""
    import io

    pixels = max_pixels
    try:
        with warnings.catch_warnings(), PILImage.open(io.BytesIO(head)) as probe:
            warnings.simplefilter("ignore")
            pixels = min(max_pixels, probe.size[0] * probe.size[1])
    except Exception:
        pass
    return 8 * pixels + EXTRA_BYTES


def read_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode one image file (a path, or a URI fsspec can open), or raise :class:`InputError`
    saying why not."""
    if not is_uri(path):
        path = Path(path)
    data = read_source(path, lambda head: _most_bytes(path, head, max_pixels))
    if not data:
        raise InputError(path, "empty file (0 bytes)")
    ext, orientation, quality, exif, icc = _probe(path, data, max_pixels)
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
                 exif=exif, icc=icc)


def _fit_for_format(pixels: np.ndarray, ext: str) -> np.ndarray:
    """Drop what a format can't hold (JPEG: alpha and 16-bit; BMP: 16-bit)."""
    if ext in ("jpg", "jpeg", "bmp", "webp") and pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if ext in ("jpg", "jpeg") and pixels.ndim == 3 and pixels.shape[2] == 4:
        # flattened onto white, as a viewer shows it: the colour under transparent pixels is arbitrary
        top = float(np.iinfo(pixels.dtype).max)
        alpha = pixels[:, :, 3:4].astype(np.float32) / top
        pixels = np.clip(np.rint(pixels[:, :, :3] * alpha + top * (1 - alpha)), 0, top).astype(pixels.dtype)
    return np.ascontiguousarray(pixels)


def loses_transparency(pixels: np.ndarray, ext: str) -> bool:
    """Whether writing ``pixels`` as ``ext`` drops transparency they have (JPEG holds none)."""
    return (ext.lower().lstrip(".") in ("jpg", "jpeg") and pixels.ndim == 3 and pixels.shape[2] == 4
            and bool((pixels[:, :, 3] < np.iinfo(pixels.dtype).max).any()))


def with_icc_jpeg(jpeg: bytes, icc: bytes) -> bytes:
    """``jpeg`` with the colour profile ``icc`` in APP2 ``ICC_PROFILE`` segments (64 KB each at
    most), after its JFIF and EXIF segments."""
    chunk = 65535 - 2 - 14
    parts = [icc[start:start + chunk] for start in range(0, len(icc), chunk)]
    if not parts or len(parts) > 255 or not jpeg.startswith(b"\xff\xd8"):
        return jpeg
    segments = b"".join(b"\xff\xe2" + (len(part) + 16).to_bytes(2, "big") + b"ICC_PROFILE\0"
                        + bytes([index + 1, len(parts)]) + part for index, part in enumerate(parts))
    at = 2
    while jpeg[at:at + 2] in (b"\xff\xe0", b"\xff\xe1"):  # after APP0 (JFIF) and APP1 (EXIF)
        at += 2 + int.from_bytes(jpeg[at + 2:at + 4], "big")
    return jpeg[:at] + segments + jpeg[at:]


def with_icc_png(png: bytes, icc: bytes) -> bytes:
    """``png`` with the colour profile ``icc`` in an ``iCCP`` chunk right after ``IHDR``."""
    import zlib

    if not icc or not png.startswith(b"\x89PNG\r\n\x1a\n") or png[12:16] != b"IHDR":
        return png
    body = b"iCCP" + b"icc\0\0" + zlib.compress(icc)
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    at = 8 + 8 + int.from_bytes(png[8:12], "big") + 4  # signature, IHDR's length, type, data and CRC
    return png[:at] + chunk + png[at:]


def to_srgb(pixels: np.ndarray, icc: bytes) -> np.ndarray:
    """``pixels`` (BGR/BGRA, 8- or 16-bit) converted from the profile ``icc`` to sRGB, for a
    format facefix can't write a profile into; unchanged if the profile can't be read."""
    import io

    from PIL import ImageCms

    if pixels.ndim != 3:
        return pixels
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    except Exception:
        return pixels
    eight = pixels if pixels.dtype == np.uint8 else (pixels.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    rgb = PILImage.fromarray(np.ascontiguousarray(eight[:, :, 2::-1]))
    converted = np.asarray(ImageCms.applyTransform(rgb, transform))[:, :, ::-1]
    if pixels.dtype == np.uint16:  # converted at 8 bits; the finer levels below each step are kept
        residual = pixels[:, :, :3].astype(np.int32) - eight[:, :, :3].astype(np.int32) * 257
        converted = np.clip(converted.astype(np.int32) * 257 + residual, 0, 65535)
    if pixels.shape[2] == 4:
        converted = np.dstack([converted, pixels[:, :, 3]])
    return np.ascontiguousarray(converted.astype(pixels.dtype))


#: the formats whose files carry the input's colour profile; others get sRGB pixels
ICC_FORMATS = ("jpg", "jpeg", "png")


def encode_image(pixels: np.ndarray, ext: str, jpeg_quality: int = 95, exif: bytes = b"", icc: bytes = b"") -> bytes:
    """``pixels`` encoded as ``ext``; a JPEG carries ``exif`` (an input's, see :func:`with_exif`).
    A colour profile ``icc`` is written into JPEG and PNG files; pixels in another format are
    converted to sRGB instead, so that their colours stay what they were."""
    ext = ext.lower().lstrip(".")
    if icc and icc[16:20] != (b"GRAY" if pixels.ndim == 2 else b"RGB "):
        icc = b""  # a profile for other channels (a CMYK file's: the decoder made RGB of it) fits no output
    if icc and ext not in ICC_FORMATS:
        pixels, icc = to_srgb(pixels, icc), b""
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
    if ext in ("jpg", "jpeg"):
        data = with_icc_jpeg(with_exif(data, exif), icc) if icc else with_exif(data, exif)
    elif ext == "png" and icc:
        data = with_icc_png(data, icc)
    return data


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
    parent = resolved(file).parent
    return any(parent == folder or folder in parent.parents for folder in folders)


def _listed(root: Path, recursive: bool, errors: list[str] | None) -> list[Path]:
    """The entries of ``root`` (and, with ``recursive``, of its sub-folders), sorted; a folder
    that can't be listed (too deep for the system's path limit, unreadable) is named in
    ``errors`` and skipped, and the rest are still listed."""
    def unreadable(error: OSError) -> None:
        if errors is not None:
            errors.append(f"{error.filename}: can't be listed ({error.strerror or error}); its images are skipped")

    if not recursive:
        try:
            return sorted(root.iterdir())
        except OSError as error:
            unreadable(error)
            return []
    entries, visited = [], set()
    for folder, folders, files in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a link back up the tree: listed once, never followed round
            folders.clear()
            continue
        visited.add(real)
        folders.sort()
        entries.extend(Path(folder) / name for name in files)
    return sorted(entries)


def find_images(paths: list[Path | str], recursive: bool, exclude: Sequence[Path] = (),
                errors: list[str] | None = None, notes: list[str] | None = None) -> list[tuple[Path | str, Path]]:
    """Expand inputs into ``(file, relative output path)`` pairs, sorted and unique.

    Files given directly are kept whatever their extension (a wrong one is reported
    when read); folders contribute the files with image extensions, except those under
    ``exclude`` (the run's own output folder, when it lies inside an input). URIs
    (``s3://...``) are listed through fsspec. Folders that can't be listed are named in
    ``errors``, and videos and animations found in folders in ``notes``, when given.
    """
    found: dict[Path | str, Path] = {}
    for root in paths:
        if is_uri(root):
            for uri, relative in list_uri(str(root), IMAGE_EXTENSIONS, recursive):
                found.setdefault(uri, relative)
        elif root.is_dir():
            # an output folder below the input is left out; one that is the input itself can't
            # be (its inputs are there too), and the overwrite check guards it
            excluded = [resolved(folder) for folder in exclude if resolved(folder) != resolved(root)]
            for file in _listed(root, recursive, errors):
                if file.suffix.lower() in VIDEO_EXTENSIONS and not file.name.startswith(".") and notes is not None:
                    notes.append(f"{file}: skipped, a video or animation (`facefix video` restores those)")
                if file.suffix.lower() not in IMAGE_EXTENSIONS or file.name.startswith("."):
                    continue
                try:
                    # FIFOs and devices with an image's name are kept, to be refused in one line each
                    if file.is_dir() or _inside_any(file, excluded):
                        continue
                except OSError as error:  # a path past the system's limit
                    if errors is not None:
                        errors.append(f"{file}: can't be read ({error.strerror or error})")
                    continue
                # keyed as listed, not by a link's target: errors name the file the folder holds
                found.setdefault(Path(os.path.abspath(file)), file.relative_to(root))
        else:  # named directly: errors name it as given, not a link's target
            found.setdefault(Path(os.path.abspath(root)), Path(root.name))
    return sorted(((file, rel) for file, rel in found.items()), key=lambda item: str(item[1]))
