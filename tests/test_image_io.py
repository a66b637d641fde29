"""Image reading and writing: formats, depth, alpha, orientation, corrupt files."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

from facefix.errors import InputError
from facefix.image_io import find_images, from_canvas, read_image, to_canvas, write_image
from conftest import shared_path


def gradient(height=40, width=60) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 4 % 256, y * 6 % 256, (x + y) % 256]).astype(np.uint8)


def test_png_round_trip_keeps_pixels_exactly(tmp_path):
    pixels = gradient()
    write_image(tmp_path / "a.png", pixels)
    image = read_image(tmp_path / "a.png")
    assert image.format == "png"
    assert np.array_equal(image.pixels, pixels)


def test_sixteen_bit_and_alpha_survive(tmp_path):
    deep = (gradient().astype(np.uint16) * 257 + 3).astype(np.uint16)
    alpha = np.full(deep.shape[:2], 40000, np.uint16)
    write_image(tmp_path / "deep.png", np.dstack([deep, alpha]))
    image = read_image(tmp_path / "deep.png")
    assert image.pixels.dtype == np.uint16 and image.pixels.shape[2] == 4
    assert image.value_range == 65535.0
    assert image.bgr8().dtype == np.uint8 and image.bgr8().shape[2] == 3
    back = from_canvas(to_canvas(image.pixels), like=image.pixels)
    assert np.array_equal(back, image.pixels)


def test_grayscale_stays_grayscale(tmp_path):
    gray = gradient()[:, :, 0]
    write_image(tmp_path / "g.png", gray)
    image = read_image(tmp_path / "g.png")
    assert image.pixels.ndim == 2
    assert image.bgr8().shape == gray.shape + (3,)
    assert np.array_equal(from_canvas(to_canvas(image.pixels), like=image.pixels), gray)


def test_exif_orientation_is_applied(tmp_path):
    pixels = gradient(30, 50)
    pil = PILImage.fromarray(pixels[:, :, ::-1])
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    pil.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rot.jpg")
    assert image.pixels.shape[:2] == (50, 30)
    upright = cv2.rotate(cv2.imread(str(tmp_path / "rot.jpg"), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION),
                         cv2.ROTATE_90_CLOCKWISE)
    assert np.array_equal(image.pixels, upright)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "empty file"),
        ("text.png", b"this is not an image at all\n" * 10, "not an image"),
    ],
)
def test_bad_files_raise_one_line_errors(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_image(tmp_path / name)
    message = str(caught.value)
    assert reason in message and name in message and "\n" not in message


def test_truncated_jpeg_and_png_are_refused(tmp_path):
    buffer = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "cut.jpg")
    ok, png = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (200, 200, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(png.tobytes()[: len(png) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_pixel_limit(tmp_path):
    write_image(tmp_path / "big.png", gradient(100, 100))
    with pytest.raises(InputError, match="too large"):
        read_image(tmp_path / "big.png", max_pixels=5000)


def test_writes_are_atomic_and_leave_no_temporaries(tmp_path):
    write_image(tmp_path / "out" / "x.jpg", gradient())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.jpg"]
    with pytest.raises(ValueError):
        write_image(tmp_path / "out" / "y.unknownformat", gradient())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.jpg"]


def test_find_images_recursive_and_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    for rel in ("a.png", "sub/b.jpg", "notes.txt", ".hidden.png"):
        (tmp_path / rel).write_bytes(b"x")
    flat = [str(rel) for _, rel in find_images([tmp_path], recursive=False)]
    deep = [str(rel) for _, rel in find_images([tmp_path], recursive=True)]
    assert flat == ["a.png"]
    assert deep == ["a.png", str(Path("sub/b.jpg"))]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_from_canvas_rounds_and_clips_in_bands_as_it_would_at_once(dtype):
    import facefix.image_io as image_io

    top = float(np.iinfo(dtype).max)
    rows = image_io.CANVAS_BAND_ROWS * 2 + 37  # two full bands and a partial one
    canvas = np.random.default_rng(3).uniform(-20.0, top + 20.0, (rows, 33, 3)).astype(np.float32)
    canvas[5, 5] = [0.5, 1.5, top - 0.5]  # halves round to even, as np.rint does
    before = canvas.copy()
    pixels = from_canvas(canvas, like=np.zeros((rows, 33, 3), dtype))
    assert pixels.dtype == dtype
    np.testing.assert_array_equal(pixels, np.clip(np.rint(before), 0, top).astype(dtype))
    np.testing.assert_array_equal(canvas, before)  # the canvas is read, not changed


def test_a_jpeg_output_keeps_the_inputs_exif_with_its_orientation_upright(tmp_path):
    """Camera, date and GPS stay with a restored photo; the orientation becomes 1 since the
    pixels are written upright (a viewer would turn them twice otherwise)."""
    from click.testing import CliRunner

    from facefix.cli import cli

    photo = cv2.imread(str(shared_path("photos", "facexlib__assets_test2.jpg")))
    sideways = cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE)  # stored turned, EXIF 6 turns it back
    exif = PILImage.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    buffer = io.BytesIO()
    PILImage.fromarray(sideways[:, :, ::-1]).save(buffer, "JPEG", quality=95, exif=exif)
    (tmp_path / "in.jpg").write_bytes(buffer.getvalue())
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "in.jpg"), str(tmp_path / "out"), "--restorer",
                                      "passthrough", "--quiet"])
    assert result.exit_code == 0, result.output
    with PILImage.open(tmp_path / "out" / "in.jpg") as written:
        kept = written.getexif()
        assert kept[0x0112] == 1 and kept[0x010F] == "Canon"
        assert kept.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
        assert written.size == (photo.shape[1], photo.shape[0])  # upright pixels
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "in.jpg"), str(tmp_path / "png"), "--restorer",
                                      "passthrough", "--ext", "png", "--quiet"])
    assert result.exit_code == 0 and cv2.imread(str(tmp_path / "png" / "in.png")).shape == photo.shape


def test_a_display_p3_photo_keeps_its_profile_and_its_colours(tmp_path):
    """Phones write Display P3 JPEGs: the profile was dropped, so the colours shifted (99th
    percentile 14 levels). JPEG and PNG outputs carry it (16-bit PNGs too); formats that
    can't are converted to sRGB instead."""
    from click.testing import CliRunner

    from facefix.cli import cli
    from conftest import display_p3_profile

    profile = display_p3_profile()
    photo = cv2.imread(str(shared_path("photos", "insightface_t1.jpg")))
    PILImage.fromarray(photo[:, :, ::-1]).save(tmp_path / "p3.jpg", "JPEG", quality=97, icc_profile=profile,
                                               subsampling=0)
    deep = (photo.astype(np.uint16) * 257)[:, :, ::-1]
    ok, png = cv2.imencode(".png", deep[:, :, ::-1])
    from facefix.image_io import with_icc_png

    (tmp_path / "p3_16bit.png").write_bytes(with_icc_png(png.tobytes(), profile))
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "p3.jpg"), str(tmp_path / "p3_16bit.png"),
                                      str(tmp_path / "out"), "--quiet"])  # the bundled detector and compact
    assert result.exit_code == 0, result.output
    for name in ("p3.jpg", "p3_16bit.png"):
        with PILImage.open(tmp_path / "out" / name) as written:
            assert written.info.get("icc_profile") == profile, name
    source = read_image(tmp_path / "p3.jpg").bgr8().astype(int)
    restored = read_image(tmp_path / "out" / "p3.jpg").bgr8().astype(int)
    outside = np.ones(source.shape[:2], bool)  # away from the faces (and their paste margins)
    from facefix.pipeline import detect
    from facefix import compose
    from facefix.weights import WeightsResolver

    detector = compose.build(compose.choose("detector", "retinaface_bundled", WeightsResolver()), device="cpu",
                             resolver=WeightsResolver())
    for face in detect(detector, source.astype(np.uint8)):
        x1, y1, x2, y2 = face.box
        pad = (x2 - x1)
        outside[max(0, int(y1 - pad)):int(y2 + pad), max(0, int(x1 - pad)):int(x2 + pad)] = False
    assert outside.mean() > 0.3
    assert np.abs(restored - source)[outside].mean() < 2

    # WebP can't carry it here: its pixels are converted to sRGB, as a colour-managed viewer shows the input
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "p3.jpg"), str(tmp_path / "webp"), "--restorer",
                                      "passthrough", "--ext", "webp", "--jpeg-quality", "100", "--quiet"])
    assert result.exit_code == 0, result.output
    from PIL import ImageCms

    transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(profile)), ImageCms.createProfile("sRGB"),
                                        "RGB", "RGB")
    with PILImage.open(tmp_path / "p3.jpg") as opened:
        expected = np.asarray(ImageCms.applyTransform(opened.convert("RGB"), transform))[:, :, ::-1].astype(int)
    converted = cv2.imread(str(tmp_path / "webp" / "p3.webp")).astype(int)
    assert np.abs(converted - expected)[outside].mean() < 2 < np.abs(converted - source)[outside].mean()


def test_a_complete_jpeg_padded_after_its_end_is_read_and_a_cut_one_is_not(tmp_path):
    """Cameras and messengers pad JPEGs with zeros after the end marker: those were refused as
    "truncated"."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    PILImage.fromarray(pixels).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    (tmp_path / "padded.jpg").write_bytes(data + b"\0" * 4096)
    assert read_image(tmp_path / "padded.jpg").pixels.shape == (120, 160, 3)
    progressive = io.BytesIO()
    PILImage.fromarray(pixels).save(progressive, "JPEG", quality=90, progressive=True)
    (tmp_path / "progressive_padded.jpg").write_bytes(progressive.getvalue() + b"\0" * 100)
    assert read_image(tmp_path / "progressive_padded.jpg").pixels.shape == (120, 160, 3)
    for cut in (len(data) - 2, len(data) // 2):
        (tmp_path / "cut.jpg").write_bytes(data[:cut] + b"\0" * 200)
        with pytest.raises(InputError, match="truncated"):
            read_image(tmp_path / "cut.jpg")
