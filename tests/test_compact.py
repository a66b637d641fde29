"""facefix's own compact restorer and the offline defaults (issue 7)."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix import compose, plugins
from facefix.cli import cli
from facefix.components import ComponentContext
from facefix.errors import WeightsError
from facefix.weights import WeightsResolver, bundled_dir, get_entry, sha256_file
from facefix.networks import load_network
from facefix_plugins.compact import CARD
from facefix_plugins.compact.arch import CompactUNet
from conftest import copy_faces, psnr, read_rows, shared_path


def load_compact(path):
    return load_network(CARD, path).module


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_untrained_network_returns_its_input_exactly():
    for config in ({}, {"channels": (8, 16, 32), "blocks": (1, 0, 2), "up_blocks": (1, 0)}):
        network = CompactUNet(**config).eval()
        faces = torch.rand(2, 3, 64, 64) * 2 - 1
        with torch.no_grad():
            assert torch.equal(network(faces), faces)
    with pytest.raises(ValueError):
        CompactUNet(channels=(8, 16), blocks=(1,), up_blocks=(0,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A few real training steps on 8 real faces; every later test reads its final.pth."""
    root = tmp_path_factory.mktemp("compact")
    data = copy_faces(root / "faces", 8)
    config = root / "config.json"
    config.write_text(json.dumps({"ema_decay": 0.0, "val_count": 2, "recipe": {"warmup": 1, "lr": 1e-3}, "max_grad_norm": 1.0}))
    result = invoke("train", "compact", "--data", data / "images", "--size", 64, "--iters", 4, "--batch-size", 4,
                    "--workers", 0, "--val-every", 2, "--config", config, "--out", root / "run", "-q")
    assert result.exit_code == 0, result.output
    return root


def test_training_moves_the_network_off_the_identity_and_logs_validation(trained):
    rows = (trained / "run" / "val.csv").read_text().splitlines()
    assert rows[0].startswith("step,psnr,ssim,psnr_lq,ssim_lq") and len(rows) == 4  # steps 0, 2, 4
    step0 = rows[1].split(",")
    assert step0[1] == step0[3]  # before training the output is the degraded input
    network = load_compact(trained / "run" / "final.pth")
    assert network.tail.weight.abs().max() > 0
    logged = read_rows(trained / "run" / "log.csv")  # --config's max_grad_norm: clipped and logged
    assert all(float(row["generator_grad_norm"]) > 0 for row in logged)


def test_trained_checkpoint_restores_and_exports_within_one_level(trained, tmp_path):
    face = sorted((trained / "faces" / "images").iterdir())[0]
    out = tmp_path / "out"
    result = invoke("restore", face, out, "--aligned", "--restorer", "compact", "--weights",
                    trained / "run" / "final.pth", "--backend", "torch", "--quiet")
    assert result.exit_code == 0, result.output
    (written,) = out.iterdir()
    restored = cv2.imread(str(written))
    original = cv2.resize(cv2.imread(str(face)), restored.shape[1::-1])
    assert restored.shape == (512, 512, 3) and np.abs(restored.astype(int) - original).max() > 0

    onnx_file = tmp_path / "compact.onnx"
    result = invoke("export", "compact", "--weights", trained / "run" / "final.pth", "-o", onnx_file, "--sample", face)
    assert result.exit_code == 0, result.output
    difference = float(re.search(r"= ([0-9.e+-]+) on a 512px face", result.output).group(1))
    assert difference < 1 / 255


def test_half_precision_file_loads_as_float32(trained, tmp_path):
    checkpoint = torch.load(trained / "run" / "final.pth", weights_only=True)
    half = {"params_ema": {k: v.half() for k, v in checkpoint["params_ema"].items()}, "config": checkpoint["config"]}
    torch.save(half, tmp_path / "half.pth")
    full, narrow = load_compact(trained / "run" / "final.pth"), load_compact(tmp_path / "half.pth")
    assert all(p.dtype == torch.float32 for p in narrow.parameters())
    faces = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert (full(faces) - narrow(faces)).abs().max() < 2e-3


def test_wrong_files_are_refused_in_one_line(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "plain.pth")
    torch.save({"params_ema": CompactUNet(channels=(8, 16, 32, 64)).state_dict(), "config": CompactUNet().config()},
               tmp_path / "other.pth")
    for name, expected in (("plain.pth", "not a compact restorer checkpoint"), ("other.pth", "keys of another shape")):
        with pytest.raises(WeightsError) as caught:
            load_compact(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value) and expected in str(caught.value)
        assert "\n" not in str(caught.value)


# -- the shipped default -------------------------------------------------------------


def test_shipped_weights_are_small_pinned_and_chosen_by_default(tmp_path):
    entry = get_entry("compact-v1")
    path = bundled_dir() / entry.filename
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert sha256_file(path) == entry.sha256 and path.stat().st_size == entry.size
    resolver = WeightsResolver(model_dir=tmp_path, allow_download=False, progress=False)
    assert compose.choose("restorer", None, resolver).name == "compact"
    assert compose.choose("detector", None, resolver).name == "retinaface_bundled"


def test_shipped_model_raises_psnr_on_real_degraded_faces():
    """Six validation faces (never trained on), degraded as `facefix degrade --preset
    gfpgan --seed 0` does: the shipped model must beat the degraded input on average."""
    from facefix.training.degradations import PRESETS, degrade_pair, rng_for

    faces = sorted(shared_path("faces", "val512", "images").iterdir())[:6]
    network = load_compact(bundled_dir() / get_entry("compact-v1").filename).eval()
    before, after = [], []
    for index, path in enumerate(faces):
        hq, lq = degrade_pair(cv2.imread(str(path)), PRESETS["gfpgan"], rng_for(0, index))
        x = torch.from_numpy(lq[:, :, ::-1].astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        with torch.no_grad():
            y = network(x)[0].clamp(-1, 1).permute(1, 2, 0).numpy()
        restored = np.rint((y[:, :, ::-1] + 1) * 127.5).astype(np.uint8)
        before.append(psnr(lq, hq))
        after.append(psnr(restored, hq))
    assert np.mean(after) > np.mean(before) + 0.5


def test_offline_default_restores_inside_faces_and_leaves_the_rest(tmp_path, monkeypatch):
    """No --model-dir, an empty cache, downloads off: the bundled detector and restorer run."""
    monkeypatch.setenv("FACEFIX_OFFLINE", "1")
    monkeypatch.delenv("FACEFIX_MODEL_DIR", raising=False)
    photo = tmp_path / "group.png"
    cv2.imwrite(str(photo), cv2.imread(str(shared_path("photos", "insightface_t1.jpg"))))
    result = CliRunner().invoke(cli, ["restore", str(photo), str(tmp_path / "out")])
    assert result.exit_code == 0, result.stderr
    assert "restorer compact" in result.stderr and "detector retinaface_bundled" in result.stderr
    original, restored = cv2.imread(str(photo)), cv2.imread(str(tmp_path / "out" / "group.png"))
    detector = plugins.get_component("detector", "retinaface_bundled").build(
        ComponentContext(resolve_weights=WeightsResolver(allow_download=False).resolve))
    near = np.zeros(original.shape[:2], bool)
    far = np.ones(original.shape[:2], bool)
    for face in detector.detect(original):
        x1, y1, x2, y2 = (int(v) for v in face.box)
        w, h = x2 - x1, y2 - y1
        near[y1 + h // 4:y2 - h // 4, x1 + w // 4:x2 - w // 4] = True
        far[max(0, y1 - h):y2 + h, max(0, x1 - w):x2 + w] = False
    assert far.sum() > 0.1 * far.size
    assert np.array_equal(original[far], restored[far])
    assert np.abs(original[near].astype(int) - restored[near]).mean() > 1.0
