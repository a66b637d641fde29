"""Parsers run through the same backends as restorers: on a CPU, onnxruntime from an export
cached per weights file (the argmax inside the graph), one face at a time."""

from __future__ import annotations

import cv2
import numpy as np

from conftest import shared_path
from facefix.backends import parser_backend
from facefix.onnx import OnnxParser
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
