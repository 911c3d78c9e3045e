"""Hostile user ONNX files (round 3): an input type, rank, fixed batch or window size, an output
type, channel count or shape, or an extra required input that cannot serve the model is refused
by :func:`check_onnx_matches`, in one line naming the file, what is wrong and the fix, before
anything runs (never a raw onnxruntime error after the reference's runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_PATCH, tiny_card
from hostile_files import conv_model
from onnx import TensorProto, helper, numpy_helper

from segbench.errors import ModelError
from segbench.pipeline.export import check_onnx_matches

CARD = tiny_card(num_classes=3)  # 1 channel in, 3 classes out, patch (32, 32, 32)


def refused(path: Path, *words: str, fit: bool = False, batch: int = 1) -> str:
    with pytest.raises(ModelError) as info:
        check_onnx_matches(path, CARD, fit=fit, batch=batch, run=True)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    assert "Export the ONNX file from the same checkpoint" in message, message
    for word in words:
        assert word in message, message
    return message


def test_a_fitting_file_is_accepted_and_run(tmp_path: Path) -> None:
    check_onnx_matches(conv_model(tmp_path / "ok.onnx"), CARD, run=True)
    fixed = conv_model(tmp_path / "fixed.onnx", image=[1, 1, *TINY_PATCH], logits=None)
    check_onnx_matches(fixed, CARD, run=True)  # the patch itself, batch 1: it serves
    one_axis = conv_model(tmp_path / "z.onnx", image=["b", 1, "x", "y", 32], logits=None)
    check_onnx_matches(one_axis, CARD)  # the patch's z fixed, x and y free: it serves
    optional = conv_model(tmp_path / "opt.onnx", extra="scale", extra_with_default=True)
    check_onnx_matches(optional, CARD, run=True)  # an input with a default is not required


@pytest.mark.parametrize(
    ("dtype", "name"),
    [(TensorProto.FLOAT16, "float16"), (TensorProto.INT64, "int64"), (TensorProto.UINT8, "uint8")],
)
def test_input_of_another_type_is_refused(tmp_path: Path, dtype: int, name: str) -> None:
    path = conv_model(tmp_path / "in.onnx", in_type=dtype)
    refused(path, f"its input 'image' is {name}, segbench feeds float32 windows")


def test_integer_output_is_refused(tmp_path: Path) -> None:
    argmax = helper.make_node("ArgMax", ["conv"], ["logits"], axis=1, keepdims=1)
    conv = helper.make_node("Conv", ["image", "w"], ["conv"])
    path = conv_model(tmp_path / "argmax.onnx", out_type=TensorProto.INT64, nodes=[conv, argmax])
    refused(path, "its output 'logits' is int64, logits are float")


def test_input_of_another_rank_is_refused(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "rank.onnx", image=["b", 1, "x", "y"])
    refused(path, "its input has rank 4, expected 5 (B, C, X, Y, Z)")


@pytest.mark.parametrize("fit", [False, True])
def test_fixed_window_other_than_the_patch_is_refused(tmp_path: Path, fit: bool) -> None:
    path = conv_model(tmp_path / "fixed.onnx", image=[1, 1, 48, 48, 48], logits=None)
    refused(path, "its input has the fixed size (48, 48, 48), segbench sends windows of (32, 32")
    patch = conv_model(tmp_path / "patch.onnx", image=[1, 1, *TINY_PATCH], logits=None)
    if fit:  # the patch itself cannot serve windows fitted to small volumes
        refused(patch, "windows fitted to each volume (fit_patch)", fit=True)


def test_fixed_batch_is_refused_for_batches(tmp_path: Path) -> None:
    two = conv_model(tmp_path / "b2.onnx", image=[2, 1, "x", "y", "z"], logits=None)
    refused(two, "its input has a fixed batch of 2, segbench sends one window at a time")
    one = conv_model(tmp_path / "b1.onnx", image=[1, 1, "x", "y", "z"], logits=None)
    check_onnx_matches(one, CARD, batch=1, run=True)
    refused(
        one, "a fixed batch of 1, segbench sends 1 to 4 windows (batch_size) at a time", batch=4
    )


def test_output_channels_other_than_the_classes_are_refused(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "k5.onnx", logits=["b", 5, "x", "y", "z"], channels=5)
    refused(path, "its output has 5 channels, expected 3")


def test_undeclared_output_shape_is_inferred(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "k5.onnx", image=[1, 1, 8, 8, 8], logits=None, channels=5)
    # the window (8, 8, 8) is refused too; the channel count came from shape inference
    refused(path, "its output has 5 channels, expected 3")


def test_extra_required_input_is_refused(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "two.onnx", extra="mask")
    refused(path, "it needs 2 inputs ('image', 'mask'), segbench feeds one, the image")


def test_output_of_another_window_is_refused_by_the_small_run(tmp_path: Path) -> None:
    """Declared dims all symbolic, so only running it shows the halved window."""
    conv = helper.make_node("Conv", ["image", "w"], ["conv"])
    pool = helper.make_node(
        "MaxPool", ["conv"], ["logits"], kernel_shape=[2, 2, 2], strides=[2] * 3
    )
    path = conv_model(tmp_path / "pool.onnx", logits=["b", 3, "p", "q", "r"], nodes=[conv, pool])
    check_onnx_matches(path, CARD)  # the graph's declarations do not show it
    refused(path, "a (1, 1, 8, 8, 8) window gives logits of shape (1, 3, 4, 4, 4), expected")


def test_operator_that_fails_is_refused_by_the_small_run(tmp_path: Path) -> None:
    shape = numpy_helper.from_array(np.array([1, 3, 5, 5, 5], np.int64), "shape")
    conv = helper.make_node("Conv", ["image", "w"], ["conv"])
    reshape = helper.make_node("Reshape", ["conv", "shape"], ["logits"])
    path = conv_model(
        tmp_path / "reshape.onnx",
        nodes=[helper.make_node("Constant", [], ["shape"], value=shape), conv, reshape],
    )
    refused(path, "onnxruntime cannot run it on a (1, 1, 8, 8, 8) float32 window")
