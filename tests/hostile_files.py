"""Hostile files built byte by byte or by hand for the refusal tests: DICOM headers pydicom
cannot write (deep sequences, a non-numeric NumberOfFrames) and small ONNX graphs with chosen
input/output types and dims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PIXEL_DATA = b"\xe0\x7f\x10\x00"  # (7FE0,0010), explicit VR little endian


def nested_sequences(depth: int) -> bytes:
    """ContentSequence (0040,A730) items nested ``depth`` deep, undefined lengths throughout:
    pydicom itself cannot write this (its writer recurses), so it is built byte by byte."""
    sequence = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff"
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    ends = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return (sequence + item) * depth + ends * depth


def insert_before_pixels(path: Path, raw: bytes) -> None:
    data = path.read_bytes()
    at = data.index(PIXEL_DATA)
    path.write_bytes(data[:at] + raw + data[at:])


def set_number_of_frames(path: Path, text: bytes) -> None:
    """NumberOfFrames (IS) set to ``text`` (2 bytes): pydicom refuses to write a non-number."""
    import pydicom

    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 1
    ds.save_as(path)
    data = path.read_bytes()
    tag = b"\x28\x00\x08\x00IS\x02\x00"
    assert tag + b"1 " in data
    path.write_bytes(data.replace(tag + b"1 ", tag + text))


Dims = list[int | str]
IMAGE: Dims = ["b", 1, "x", "y", "z"]
LOGITS: Dims = ["b", 3, "x", "y", "z"]


def conv_model(
    path: Path,
    *,
    image: Dims | None = IMAGE,
    logits: Dims | None = LOGITS,
    in_type: int = TensorProto.FLOAT,
    out_type: int = TensorProto.FLOAT,
    channels: int = 3,
    extra: str | None = None,
    extra_with_default: bool = False,
    nodes: list[onnx.NodeProto] | None = None,
) -> Path:
    """A 1x1x1 convolution from 1 channel to ``channels`` (a real network as far as
    onnxruntime can tell: an input of another type is cast to float first), with the
    declared input/output types and dims given; ``extra``
    adds a second graph input (required, or with a default value: an initializer)."""
    weight = numpy_helper.from_array(np.ones((channels, 1, 1, 1, 1), np.float32), "w")
    body = nodes or [helper.make_node("Conv", ["image", "w"], ["logits"])]
    if nodes is None and in_type != TensorProto.FLOAT:  # a valid model: cast, then convolve
        cast = helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT)
        body = [cast, helper.make_node("Conv", ["image_f", "w"], ["logits"])]
    inputs = [helper.make_tensor_value_info("image", in_type, image)]
    initializers = [weight]
    if extra is not None:
        inputs.append(helper.make_tensor_value_info(extra, TensorProto.FLOAT, [1]))
        if extra_with_default:
            initializers.append(numpy_helper.from_array(np.zeros(1, np.float32), extra))
    out = helper.make_tensor_value_info("logits", out_type, logits)
    graph = helper.make_graph(body, "g", inputs, [out], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
