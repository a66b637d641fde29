"""Parsers run through the same backends as restorers: on a CPU, onnxruntime from an export
cached per weights file (the argmax inside the graph), one face at a time."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import shared_path
from facefix.atomic import atomic_path
from facefix.backends import parser_backend
from facefix.onnx import OnnxParser, remove_export, weights_apart
from facefix.parsing import paste_parse_size, parse_for_paste
from facefix.pipeline import AlignedFace, restore_faces
from unet_parser_plugin import UNetParser


def real_faces(count: int) -> np.ndarray:
    folder = shared_path("faces", "val512", "images")
    return np.stack([cv2.imread(str(path)) for path in sorted(folder.iterdir())[:count]])


def test_the_onnx_parser_labels_real_faces_as_pytorch_does(tmp_path):
    parser = UNetParser(shared_path("weights", "parsing_unet_lightweight.pth"))
    runner, how = parser_backend(parser, "auto", "cpu", tmp_path)
    assert isinstance(runner, OnnxParser) and how == "onnxruntime"
    faces = real_faces(3)
    torch_labels, onnx_labels = parser.parse(faces), runner.parse(faces)
    assert onnx_labels.shape == (3, 512, 512) and onnx_labels.dtype == np.uint8
    assert np.mean(onnx_labels == torch_labels) > 0.999
    assert len(np.unique(torch_labels)) > 5  # real faces: skin, hair, eyes, ... not one class
    # one face at a time: a face's labels don't depend on the others
    assert np.array_equal(runner.parse(faces[1:2])[0], onnx_labels[1])

    exported = sorted(tmp_path.glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    again, _ = parser_backend(UNetParser(shared_path("weights", "parsing_unet_lightweight.pth")), "auto", "cpu", tmp_path)
    assert exported[0].stat().st_mtime_ns == stamp and isinstance(again, OnnxParser)  # the cached export


def test_torch_stays_torch_and_other_parsers_run_as_they_are(tmp_path):
    parser = UNetParser(shared_path("weights", "parsing_unet_lightweight.pth"))
    assert parser_backend(parser, "torch", "cpu", tmp_path)[0] is parser

    class Fixed:
        def parse(self, faces):
            return np.zeros(faces.shape[:3], np.uint8)

    other = Fixed()
    assert parser_backend(other, "auto", "cpu", tmp_path) == (other, "")
    assert not list(tmp_path.glob("*.onnx"))


# --- parsing at the paste's resolution --------------------------------------------------


class RecordingParser:
    """Labels each face with the network input it was parsed at (// 4, to fit uint8)."""

    def __init__(self, network_size: int = 512, size_multiple: int | None = 16):
        self.network_size, self.size_multiple, self.calls = network_size, size_multiple, []

    def parse(self, faces, network_input=None):
        self.calls.append((len(faces), network_input))
        return np.full(faces.shape[:3], (network_input or self.network_size) // 4, np.uint8)


def test_paste_parse_size_follows_the_paste_within_half_and_full_network_size():
    parser = RecordingParser()
    assert paste_parse_size(parser, 300.0) == 256  # 150 wanted: never below half of 512
    assert paste_parse_size(parser, 700.0) == 352  # 350, rounded up to a multiple of 16
    assert paste_parse_size(parser, 1100.0) is None  # 550 would exceed 512: the network's own size
    assert paste_parse_size(parser, None) is None  # no paste size known
    assert paste_parse_size(RecordingParser(size_multiple=None), 300.0) is None  # fixed-size network
    assert paste_parse_size(RecordingParser(256, 4), 300.0) == 152


def test_parse_for_paste_groups_faces_by_size_and_keeps_their_order():
    parser = RecordingParser()
    crops = np.zeros((4, 512, 512, 3), np.uint8)
    labels = parse_for_paste(parser, crops, [300.0, 1100.0, 310.0, 700.0])
    assert sorted(parser.calls, key=str) == sorted([(2, 256), (1, None), (1, 352)], key=str)
    assert [int(item[0, 0]) for item in labels] == [64, 128, 64, 88]
    fixed = RecordingParser(size_multiple=None)
    parse_for_paste(fixed, crops, [300.0, 700.0, 1100.0, 310.0])
    assert fixed.calls == [(4, None)]  # one batch at the network's size


def test_faces_only_pasted_are_parsed_small_and_a_restorers_input_at_full_size():
    class Restorer:
        input_size = output_size = 512
        needs_parsing = False

        def __init__(self):
            self.given = "unset"

        def restore(self, faces, parsing=None):
            self.given = parsing
            return faces.copy()

    faces = [AlignedFace(crop=np.zeros((512, 512, 3), np.uint8), affine=np.eye(2, 3), paste_size=size)
             for size in (300.0, 1100.0)]
    parser, restorer = RecordingParser(), Restorer()
    restore_faces(restorer, parser, faces)
    assert [int(face.parsing[0, 0]) for face in faces] == [64, 128] and restorer.given is None
    restorer.needs_parsing, parser.calls = True, []
    restore_faces(restorer, parser, faces)
    assert parser.calls == [(2, None)] and restorer.given.shape == (2, 512, 512)


def test_a_free_size_onnx_parser_labels_reduced_faces_as_pytorch_does(tmp_path):
    parser = UNetParser(shared_path("weights", "parsing_unet_lightweight.pth"))
    runner, _ = parser_backend(parser, "auto", "cpu", tmp_path)
    assert runner.size_multiple == parser.size_multiple == 4  # the graph's height and width are free
    faces = real_faces(2)
    small = paste_parse_size(parser, 300.0)
    assert small == 152
    torch_labels, onnx_labels = parser.parse(faces, small), runner.parse(faces, small)
    assert onnx_labels.shape == (2, 512, 512)
    assert np.mean(onnx_labels == torch_labels) > 0.999
    # the reduced parse is close to the full one: what the paste mask is made of
    assert np.mean(torch_labels == parser.parse(faces)) > 0.85
    # the cached export keeps its weights in a data file beside the graph
    graph, = tmp_path.glob("*.onnx")
    data, = tmp_path.glob("*.onnx.*.data")
    assert data.stat().st_size > 10 * graph.stat().st_size
    remove_export(graph)
    assert not list(tmp_path.iterdir())


def test_weights_apart_leaves_no_data_file_when_the_export_fails(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary, weights_apart(temporary, target):
            temporary.write_bytes(b"half a graph")
            raise RuntimeError("the exporter failed")
    assert not list(tmp_path.iterdir())
