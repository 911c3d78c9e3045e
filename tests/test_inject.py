"""Injected regressions (segbench.bench.inject): parsing, the wrapped backend, perturbed ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import ScriptedClock
from onnx import numpy_helper

from segbench.bench.inject import (
    InjectedBackend,
    candidate_profile,
    perturb_onnx,
    shift_first_axis,
)
from segbench.settings.config import Profile
from segbench.settings.injection import Injection, parse_injection
from segbench.settings.kinds import BackendKind


def test_parse_injection() -> None:
    assert parse_injection([]) == Injection()
    assert not Injection().active
    inj = parse_injection(["slowdown=0.3", "shift=1", "no-gaussian", "perturb=0.02"])
    assert inj == Injection(slowdown=0.3, shift=1, no_gaussian=True, perturb=0.02)
    assert inj.active and inj.describe() == "slowdown=0.3, perturb=0.02, shift=1, no-gaussian"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("slow=0.3", "unknown injection 'slow=0.3'"),
        ("delay=abc", "delay needs a number"),
        ("delay=-1", "delay must be > 0"),
        ("shift=1.5", "whole number of voxels"),
        ("no-gaussian=1", "takes no value"),
    ],
)
def test_bad_injection_quotes_the_item(item: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_injection([item])


class _Fixed:
    """A backend whose every call takes ``seconds`` on ``clock`` (no clock: no time at all)."""

    kind = BackendKind.ONNX
    provider = "CPUExecutionProvider"

    def __init__(self, seconds: float, clock: ScriptedClock | None = None) -> None:
        self.seconds, self.clock = seconds, clock

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.clock is not None:
            self.clock.sleep(self.seconds)
        return np.arange(batch.size, dtype=np.float32).reshape(batch.shape)


@pytest.mark.parametrize(
    ("injection", "seconds"),
    [
        (Injection(), 0.1),
        (Injection(slowdown=1.0), 0.2),  # relative: twice the inner call
        (Injection(slowdown=0.3), 0.13),
        (Injection(delay=0.05), 0.15),  # absolute: 50 ms more
        (Injection(delay=0.05, slowdown=1.0), 0.25),
    ],
)
def test_slowdown_is_relative_and_delay_absolute(injection: Injection, seconds: float) -> None:
    batch = np.zeros((1, 1, 4, 2, 2), dtype=np.float32)
    clock = ScriptedClock()
    backend = InjectedBackend(_Fixed(0.1, clock), injection, clock=clock, sleep=clock.sleep)
    start = clock()
    out = backend(batch)
    assert clock() - start == pytest.approx(seconds)
    assert np.array_equal(out, _Fixed(0)(batch))
    assert backend.provider == "CPUExecutionProvider" and backend.kind is BackendKind.ONNX


def test_shift_moves_window_output_one_voxel() -> None:
    logits = np.arange(2 * 3 * 4 * 2 * 2, dtype=np.float32).reshape(2, 3, 4, 2, 2)
    shifted = shift_first_axis(logits, 1)
    assert np.array_equal(shifted[:, :, 1:], logits[:, :, :-1])
    assert np.array_equal(shifted[:, :, 0], logits[:, :, 0])
    out = InjectedBackend(_Fixed(0), Injection(shift=1))(np.zeros((2, 3, 4, 2, 2), np.float32))
    assert np.array_equal(out, shift_first_axis(_Fixed(0)(np.zeros_like(logits)), 1))


def test_no_gaussian_changes_only_the_candidate_profile() -> None:
    profile = Profile(BackendKind.ONNX)
    assert candidate_profile(profile, Injection()) is profile
    assert candidate_profile(profile, Injection(no_gaussian=True)).use_gaussian is False


def test_perturb_onnx_changes_only_the_last_conv(tiny_onnx: Path, tmp_path: Path) -> None:
    source = tiny_onnx
    out = perturb_onnx(source, 0.5, tmp_path / "bad")
    assert out != source and out.parent == tmp_path / "bad"
    onnx.checker.check_model(str(out))
    before, after = onnx.load(str(source)), onnx.load(str(out))
    last = [n for n in before.graph.node if n.op_type == "Conv"][-1].input[1]
    old = {i.name: numpy_helper.to_array(i) for i in before.graph.initializer}
    new = {i.name: numpy_helper.to_array(i) for i in after.graph.initializer}
    changed = [name for name in old if not np.array_equal(old[name], new[name])]
    assert changed == [last]
    noise = new[last] - old[last]
    assert 0.3 < noise.std() / old[last].std() < 0.7
    assert perturb_onnx(source, 0.5, tmp_path / "bad") == out  # seeded, same name


def test_perturb_refuses_a_graph_without_conv(tmp_path: Path) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="no Conv node"):
        perturb_onnx(path, 0.1, tmp_path)
