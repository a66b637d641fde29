"""The one atomic-write helper: a file appears whole, or the old one stays and nothing is left behind."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from facefix.atomic import atomic_path, own_temporary_pid, refuse_unreplaceable, temporary_name, write_bytes_atomic
from facefix.errors import OutputError


def _temporaries(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".part"))


def test_the_file_appears_only_when_the_block_ends(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"new")
        assert not target.exists()  # nothing under the real name while writing
        assert temporary.parent == target.parent and temporary.name.startswith(".file.bin.")
    assert target.read_bytes() == b"new"
    assert _temporaries(target.parent) == []


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path, failure):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(failure)):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise failure
    assert target.read_bytes() == b"old"
    assert _temporaries(tmp_path) == []


def test_written_files_have_ordinary_permissions(tmp_path):
    write_bytes_atomic(tmp_path / "a.txt", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_checkpoint_that_fails_to_save_leaves_the_last_good_one(tmp_path, monkeypatch):
    """The trainer writes checkpoints through the helper: a failing save cleans up after itself."""
    from facefix.training import trainer as trainer_module

    class Engine:
        out = tmp_path
        models = {"generator": torch.nn.Linear(2, 2)}
        ema = torch.nn.Linear(2, 2)
        _check_weights = trainer_module.Trainer._check_weights

        def checkpoint_state(self):
            return {"step": 1}

    (tmp_path / "last.pth").write_bytes(b"good")

    def failing_save(obj, path):
        with open(path, "wb") as stream:
            stream.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer_module.torch, "save", failing_save)
    with pytest.raises(OSError):
        trainer_module.Trainer.save(Engine(), "last.pth")
    assert (tmp_path / "last.pth").read_bytes() == b"good"
    assert _temporaries(tmp_path) == []
    monkeypatch.undo()
    assert trainer_module.Trainer.save(Engine(), "last.pth") == tmp_path / "last.pth"
    assert torch.load(tmp_path / "last.pth", weights_only=True) == {"step": 1}


def test_a_long_name_gets_a_temporary_within_the_file_system_limit(tmp_path):
    """Names of 235-255 bytes failed: the temporary's name was longer than the limit."""
    target = tmp_path / ("é" * 120 + ".png")  # 245 bytes in UTF-8
    write_bytes_atomic(target, b"x")
    assert target.read_bytes() == b"x" and _temporaries(tmp_path) == []
    name = temporary_name(target.name, 4242, "0123abcd")
    assert len(name.encode()) <= 255 and own_temporary_pid(name) == 4242


def test_only_facefix_made_temporaries_are_recognised():
    assert own_temporary_pid(temporary_name("photo.jpg", 77, "deadbeef")) == 77
    for name in (".chapter.2023-final.part", ".photo.jpg.77-deadbeef-00000000.part", ".notes.part"):
        assert own_temporary_pid(name) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_what_is_not_a_regular_file_is_never_replaced(tmp_path):
    """The rename would put a regular file in place of a device (``-o /dev/null`` as root)."""
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    (tmp_path / "folder.png").mkdir()
    for target, reason in ((fifo, "exists and is a FIFO"), (tmp_path / "folder.png", "is a folder")):
        with pytest.raises(OutputError, match=reason):
            write_bytes_atomic(target, b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and _temporaries(tmp_path) == []
    with pytest.raises(OutputError, match="character device"):
        refuse_unreplaceable("/dev/null")
