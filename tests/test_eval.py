"""`facefix eval`: scores against ground truth, the table, --json, parse-mIoU."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix.cli import cli
from facefix.image_io import read_image
from facefix.metrics.pixel import ms_ssim, psnr, ssim
from facefix.checkpoints import read_state
from conftest import PROJECT, shared_path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Four real ground-truth faces, their degraded versions at 128 px, one stray file."""
    source = shared_path("faces", "train512")
    root = tmp_path_factory.mktemp("eval")
    truth, predicted = root / "gt", root / "pred"
    truth.mkdir()
    predicted.mkdir()
    for image in sorted((source / "images").iterdir())[:4]:
        (truth / image.name).symlink_to(image)
    result = invoke("degrade", truth, predicted, "--preset", "gfpgan", "--seed", "3", "--size", "128", "--quiet")
    assert result.exit_code == 0, result.output
    cv2.imwrite(str(predicted / "stray.png"), np.zeros((128, 128, 3), np.uint8))
    return predicted, truth, source / "masks"


def test_json_scores_equal_the_metrics(pairs):
    predicted, truth, _ = pairs
    result = invoke("eval", predicted, truth, "--json")
    # a prediction without a ground truth is named, and the run says it is incomplete
    assert result.exit_code == 1 and "stray.png" in result.stderr and "without a ground truth" in result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 4 and report["unmatched"] == ["stray.png"] and report["ground_truth_resized"] == 4
    for row in report["images"]:
        prediction = read_image(predicted / row["file"]).bgr8()
        stem = row["file"].rsplit(".", 1)[0]
        gt_file = next(truth.glob(f"{stem}.*"))
        target = cv2.resize(read_image(gt_file).bgr8(), (128, 128), interpolation=cv2.INTER_AREA)
        assert row["psnr"] == pytest.approx(psnr(prediction, target))
        assert row["ssim"] == pytest.approx(ssim(prediction, target))
        assert row["ms_ssim"] == pytest.approx(ms_ssim(prediction, target))
    assert report["mean"]["psnr"] == pytest.approx(np.mean([row["psnr"] for row in report["images"]]))


def test_an_unreadable_file_is_named_the_others_scored_and_skipped_metrics_said(pairs, tmp_path):
    """One corrupt file aborted the whole evaluation; without --model-dir LPIPS, NIQE and
    identity were dropped without a word."""
    predicted, truth, _ = pairs
    folder = tmp_path / "pred"
    folder.mkdir()
    for path in [path for path in sorted(predicted.glob("*.png")) if path.name != "stray.png"][:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    broken = next(folder.iterdir())
    broken.write_bytes(broken.read_bytes()[:100])
    result = CliRunner(env={"FACEFIX_HOME": str(tmp_path / "home"), "FACEFIX_MODEL_DIR": ""}).invoke(
        cli, ["eval", str(folder), str(truth), "--model-dir", str(tmp_path / "empty")])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and broken.name in errors[0]
    assert result.stdout.split("mean (pred)")[1].split()[0] == "2"  # the two readable pairs
    notes = [line for line in result.stderr.splitlines() if "skipped: their weights" in line]
    assert len(notes) == 1 and "lpips" in notes[0] and "niqe" in notes[0] and "ids" in notes[0]


def test_larger_predictions_are_scored_at_the_ground_truths_size(pairs, tmp_path):
    """An upsampled prediction (passthrough works on 1024 px crops) is shrunk, not the truth enlarged."""
    _, truth, _ = pairs
    larger = tmp_path / "larger"
    larger.mkdir()
    for image in truth.iterdir():
        face = read_image(image).bgr8()
        cv2.imwrite(str(larger / f"{image.stem}.png"), cv2.resize(face, (1024, 1024), interpolation=cv2.INTER_CUBIC))
    report = json.loads(invoke("eval", larger, truth, "--json").stdout)
    assert report["predictions_resized"] == 4 and report["ground_truth_resized"] == 0
    for row in report["images"]:
        face = read_image(next(truth.glob(f"{row['file'].rsplit('.', 1)[0]}.*"))).bgr8()
        back = cv2.resize(cv2.imread(str(larger / row["file"])), face.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert row["psnr"] == pytest.approx(psnr(back, face)) and row["psnr"] > 35


def test_table_and_identical_images(pairs, tmp_path):
    _, truth, _ = pairs
    result = invoke("eval", truth, truth, "--per-image")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("mean")]
    assert len(lines) == 1 and lines[0].split()[-3:] == ["inf", "1.0000", "1.0000"]


def test_parse_miou_with_a_chosen_parser(pairs, tmp_path):
    predicted, truth, masks = pairs
    parser = read_state(PROJECT / "tests" / "fixtures" / "psfrgan" / "parser_small.pth")
    parser_file = tmp_path / "parser.pth"
    torch.save({"params_ema": parser["state_dict"], "config": parser["config"]}, parser_file)
    result = invoke("eval", predicted, truth, "--masks", masks, "--parser", "psfrgan", "--parser-weights", parser_file,
                    "--json")
    assert result.exit_code == 1 and "stray.png" in result.stderr, result.output  # the stray has no ground truth
    report = json.loads(result.stdout)
    assert report["parser"] == "psfrgan" and 0 <= report["mean"]["miou"] < 0.5  # random weights read faces badly
    assert all("miou" in row for row in report["images"])


def test_nothing_to_compare_is_one_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    result = invoke("eval", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 1 and result.output.strip().startswith("Error:")
    assert len(result.output.strip().splitlines()) == 1
