"""Reading weights files: safe loading, unwrapping, layout checks, strict loads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from facefix.checkpoints import (
    build_strict,
    canonicalize,
    layout_differences,
    load_into,
    read_checkpoint,
    read_state,
    strip_prefix,
)
from facefix.errors import WeightsError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class _Evil:
    """Pickles as a call to os.system; a safe loader must refuse it without running it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _Custom:
    """A harmless class that is still not a tensor: weights_only refuses it too."""


# --- safe loading ------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_read_state_loads_plain_weights(tmp_path, zipped):
    state = {"conv.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "conv.bias": torch.ones(3)}
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    loaded = read_state(path)
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[key], state[key]) for key in state)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_read_state_refuses_code_execution(tmp_path, zipped):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "payload": _Evil(marker)}, path, _use_new_zipfile_serialization=zipped)

    with pytest.raises(WeightsError) as caught:
        read_state(path)

    message = str(caught.value)
    assert message.startswith(
        f"{path}: refused to load: the file needs arbitrary code execution (not a plain weights file); "
        "re-save it as a state dict"
    )
    assert "\n" not in message
    assert not marker.exists()  # the payload never ran


def test_read_state_refuses_custom_classes(tmp_path):
    path = tmp_path / "custom.pth"
    torch.save({"w": torch.zeros(2), "obj": _Custom()}, path)
    with pytest.raises(WeightsError, match=r"refused to load: .*_Custom"):
        read_state(path)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_read_state_truncated_file(tmp_path, zipped):
    path = tmp_path / "t.pth"
    torch.save({"w": torch.randn(64, 64)}, path, _use_new_zipfile_serialization=zipped)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError) as caught:
            read_state(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: not a readable PyTorch weights file (") and "\n" not in message


def test_read_state_missing_or_garbage(tmp_path):
    with pytest.raises(WeightsError, match=r"not a readable PyTorch weights file \(no such file\)"):
        read_state(tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(WeightsError, match="not a readable PyTorch weights file"):
        read_state(garbage)


def test_read_state_real_legacy_file():
    path = SHARED / "weights" / "detection_mobilenet0.25_Final.pth"
    if not path.exists():
        pytest.skip(f"../shared material not available: {path}")
    state = read_state(path)
    assert "body.stage1.0.0.weight" in state
    assert isinstance(state["body.stage1.0.0.weight"], torch.Tensor)


def test_read_state_mmap_reads_keys_of_zip_and_legacy_files(tmp_path):
    state = {"a.weight": torch.arange(6.0).reshape(2, 3)}
    for zipped in (True, False):
        path = tmp_path / f"w{zipped}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=zipped)
        loaded = read_state(path, mmap=True)
        assert torch.equal(loaded["a.weight"], state["a.weight"])


# --- unwrapping ----------------------------------------------------------------------


def test_canonicalize_prefers_ema_weights_and_keeps_the_stored_config():
    ema, raw = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    state, config = canonicalize({"params": raw, "params_ema": ema, "config": {"width": 4}})
    assert state["w"].item() == 1 and config == {"width": 4}
    assert canonicalize({"params": raw})[0]["w"].item() == 0
    assert canonicalize({"state_dict": raw, "step": 3})[0] == raw
    # a bare state dict: its tensors are the weights, and there is no stored config
    state, config = canonicalize({"w": torch.ones(2), "epoch": 7})
    assert list(state) == ["w"] and config is None


def test_strip_prefix():
    assert strip_prefix({"module.a": 1, "module.b": 2}) == {"a": 1, "b": 2}
    assert strip_prefix({"module.a": 1, "b": 2}) == {"module.a": 1, "b": 2}


def test_canonicalize_strips_a_data_parallel_prefix_only_when_every_key_has_it():
    wrapped = {"module.conv.weight": torch.ones(1), "module.conv.bias": torch.ones(1)}
    assert set(canonicalize(wrapped)[0]) == {"conv.weight", "conv.bias"}
    mixed = {"module.conv.weight": torch.ones(1), "head.bias": torch.ones(1)}
    assert set(canonicalize(mixed)[0]) == set(mixed)


def test_nested_checkpoints_are_found(tmp_path):
    path = tmp_path / "pair.pth"
    torch.save({"params_ema": {"g": torch.ones(1)}, "config": {"size": 8},
                "parser": {"params_ema": {"p": torch.ones(2)}, "config": {"classes": 19}}}, path)
    checkpoint = read_checkpoint(path)
    assert set(checkpoint.state) == {"g"} and checkpoint.config == {"size": 8}
    (inner,) = checkpoint.nested()
    assert set(inner.state) == {"p"} and inner.config == {"classes": 19} and inner.path == path


# --- layout checks and strict loads --------------------------------------------------------


class _Net(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        if width > 64:
            raise ValueError("too wide")
        self.conv = nn.Conv2d(3, width, 3)
        self.norm = nn.BatchNorm2d(width)


def test_layout_differences_name_each_kind_of_mismatch():
    expected = {"a": (1,), "b": (2,), "c": (3,)}
    assert layout_differences(expected, expected) == ""
    found = {"a": (1,), "c": (4,), "z": (1,)}
    assert layout_differences(expected, found) == "missing keys: b; unexpected keys: z; keys of another shape: c"


def test_build_strict_loads_exactly_and_refuses_in_one_line(tmp_path):
    reference = _Net(4)
    state = reference.state_dict()
    loaded = build_strict(lambda: _Net(4), state, tmp_path / "w.pth", "does not fit the test net")
    assert not loaded.training and torch.equal(loaded.conv.weight, reference.conv.weight)
    with pytest.raises(WeightsError) as caught:
        build_strict(lambda: _Net(8), state, tmp_path / "w.pth", "does not fit the test net")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'w.pth'}: does not fit the test net; keys of another shape: ")
    assert "\n" not in message
    # a config the architecture rejects is a weights error too, raised before any allocation
    with pytest.raises(WeightsError, match="bad config"):
        build_strict(lambda: _Net(1000), state, tmp_path / "w.pth", "does not fit the test net")


def test_a_huge_config_costs_nothing_before_the_layout_check(tmp_path):
    """The layout is checked on the meta device: a file whose stored config asks for an
    enormous network is refused without allocating it."""
    huge = lambda: nn.Linear(200_000, 200_000)  # 160 GB in float32  # noqa: E731
    with pytest.raises(WeightsError, match="missing keys: bias, weight"):
        build_strict(huge, {}, tmp_path / "w.pth", "does not fit")


def test_load_into_accepts_declared_optional_keys(tmp_path):
    net = _Net(4)
    state = {k: v for k, v in _Net(4).state_dict().items() if not k.endswith("num_batches_tracked")}
    with pytest.raises(WeightsError, match="missing keys: norm.num_batches_tracked"):
        load_into(_Net(4), state, tmp_path / "old.pth", "not the test net")
    load_into(net, state, tmp_path / "old.pth", "not the test net",
              optional=lambda key: key.endswith("num_batches_tracked"))
    assert torch.equal(net.norm.running_mean, state["norm.running_mean"])
