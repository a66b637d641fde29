"""The ``spandrel`` restorer (the optional ``spandrel`` extra): checkpoints spandrel
recognises, run with the upstream [-1, 1] normalisation and CodeFormer's fidelity.

No released GFPGAN or CodeFormer file exists here: the tests save networks of the
released layouts with seeded random weights. For GFPGAN the same file goes through
facefix's own GFP-GAN (golden-tested against gfpgan 1.3.8) and through spandrel: the two
must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facefix import compose, plugins
from facefix.cli import cli
from facefix.compat import ensure_torchvision
from facefix.errors import ComponentError
from facefix.weights import WeightsResolver

ensure_torchvision()
spandrel = pytest.importorskip("spandrel", reason="the spandrel extra is not installed")


def build(name: str, path, fidelity: float | None = None):
    return compose.build(plugins.get_component("restorer", name), device="cpu",
                         resolver=WeightsResolver(allow_download=False), weights_path=path,
                         selection=compose.ComponentSelection(fidelity=fidelity))


def seeded_face(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:512, 0:512] / 512.0
    face = np.dstack([0.45 + 0.3 * np.sin(7 * x + 2 * y), 0.5 + 0.25 * np.cos(5 * y), 0.4 + 0.3 * x * y])
    return np.clip(face * 255 + rng.normal(0, 4, face.shape), 0, 255).astype(np.uint8)[None]


@pytest.fixture(scope="module")
def gfpgan_file(tmp_path_factory):
    from facefix_plugins.gfpgan.arch import official_gfpgan

    torch.manual_seed(0)
    network = official_gfpgan("clean")
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    path = tmp_path_factory.mktemp("spandrel") / "GFPGANv1.4-layout.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    return path


def test_a_gfpgan_file_restores_as_facefix_own_gfpgan_does(gfpgan_file):
    face = seeded_face()
    through_spandrel = build("spandrel", gfpgan_file)
    assert through_spandrel.architecture == "GFPGAN"
    ours = build("gfpgan", gfpgan_file).restore(face)
    theirs = through_spandrel.restore(face)
    assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 1

    # spandrel's own call feeds [0, 1]: a different, wrong image from the same weights
    descriptor = spandrel.ModelLoader().load_from_state_dict(torch.load(gfpgan_file, weights_only=True)["params_ema"])
    rgb = torch.from_numpy(face[0, :, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        naive = (descriptor(rgb)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert np.abs(naive - ours[0].astype(float)).mean() > 5


def test_codeformer_takes_its_fidelity_from_the_option(tmp_path):
    extra = pytest.importorskip("spandrel_extra_arches")
    extra.install(ignore_duplicates=True)
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(0)
    network = CodeFormer()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = tmp_path / "codeformer.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    face = seeded_face(1)
    restorers = {fidelity: build("spandrel", path, fidelity) for fidelity in (0.0, 1.0)}
    assert all(restorer.architecture == "CodeFormer" for restorer in restorers.values())
    assert "non-commercial" in restorers[0.0].license
    outputs = {fidelity: restorer.restore(face) for fidelity, restorer in restorers.items()}
    assert outputs[0.0].shape == (1, 512, 512, 3)
    assert np.abs(outputs[0.0].astype(int) - outputs[1.0].astype(int)).mean() > 0.5  # the weight matters
    # and it is the upstream call: x in [-1, 1], model(x, weight=w)[0], read back from [-1, 1]
    x = torch.from_numpy(face[0, :, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        upstream = network.eval()(x, weight=1.0)[0].clamp(-1, 1)
    expected = np.rint((upstream[0].permute(1, 2, 0).numpy()[:, :, ::-1] + 1) * 127.5)
    assert np.abs(outputs[1.0][0].astype(int) - expected).max() <= 1


def test_other_files_get_one_line(tmp_path):
    torch.save({"params": {"conv.weight": torch.zeros(3, 3, 3, 3)}}, tmp_path / "odd.pth")
    with pytest.raises(ComponentError, match="odd.pth: not a model spandrel recognises"):
        build("spandrel", tmp_path / "odd.pth")
    with pytest.raises(ComponentError, match="pass --weights FILE"):
        build("spandrel", None)
    from facefix_plugins.realesrgan.arch import SRVGGNetCompact

    torch.save({"params": SRVGGNetCompact(num_feat=8, num_conv=2).state_dict()}, tmp_path / "compact.pth")
    import cv2

    cv2.imwrite(str(tmp_path / "face.png"), seeded_face()[0])
    result = CliRunner().invoke(cli, ["restore", str(tmp_path / "face.png"), str(tmp_path / "out"), "--restorer", "spandrel",
                                      "--weights", str(tmp_path / "compact.pth"), "--aligned"])
    assert result.exit_code != 0
    assert "a Compact model; the spandrel restorer runs GFPGAN, RestoreFormer, CodeFormer face models" in result.output
