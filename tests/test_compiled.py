"""``--backend compile``: a restorer compiled ahead of time by AOTInductor once per weights file
and loaded from the cached package by every later process."""

from __future__ import annotations

import numpy as np
import torch

from facefix.backends import apply_backend
from facefix.compiled import CompiledRestorer
from facefix.restorers import TorchRestorer


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.LeakyReLU(0.2),
                                        torch.nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, batch):
        return torch.tanh(batch + self.body(batch))


class DataDependent(SmallNet):
    def forward(self, batch):
        if batch.mean() > 0:  # a branch on the values: torch.export can't capture it
            return batch
        return super().forward(batch)


def faces(count: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def test_compiled_once_then_loaded_from_the_cache(tmp_path, capsys):
    cache = tmp_path / "onnx"
    eager = TorchRestorer(SmallNet(), input_size=32, output_size=32, name="small")
    compiled, how = apply_backend(TorchRestorer(SmallNet(), input_size=32, output_size=32, name="small"),
                                  "compile", "fp32", "cpu", None, cache)
    assert isinstance(compiled, CompiledRestorer) and how == "AOTInductor fp32"
    assert "compiling small (fp32) with AOTInductor once" in capsys.readouterr().err
    package, = (tmp_path / "compiled").glob("small-fp32-*.pt2")
    assert not list(tmp_path.glob("**/*.part"))  # written atomically
    expected = eager.restore(faces())
    restored = compiled.restore(faces())
    assert restored.shape == expected.shape and restored.dtype == np.uint8
    assert np.abs(restored.astype(int) - expected.astype(int)).max() <= 1
    stamp = package.stat().st_mtime_ns
    again, _ = apply_backend(TorchRestorer(SmallNet(), input_size=32, output_size=32, name="small"),
                             "compile", "fp32", "cpu", None, cache)
    assert "compiling" not in capsys.readouterr().err and package.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.restore(faces()), restored)


def test_a_network_that_does_not_export_is_compiled_in_process_with_a_note(tmp_path):
    notes: list[str] = []
    restorer = TorchRestorer(DataDependent(), input_size=32, output_size=32, name="branchy")
    runner, how = apply_backend(restorer, "compile", "fp32", "cpu", None, tmp_path / "onnx", warn=notes.append)
    assert runner is restorer and how == "torch compiled fp32"
    assert len(notes) == 1 and "branchy does not compile ahead of time" in notes[0]
    assert not list((tmp_path / "compiled").glob("*.pt2"))
