"""facefusion's face models by name: registry entries, templates, the fidelity input, licences.

facefusion's own files are not here, so the tests export small ONNX models that follow
its convention (an ``input`` of (1, 3, S, S) RGB in [-1, 1], the same out; CodeFormer's
``weight`` input in float64) under facefusion's file names, and run them the way a user
would: ``facefix restore --restorer gpen-bfr-256 --model-dir DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import read_any
from facefix import compose, plugins
from facefix.cli import cli
from facefix.weights import WeightsResolver, get_entry


class Brighten(torch.nn.Module):
    """Moves every pixel towards white by a fixed step: the output is easy to predict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + 0.25, -1, 1)


class WeightedBrighten(torch.nn.Module):
    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + weight.float().reshape(1, 1, 1, 1), -1, 1)


def facefusion_file(folder: Path, key: str, size: int, with_weight: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.onnx"
    example = torch.zeros(1, 3, size, size)
    if with_weight:
        torch.onnx.export(WeightedBrighten(), (example, torch.tensor([0.5], dtype=torch.float64)), str(path),
                          input_names=["input", "weight"], output_names=["output"], opset_version=17, dynamo=False)
    else:
        torch.onnx.export(Brighten(), (example,), str(path), input_names=["input"], output_names=["output"],
                          opset_version=17, dynamo=False)
    return path


def test_every_facefusion_enhancer_is_registered_with_its_file_mirrors_and_licence():
    names = {"facefusion-gfpgan-1.2": 512, "facefusion-gfpgan-1.3": 512, "facefusion-gfpgan-1.4": 512,
             "gpen-bfr-256": 256, "gpen-bfr-512": 512, "gpen-bfr-1024": 1024, "gpen-bfr-2048": 2048,
             "codeformer": 512, "restoreformer-plus-plus": 512}
    for name in names:
        spec = plugins.get_component("restorer", name)
        key = name.removeprefix("facefusion-").replace("-", "_")
        assert plugins.get_component("restorer", key).name == name  # facefusion's spelling
        entry = get_entry(spec.weights[0])
        assert entry.filename == f"{key}.onnx" and not entry.pinned
        assert entry.urls == (f"https://github.com/facefusion/facefusion-assets/releases/download/models-3.0.0/{key}.onnx",
                              f"https://huggingface.co/facefusion/models-3.0.0/resolve/main/{key}.onnx")
        commercial = key.startswith(("gfpgan", "restoreformer"))
        assert ("non-commercial" in entry.license) is not commercial, name


def test_facefusions_gfpgan_exports_are_named_apart_from_facefixs_own():
    """'gfpgan-1.4' (facefusion's ONNX) and 'gfpgan-v1.4' (the native network) differed by
    one letter."""
    assert plugins.get_component("restorer", "gfpgan_1.4").name == "facefusion-gfpgan-1.4"
    assert plugins.get_component("restorer", "gfpgan-v1.4").name == "gfpgan"
    assert plugins.find(plugins.components("restorer"), "gfpgan-1.4") is None


def test_plugins_json_lists_the_face_models_with_licence_and_status(tmp_path):
    facefusion_file(tmp_path, "gpen_bfr_512", 64)
    result = CliRunner().invoke(cli, ["plugins", "--json", "--model-dir", str(tmp_path)])
    restorers = {item["name"]: item for item in json.loads(result.output)["components"]["restorer"]}
    assert restorers["gpen-bfr-512"]["weights_status"] == "available"
    assert restorers["codeformer"]["weights_status"] == "downloadable"
    assert "S-Lab" in restorers["codeformer"]["licenses"][0]


def test_gpen_bfr_256_aligns_with_the_arcface_128_template(photos, shared_weights, tmp_path):
    from facefix.pipeline import ImageStages, ImageTask, PipelineOptions, detect, restorer_geometry

    facefusion_file(tmp_path, "gpen_bfr_256", 256)
    restorer = compose.build(plugins.get_component("restorer", "gpen-bfr-256"), device="cpu",
                             resolver=WeightsResolver(model_dir=tmp_path, allow_download=False))
    weights = WeightsResolver(model_dir=shared_weights, allow_download=False)
    detector = compose.build(compose.choose("detector", None, weights), device="cpu", resolver=weights)
    photo = photos / "gfpgan__inputs_whole_imgs_Blake_Lively.jpg"
    job = ImageStages(PipelineOptions(), *restorer_geometry(restorer), detector=detector).prepare(
        ImageTask(photo, tmp_path / "x.jpg"))
    assert job.error is None and job.faces
    found = detect(detector, cv2.imread(str(photo)))
    target = restorer.template * 256
    # each aligned face puts some detected face's landmarks on arcface_128, not on FFHQ's template
    for face in job.faces:
        errors = [np.abs(np.c_[other.landmarks, np.ones(5)] @ face.affine.T - target).max() for other in found]
        assert min(errors) < 8
    from facefix.alignment import template

    assert np.abs(template(256) - target).max() > 10  # the two templates really differ


def test_restore_by_name_runs_the_model_and_notes_a_non_commercial_licence(photos, shared_weights, tmp_path):
    models = tmp_path / "models"
    facefusion_file(models, "gpen_bfr_512", 512)
    for detector_file in shared_weights.glob("detection_*"):
        (models / detector_file.name).symlink_to(detector_file)
    photo = photos / "gfpgan__inputs_whole_imgs_Blake_Lively.jpg"
    result = CliRunner().invoke(cli, ["restore", str(photo), str(tmp_path / "out"), "--restorer", "gpen-bfr-512",
                                      "--model-dir", str(models), "--ext", "png", "--no-color-match"])
    assert result.exit_code == 0, result.output
    assert "gpen-bfr-512's weights are licensed non-commercial" in result.output
    restored = read_any(tmp_path / "out" / "gfpgan__inputs_whole_imgs_Blake_Lively.png").astype(int)
    original = cv2.imread(str(photo)).astype(int)
    # the model brightens (kept: no colour matching): faces got brighter, the background did not change
    assert (restored - original).mean() > 1
    assert np.abs(restored[:40, :40] - original[:40, :40]).max() <= 1


def test_codeformer_gets_the_fidelity_as_its_weight_input(tmp_path):
    facefusion_file(tmp_path, "codeformer", 512, with_weight=True)
    resolver = WeightsResolver(model_dir=tmp_path, allow_download=False)
    faces = np.full((1, 512, 512, 3), 100, np.uint8)
    outputs = {}
    for fidelity in (0.0, 0.5):
        restorer = compose.build(plugins.get_component("restorer", "codeformer"), device="cpu", resolver=resolver,
                                 selection=compose.ComponentSelection(fidelity=fidelity))
        assert restorer.input_size == 512
        outputs[fidelity] = int(restorer.restore(faces)[0, 0, 0, 0])
    # 100 is -0.216 in [-1, 1]; +0.5 of weight gives 0.284, i.e. 164
    assert outputs == {0.0: 100, 0.5: 164}


def test_a_file_of_the_wrong_size_and_aligned_inputs_get_one_line(tmp_path, photos):
    facefusion_file(tmp_path, "gpen_bfr_256", 128)
    with pytest.raises(Exception, match="a 256 px model was expected for gpen-bfr-256, this one takes 128 px"):
        compose.build(plugins.get_component("restorer", "gpen-bfr-256"), device="cpu",
                      resolver=WeightsResolver(model_dir=tmp_path, allow_download=False))
    facefusion_file(tmp_path, "gpen_bfr_256", 256)
    result = CliRunner().invoke(cli, ["restore", str(photos / "gfpgan__inputs_cropped_faces_Adele_crop.png"),
                                      str(tmp_path / "out"), "--restorer", "gpen-bfr-256", "--aligned",
                                      "--model-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "aligns faces to its own template, not FFHQ's" in result.output
