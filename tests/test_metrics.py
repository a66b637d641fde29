"""LPIPS, NIQE and the SFace identity metrics against the reference IQA toolbox's
official values on five TID2013 pairs, SSIM on luminance, and `facefix eval --metrics`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix.cli import cli
from facefix.errors import WeightsError
from facefix.metrics.niqe import NIQE
from conftest import shared_path

PAIRS = ("I03", "I04", "I06", "I08", "I19")
#: The toolbox's published values (../shared/README.md)
OFFICIAL = {
    "lpips": (0.7237, 0.2572, 0.05079, 0.05205, 0.4253),
    "niqe": (15.7536, 3.6549, 3.2355, 3.1840, 8.6352),
    "psnr": (21.11, 20.99, 27.01, 23.30, 21.62),
    "ssim_y": (0.6993, 0.9978, 0.9989, 0.9669, 0.6519),
}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def eval_json(*args) -> dict:
    result = invoke("eval", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def tid2013():
    return shared_path("iqa", "distorted"), shared_path("iqa", "reference")


def test_lpips_and_niqe_reproduce_the_official_values(tid2013, shared_weights):
    distorted, reference = tid2013
    report = eval_json(distorted, reference, "--metrics", "lpips,niqe", "--per-image", "--model-dir", shared_weights)
    assert report["metrics"] == ["lpips", "niqe"]
    rows = {row["file"].split(".")[0]: row for row in report["images"]}
    for index, name in enumerate(PAIRS):
        assert rows[name]["lpips"] == pytest.approx(OFFICIAL["lpips"][index], abs=1e-3)
        assert rows[name]["niqe"] == pytest.approx(OFFICIAL["niqe"][index], rel=0.02)
        assert set(rows[name]) == {"file", "lpips", "niqe"}
    assert report["mean"]["lpips"] == pytest.approx(np.mean(OFFICIAL["lpips"]), abs=1e-3)


def test_niqe_of_an_image_with_one_block_is_defined_as_in_matlab(tid2013, shared_weights):
    # 128 px faces hold one 96 px block: MATLAB's covariance of one observation is 0
    # (numpy's is NaN, which made eval crash at 128 px)
    niqe = NIQE(Path(shared_weights) / "niqe_pris_params.npz")
    image = cv2.imread(str(sorted(Path(tid2013[1]).iterdir())[0]))
    small, sharp_small = cv2.resize(cv2.GaussianBlur(image, (0, 0), 3), (128, 128)), cv2.resize(image, (128, 128))
    scores = niqe(small), niqe(sharp_small)
    assert all(np.isfinite(score) and score > 0 for score in scores)
    assert scores[0] != scores[1]


def test_psnr_is_rgb_by_default_and_ssim_on_luminance_matches_the_toolbox(tid2013):
    distorted, reference = tid2013
    rgb = {row["file"].split(".")[0]: row for row in eval_json(distorted, reference, "--metrics", "psnr,ssim")["images"]}
    luma = eval_json(distorted, reference, "--metrics", "psnr,ssim,ms_ssim", "--y-channel")
    assert luma["y_channel"] is True
    rows = {row["file"].split(".")[0]: row for row in luma["images"]}
    for index, name in enumerate(PAIRS):
        assert rgb[name]["psnr"] == pytest.approx(OFFICIAL["psnr"][index], abs=0.01)  # the toolbox's PSNR is RGB
        assert rows[name]["ssim"] == pytest.approx(OFFICIAL["ssim_y"][index], abs=5e-4)
    assert abs(rgb["I03"]["ssim"] - rows["I03"]["ssim"]) > 0.01  # the two conventions really differ


def test_lpips_vgg_agrees_with_lpips_on_what_is_far_and_what_is_near(tid2013, shared_weights):
    distorted, reference = tid2013
    report = eval_json(distorted, reference, "--metrics", "lpips,lpips_vgg", "--model-dir", shared_weights)
    rows = {row["file"].split(".")[0]: row for row in report["images"]}
    for name in ("lpips", "lpips_vgg"):  # the two heavy distortions against the two light ones
        assert min(rows["I03"][name], rows["I19"][name]) > 4 * max(rows["I06"][name], rows["I08"][name])
    same = eval_json(reference, reference, "--metrics", "lpips_vgg", "--model-dir", shared_weights)
    assert same["mean"]["lpips_vgg"] == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Eight real aligned faces, their degraded copies, and the same faces under each
    other's names (pairs of different people)."""
    source = shared_path("faces", "val512", "images")
    root = tmp_path_factory.mktemp("identity")
    truth, others = root / "truth", root / "others"
    truth.mkdir()
    others.mkdir()
    files = sorted(source.iterdir())[:8]
    for index, path in enumerate(files):
        shutil.copy(path, truth / path.name)
        shutil.copy(files[(index + 1) % len(files)], others / path.name)
    result = invoke("degrade", truth, root / "degraded", "--preset", "gfpgan", "--seed", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return truth, root / "degraded", others


def test_identity_of_the_same_degraded_and_different_faces(faces, shared_weights):
    truth, degraded, others = faces
    metrics = ("--metrics", "ids,deg,fd_sface", "--model-dir", shared_weights)
    same = eval_json(truth, truth, *metrics)["mean"]
    worse = eval_json(degraded, truth, *metrics)["mean"]
    strangers = eval_json(others, truth, *metrics)
    assert same["ids"] == pytest.approx(1.0, abs=1e-6) and same["deg"] == pytest.approx(0.0, abs=0.1)
    assert abs(same["fd_sface"]) < 1e-6
    assert 0.4 < worse["ids"] < 0.98 and worse["deg"] > same["deg"] and worse["fd_sface"] > 0.01
    assert abs(strangers["mean"]["ids"]) < 0.25 and strangers["mean"]["deg"] > 75
    assert all("fd_sface" not in row for row in strangers["images"])  # a set-level number
    # a distance between sets, not pairs: the same faces under each other's names are the same set
    assert abs(strangers["mean"]["fd_sface"]) < 1e-6


def test_the_default_metrics_are_those_whose_weights_are_on_disk(faces, shared_weights, tmp_path):
    truth, degraded, _ = faces
    assert eval_json(degraded, truth)["metrics"] == ["psnr", "ssim", "ms_ssim"]
    everything = eval_json(degraded, truth, "--model-dir", shared_weights)
    assert everything["metrics"] == ["psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg", "niqe", "ids", "deg", "fd_sface"]
    table = invoke("eval", degraded, truth, "--model-dir", shared_weights, "--per-image")
    assert table.exit_code == 0 and "FD_SFACE" in table.output and "not comparable with published FID" in table.output


def test_a_metric_without_its_weights_or_unknown_is_one_line(faces, tmp_path):
    truth, degraded, _ = faces
    missing = invoke("eval", degraded, truth, "--metrics", "lpips", "--model-dir", tmp_path)
    assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1
    assert "--metrics lpips" in missing.output and "alexnet" in missing.output
    unknown = invoke("eval", degraded, truth, "--metrics", "psnr,fid")
    assert unknown.exit_code == 1 and "unknown metric fid" in unknown.output


# --- the SFace network rebuilt in torch ---------------------------------------------


@pytest.fixture(scope="module")
def sface_file():
    return shared_path("weights", "face_recognition_sface_2021dec_dequantized_fp32.onnx")


def test_sface_in_torch_matches_onnxruntime(sface_file):
    from facefix.nn.sface import load_sface
    from facefix.onnx import create_session

    network = load_sface(sface_file)
    session, _ = create_session(sface_file, "cpu")
    rng = np.random.default_rng(0)
    face = cv2.resize(cv2.imread(str(shared_path("faces", "val512", "images").iterdir().__next__())), (112, 112))
    inputs = np.stack([rng.uniform(0, 255, (3, 112, 112)), face[..., ::-1].transpose(2, 0, 1)]).astype(np.float32)
    for sample in inputs:
        expected = session.run(None, {"data": sample[None]})[0]
        with torch.no_grad():
            ours = network(torch.from_numpy(sample[None])).numpy()
        assert np.abs(ours - expected).max() < 1e-4


def test_sface_identity_loss_is_differentiable_and_frozen(sface_file):
    from facefix.training.losses import build_identity
    from facefix.weights import WeightsResolver

    loss = build_identity(WeightsResolver(model_dir=sface_file.parent, allow_download=False), net="sface")
    loss.train()
    assert not loss.network.training and not any(p.requires_grad for p in loss.network.parameters())
    face = cv2.imread(str(next(iter(sorted(shared_path("faces", "val512", "images").iterdir())))))
    target = torch.from_numpy(face[..., ::-1].transpose(2, 0, 1).copy()).float()[None] / 127.5 - 1
    assert loss(target, target).item() == 0.0
    output = (target + 0.2 * torch.randn_like(target)).requires_grad_()
    value = loss(output, target)
    value.backward()
    assert value.item() > 0 and output.grad is not None and output.grad.abs().sum() > 0


def test_a_graph_facefix_cannot_rebuild_is_refused_in_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from facefix.nn.sface import load_sface

    graph = helper.make_graph([helper.make_node("Softmax", ["data"], ["out"])], "g",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 112, 112])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(WeightsError, match="unsupported ONNX op Softmax") as caught:
        load_sface(tmp_path / "other.onnx")
    assert "\n" not in str(caught.value)
