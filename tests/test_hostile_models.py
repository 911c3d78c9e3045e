"""Hostile model files: a checkpoint whose pickle would call os.system, and a user ONNX file
whose channel count is symbolic."""

from __future__ import annotations

import os
import posix
from pathlib import Path

import onnx
import pytest
import torch
from helpers import tiny_card
from onnx import TensorProto, helper

from segbench.errors import ModelError
from segbench.models.nnunet import load_nnunet_checkpoint
from segbench.pipeline.export import check_onnx_matches


class CallsSystem:
    """Unpickles as a call of os.system("true"): harmless, but exactly what must be refused."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records calls of os.system (pickled as posix.system) instead of running them."""
    seen: list[str] = []

    def record(command: str) -> int:
        seen.append(command)
        return 0

    monkeypatch.setattr(posix, "system", record)
    monkeypatch.setattr(os, "system", record)
    return seen


@pytest.fixture
def unsafe_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint_final.pth"
    weights = {"seg.weight": torch.ones(2, 2, 1, 1, 1)}
    torch.save({"network_weights": weights, "init_args": CallsSystem()}, path)
    return path


def test_unsafe_pickle_is_called_unsafe_not_corrupt(
    unsafe_checkpoint: Path, calls: list[str]
) -> None:
    with pytest.raises(ModelError) as info:
        load_nnunet_checkpoint(unsafe_checkpoint)
    text = str(info.value)
    assert "checkpoint_final.pth: unsafe pickle: it would import/call os.system" in text
    assert "refused by torch.load(weights_only=True)" in text
    assert "Fix: only if you trust" in text and "#trust" in text
    assert "corrupt" not in text
    assert calls == []  # nothing ran


def test_unsafe_pickle_loads_with_trust(unsafe_checkpoint: Path, calls: list[str]) -> None:
    state = load_nnunet_checkpoint(unsafe_checkpoint, trust_checkpoint=True)
    assert torch.equal(state["seg.weight"], torch.ones(2, 2, 1, 1, 1))
    assert calls == ["true"]  # the user trusted it: unpickled as written


def test_truncated_checkpoint_is_corrupt_even_with_trust(
    unsafe_checkpoint: Path, calls: list[str]
) -> None:
    raw = unsafe_checkpoint.read_bytes()
    unsafe_checkpoint.write_bytes(raw[: len(raw) // 2])
    for trust in (False, True):
        with pytest.raises(ModelError, match=r"cannot be read .*corrupt.*Fix: copy it again"):
            load_nnunet_checkpoint(unsafe_checkpoint, trust_checkpoint=trust)
    assert calls == []


def _onnx_with_output_channels(path: Path, channels: int | str) -> Path:
    dims_in: list[int | str] = ["b", 1, "x", "y", "z"]
    dims_out: list[int | str] = ["b", channels, "x", "y", "z"]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, dims_in)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims_out)
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["logits"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_symbolic_output_channels_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = _onnx_with_output_channels(tmp_path / "user.onnx", "classes")
    with pytest.raises(ModelError) as info:
        check_onnx_matches(path, tiny_card(num_classes=3))
    text = str(info.value)
    assert str(path) in text
    assert "its output channel count is symbolic ('classes'), expected the fixed 3" in text
    check_onnx_matches(_onnx_with_output_channels(tmp_path / "ok.onnx", 3), tiny_card(3))
