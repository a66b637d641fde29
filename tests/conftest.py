"""Shared fixtures. Real material lives in ../shared beside the project; tests that
need it skip cleanly when it is absent (it is never copied into the repository)."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the calling test when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared material not available: {path}")
    return path


@pytest.fixture
def shared_weights() -> Path:
    return shared_path("weights")


@pytest.fixture
def photos() -> Path:
    return shared_path("photos")


def copy_faces(folder: Path, count: int) -> Path:
    """The first ``count`` faces of ../shared/faces/train512 and their masks, copied into
    ``folder/images`` and ``folder/masks`` (skips the test when ../shared is absent)."""
    source = shared_path("faces", "train512")
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for image in sorted((source / "images").iterdir())[:count]:
        shutil.copy(image, folder / "images" / image.name)
        shutil.copy(source / "masks" / f"{image.stem}.png", folder / "masks" / f"{image.stem}.png")
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file (training logs)."""
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_any(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture(autouse=True)
def isolated_facefix_home(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache (~/.cache/facefix): weights, ONNX exports."""
    monkeypatch.setenv("FACEFIX_HOME", str(tmp_path_factory.getbasetemp() / "facefix-home"))


def assert_one_export_serves_every_fidelity(onnx_path: Path, restorer_name: str, weights: Path, face: Path,
                                            moves: bool = True) -> None:
    """The export at ``onnx_path`` takes the fidelity as its ``weight`` input: at two
    settings it gives what the PyTorch network gives at each, and (``moves``) the two differ."""
    import cv2

    from facefix import compose, plugins
    from facefix.onnx import OnnxRestorer
    from facefix.weights import WeightsResolver

    resolver = WeightsResolver(allow_download=False, progress=False)
    outputs = []
    for fidelity in (0.2, 1.0):
        network = compose.build(plugins.get_component("restorer", restorer_name), device="cpu", resolver=resolver,
                                selection=compose.ComponentSelection(fidelity=fidelity), weights_path=weights)
        pixels = cv2.resize(read_any(face)[:, :, :3], (network.input_size,) * 2, interpolation=cv2.INTER_AREA)
        exported = OnnxRestorer(onnx_path, "cpu", network.normalization, fidelity=fidelity).restore(pixels[None])
        expected = network.restore(pixels[None])
        assert np.abs(exported.astype(int) - expected.astype(int)).max() <= 2, fidelity
        outputs.append(exported.astype(int))
    if moves:
        assert np.abs(outputs[0] - outputs[1]).max() > 2  # the input does move the output


def display_p3_profile() -> bytes:
    """An ICC v2 display profile with Display P3's primaries (D50-adapted, as Apple's) and a
    2.2 gamma: the kind of profile every recent phone photo carries, built here (nothing is
    committed)."""
    import struct

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    text = b"Display P3 (facefix test)"
    description = (b"desc\0\0\0\0" + struct.pack(">I", len(text) + 1) + text + b"\0"
                   + b"\0" * 8 + b"\0\0" + b"\0" + b"\0" * 67)
    curve = b"curv\0\0\0\0" + struct.pack(">I", 1) + struct.pack(">H", round(2.2 * 256)) + b"\0\0"
    tags = [(b"desc", description), (b"cprt", b"text\0\0\0\0public domain\0"),
            (b"wtpt", xyz(0.9505, 1.0, 1.0891)), (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
            (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)), (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    table, data, offset = b"", b"", 128 + 4 + 12 * len(tags)
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp"
              + b"APPL" + b"\0" * 24 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data
