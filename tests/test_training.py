"""The training engine and `facefix train gfpgan`, on real faces from ../shared, tiny and fast."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix.cli import cli
from facefix.training.data import FaceDataset, list_faces, split, to_image
from facefix.training.degradations import PRESETS
from conftest import copy_faces, read_any, read_rows, shared_path

TINY = ["--size", "32", "--width", "0.0625", "--style-dim", "32", "--channel-multiplier", "1", "--batch-size", "2",
        "--workers", "0", "--no-perceptual", "--no-identity", "--quiet"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Twelve real aligned faces and their masks, copied out of ../shared for the run."""
    return copy_faces(tmp_path_factory.mktemp("faces"), 12)


def train(*args):
    return CliRunner().invoke(cli, ["train", "gfpgan", *map(str, args)], catch_exceptions=False)


def test_tiny_run_checkpoints_resumes_and_restores(faces, tmp_path, shared_weights):
    run = tmp_path / "run"
    common = ["--data", faces / "images", "--out", run, "--model-dir", shared_weights, *TINY]
    first = train(*common, "--iters", "3", "--val-every", "3", "--checkpoint-every", "2")
    assert first.exit_code == 0, first.output
    assert (run / "last.pth").exists() and (run / "final.pth").exists() and (run / "config.json").exists()
    rows = read_rows(run / "log.csv")
    assert [int(row["step"]) for row in rows] == [1]  # log_every 10: the first step is always logged
    for key in ("l1", "pyramid", "gan", "d", "component_gan", "component_style", "g"):
        assert math.isfinite(float(rows[0][key])), key
    val = read_rows(run / "val.csv")
    assert [int(row["step"]) for row in val] == [0, 3]  # the untrained baseline, then step 3 (also the last)
    assert float(val[0]["psnr_lq"]) > 10
    assert (run / "val" / "step_0000003.png").exists()
    checkpoint = torch.load(run / "last.pth", weights_only=True)
    assert checkpoint["step"] == 3 and {"generator", "discriminator", "components"} <= set(checkpoint["models"])
    assert checkpoint["config"]["network"] == "gfpgan" and checkpoint["git_revision"]

    resumed = train(*common, "--iters", "5", "--val-every", "0", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(run / "last.pth", weights_only=True)["step"] == 5

    face = shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")
    restored = CliRunner().invoke(cli, ["restore", str(face), str(tmp_path / "out"), "--aligned", "--restorer",
                                        "gfpgan", "--weights", str(run / "final.pth"), "--quiet"])
    assert restored.exit_code == 0, restored.output
    assert read_any(tmp_path / "out" / face.name).shape == (32, 32, 3)
    exported = CliRunner().invoke(cli, ["export", "gfpgan", "--weights", str(run / "final.pth"), "-o",
                                        str(tmp_path / "m.onnx")])
    assert exported.exit_code == 0 and "ONNX checker passed" in exported.output


def test_missing_loss_weights_stop_with_one_line(faces, tmp_path):
    result = CliRunner(env={"FACEFIX_OFFLINE": "1"}).invoke(cli, [
        "train", "gfpgan", "--data", str(faces / "images"), "--out", str(tmp_path / "run"), "--size", "32",
        "--width", "0.0625", "--style-dim", "32", "--iters", "1", "--model-dir", str(tmp_path), "--no-identity",
        "--no-components", "--quiet"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "vgg19-dcbb9e9d.pth" in lines[0] and "--no-perceptual" in lines[0]


def test_config_file_and_flags(faces, tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"iters": 2, "val_every": 0, "degradation": {"preset": "psfrgan"}, '
                      '"recipe": {"gan": false, "components": false, "pixel_weight": 1.0}}')
    run = tmp_path / "run"
    result = train("--data", faces / "images", "--out", run, "--config", config, *TINY)
    assert result.exit_code == 0, result.output
    rows = read_rows(run / "log.csv")
    assert "gan" not in rows[0] and "d" not in rows[0]
    saved = torch.load(run / "last.pth", weights_only=True)["config"]
    assert saved["iters"] == 2 and saved["degradation"]["preset"] == "psfrgan" and saved["recipe"]["pixel_weight"] == 1.0
    bad = tmp_path / "bad.json"
    bad.write_text('{"iterations": 5}')
    result = CliRunner().invoke(cli, ["train", "gfpgan", "--data", str(faces / "images"), "--config", str(bad)])
    assert result.exit_code == 1 and "unknown config keys: iterations" in result.output


def test_distributed_run_with_torchrun(faces, tmp_path):
    """The same command under torchrun: two CPU processes (gloo), gradients all-reduced."""
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "facefix",
               "train", "gfpgan", "--data", str(faces / "images"), "--out", str(run), "--iters", "2", "--val-every", "0",
               "--no-components", "--device", "cpu", *TINY]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(run / "last.pth", weights_only=True)["step"] == 2
    assert (run / "final.pth").exists()


def test_dataset_pairs_flips_and_determinism(faces):
    files = list_faces(faces / "images")
    train_files, val_files = split(files, 0.25, seed=0)
    assert sorted(train_files + val_files) == files and split(files, 0.25, seed=0) == (train_files, val_files)
    dataset = FaceDataset(files, 64, PRESETS["gfpgan"], masks=faces / "masks", train=False, seed=3)
    a, b = dataset[2], dataset[2]
    assert torch.equal(a["lq"], b["lq"]) and a["hq"].shape == (3, 64, 64) and a["mask"].shape == (64, 64)
    assert not torch.equal(a["lq"], a["hq"])
    training = FaceDataset(files, 64, PRESETS["gfpgan"], masks=faces / "masks", train=True, seed=0)
    flipped = next(training[i] for i in range(len(files)) if bool(training[i]["flipped"]))
    index = int(flipped["index"])
    plain = FaceDataset(files, 64, PRESETS["gfpgan"], masks=faces / "masks", train=False)[index]
    # a flipped mask has its left and right eye classes swapped, not just mirrored
    mirrored = plain["mask"].flip(-1)
    swapped = mirrored.clone()
    for left, right in ((4, 5), (6, 7), (8, 9)):
        swapped[mirrored == left], swapped[mirrored == right] = right, left
    assert torch.equal(flipped["mask"], swapped)
    image = to_image(plain["hq"])
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    original = cv2.resize(cv2.imread(str(files[index])), (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - original.astype(int)).max() <= 1


def test_log_columns_stay_aligned_when_losses_come_and_go(tmp_path):
    """R1 is logged only every 16 steps: its column must not shift the others."""
    from types import SimpleNamespace

    from facefix.training.trainer import Trainer

    fake = SimpleNamespace(out=tmp_path)
    Trainer._append_csv(fake, "log.csv", {"step": 1, "l1": 0.5, "r1": 0.01})
    Trainer._append_csv(fake, "log.csv", {"step": 2, "l1": 0.4})
    Trainer._append_csv(fake, "log.csv", {"step": 3, "l1": 0.3, "gan": 0.2})
    rows = read_rows(tmp_path / "log.csv")
    assert [row["l1"] for row in rows] == ["0.5", "0.4", "0.3"]
    assert [row["r1"] for row in rows] == ["0.01", "", ""] and rows[2]["gan"] == "0.2"


# --- divergence, and the loss networks that exist here --------------------------------


def test_a_diverging_run_stops_in_one_line_and_keeps_the_last_good_checkpoint(faces, tmp_path):
    """lr 50 sends compact's loss to 1e13 and then NaN: the run stops with one line and
    exit 1; no checkpoint with non-finite weights is ever written."""
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "compact", "--data", str(faces / "images"), "--out", str(run), "--size", "64", "--crop", "0",
        "--iters", "40", "--batch-size", "2", "--workers", "0", "--val-every", "0", "--checkpoint-every", "1",
        "--lr", "50", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "diverged at step" in lines[0] and "--lr" in lines[0] and "--max-grad-norm" in lines[0]
    assert not (run / "final.pth").exists()
    if (run / "last.pth").exists():  # a checkpoint from before the divergence
        assert "last good checkpoint" in lines[0]
        state = torch.load(run / "last.pth", weights_only=True)
        assert all(torch.isfinite(tensor).all() for tensor in state["ema"].values())


def test_the_guard_reads_nan_and_explosions_but_not_noise():
    from facefix.training.trainer import DivergenceGuard

    guard = DivergenceGuard()
    for step in range(30):  # a loss that wobbles, and a discriminator resting near zero
        assert guard.problem({"l1": 0.05 + 0.01 * (step % 3), "d": 0.001 * (step % 5), "d_grad_norm": 3.0}) is None
    assert guard.problem({"l1": 0.5, "d": 2.0}) is None  # a tenfold jump is training, not divergence
    assert "running level" in guard.problem({"l1": 1.4e9, "d": 0.1})
    early = DivergenceGuard()  # an explosion in the first steps is caught too
    assert early.problem({"l1": 0.16}) is None and "l1 is 1.9e+30" in early.problem({"l1": 1.9e30})
    assert "nan" in DivergenceGuard().problem({"l1": float("nan")})
    assert "inf" in DivergenceGuard().problem({"g_grad_norm": float("inf")})


def test_gfpgan_from_scratch_with_vgg16_and_sface(faces, tmp_path, shared_weights):
    """The default learning rate trains from scratch; VGG16 perceptual/style and SFace
    identity losses run, finite and logged."""
    run = tmp_path / "run"
    result = train("--data", faces / "images", "--out", run, "--model-dir", shared_weights, "--size", "64",
                   "--width", "0.125", "--style-dim", "64", "--channel-multiplier", "1", "--batch-size", "2",
                   "--workers", "0", "--iters", "12", "--val-every", "0", "--perceptual-net", "vgg16",
                   "--identity-net", "sface", "--quiet")
    assert result.exit_code == 0, result.output
    rows = read_rows(run / "log.csv")
    assert [int(row["step"]) for row in rows] == [1, 10]
    for row in rows:
        for key in ("l1", "perceptual", "identity", "gan", "g"):
            assert math.isfinite(float(row[key])), key
    assert float(rows[-1]["l1"]) < 1.0  # [-1, 1] images: the old 2e-3 default was at 1e9 by now
    config = torch.load(run / "last.pth", weights_only=True)["config"]["recipe"]
    assert config["perceptual_net"] == "vgg16" and config["identity_net"] == "sface"


def test_vgg_loads_torchvisions_whole_file_and_the_features_only_file(tmp_path, shared_weights):
    from facefix.nn.vgg import VGGFeatures

    features = torch.load(shared_weights / "vgg16_imagenet_features.pth", weights_only=True)
    whole = dict(features, **{"classifier.0.weight": torch.zeros(4096, 25088), "classifier.0.bias": torch.zeros(4096)})
    torch.save(whole, tmp_path / "vgg16-397923af.pth")
    from_features = VGGFeatures("vgg16", ("conv3_3", "relu5_3"), shared_weights / "vgg16_imagenet_features.pth")
    from_whole = VGGFeatures("vgg16", ("conv3_3", "relu5_3"), tmp_path / "vgg16-397923af.pth")
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(from_features(image)["relu5_3"], from_whole(image)["relu5_3"])
    assert torch.equal(from_features.features[0].weight, features["features.0.weight"])


def test_lr_schedules_scale_every_group_from_its_own_rate():
    from facefix.training.trainer import lr_factor

    steps = {"kind": "multistep", "milestones": [5 / 7, 6 / 7], "gamma": 0.5}
    assert [lr_factor(steps, i, 700) for i in (0, 499, 500, 599, 600, 699)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert lr_factor({"kind": "multistep", "milestones": [100], "gamma": 0.1}, 100, 1000) == pytest.approx(0.1)
    cosine = {"kind": "cosine", "warmup": 10, "final_ratio": 0.1}
    assert lr_factor(cosine, 0, 110) == pytest.approx(0.1) and lr_factor(cosine, 9, 110) == 1.0
    assert lr_factor(cosine, 10, 110) == 1.0 and lr_factor(cosine, 110, 110) == pytest.approx(0.1)
    assert lr_factor({}, 5, 10) == 1.0
    with pytest.raises(Exception, match="unknown lr schedule"):
        lr_factor({"kind": "sawtooth"}, 0, 10)


def test_the_ema_warm_up_forgets_the_random_start(faces, tmp_path):
    """At 0.99 an EMA still holds a third of its random initial weights at step 100; warmed
    up (decay min(0.99, (1 + t) / (10 + t))) it spans the steps made so far."""
    from facefix.training.trainer import ema_decay_at

    def initial_share(warmup: bool, steps: int = 100) -> float:
        return math.prod(ema_decay_at(step, 0.99, warmup) for step in range(steps))

    assert initial_share(False) == pytest.approx(0.366, abs=1e-3)
    assert initial_share(True) < 1e-6
    assert ema_decay_at(0, 0.99, True) == pytest.approx(0.1) and ema_decay_at(5000, 0.99, True) == 0.99

    def ema_lag(warmup: bool) -> float:
        """How far the run's EMA generator is from the trained one after 3 steps."""
        config = tmp_path / f"warmup_{warmup}.json"
        config.write_text(json.dumps({"iters": 3, "val_every": 0, "ema_decay": 0.999, "ema_warmup": warmup,
                                      "recipe": {"gan": False, "components": False}}))
        run = tmp_path / f"run_{warmup}"
        assert train("--data", faces / "images", "--out", run, "--config", config, *TINY).exit_code == 0
        state = torch.load(run / "last.pth", weights_only=True)
        trained, average = state["models"]["generator"], state["ema"]
        return sum(float((trained[key].float() - average[key].float()).abs().sum()) for key in trained)

    assert ema_lag(True) < 0.3 * ema_lag(False)


def test_landmarks_are_detected_once_with_a_bar_and_reused_by_every_run(faces, tmp_path, monkeypatch, capsys):
    """Detecting a training set's landmarks took minutes in silence, again for every run
    folder: now a bar shows it and the cache outside the run folder serves the next run."""
    import json
    import shutil

    from facefix.training import components

    files = sorted((faces / "images").iterdir())[:3]
    cache = tmp_path / "landmarks.json"
    first = components.detect_landmarks(files, 64, cache)
    assert "landmarks of 3 training faces" in capsys.readouterr().err
    assert first.shape == (3, 5, 2) and not np.allclose(first[0], first[1])  # detected, not the template
    calls = []
    monkeypatch.setattr(components, "_detector", lambda model_dir: calls.append(model_dir))
    again = components.detect_landmarks(files, 64, cache)
    assert calls == [] and np.array_equal(again, first) and capsys.readouterr().err == ""
    # a copy elsewhere is another file (an edited one too: its length or time changed)
    copy = tmp_path / files[0].name
    shutil.copy(files[0], copy)
    monkeypatch.undo()
    both = components.detect_landmarks([files[0], copy], 64, cache)
    assert np.allclose(both[0], both[1], atol=1e-3)
    assert len(json.loads(cache.read_text())) == 4
    # the default cache is shared by runs: under FACEFIX_HOME, by training size
    assert components.landmark_cache(128).parent.parent == components.landmark_cache(64).parent.parent
    assert components.landmark_cache(128).name == "128px.json"
