"""The two writers of a case's ``extra_info`` (:class:`~segbench.results.record.Measurement`,
:class:`~segbench.results.record.GateFigures`): the dicts the code before wrote (same keys,
order and values, ``tests/data/record/golden.jsonl``), the read-back through
:class:`~segbench.results.record.CaseRecord`, and the figures computed once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

from segbench.results.record import (
    CaseRecord,
    GateFigures,
    Measurement,
    achieved_gflops,
)
from segbench.scoring.gates import speedup
from segbench.scoring.metrics import ClassDice, DiceResult
from segbench.scoring.stats import PairSample

DATA = Path(__file__).parent / "data" / "record"
generate = load_script(DATA / "generate.py")


def test_the_writers_write_what_they_wrote_before() -> None:
    golden = (DATA / "golden.jsonl").read_text().splitlines()
    found = generate.outputs()
    assert len(found) == len(golden) == 2 * generate.CASES
    for i, (line, want) in enumerate(zip(found, golden, strict=True)):
        assert line == want, f"call {i} of tests/data/record/generate.py"


def test_an_unknown_keyword_is_refused() -> None:
    kw, _ = next(generate.inputs(1))
    with pytest.raises(TypeError, match="gflops"):
        Measurement(**kw, gflops=3.0)


def measurement(**changes: object) -> Measurement:
    base = Measurement(
        case="a.nii.gz",
        role="candidate",
        model="m",
        backend="onnx",
        precision="fp32",
        provider="CPUExecutionProvider",
        io_binding=False,
        shape=(4, 4, 2),
        spacing=(1.5, 1.5, 3.0),
        voxels=32,
        network_shape=None,
        stages_s={"preprocess": 0.1, "inference": 2.0, "postprocess": 0.1, "total": 2.2},
        estimator="min",
        latency_s=2.2,
        peak_rss_mb=100.0,
        peak_rss_scope="test",
        windows=8,
        gflop_per_window=12.345,
        window=(64, 64, 32),
    )
    return Measurement(**{**vars(base), **changes})  # type: ignore[arg-type]


def test_gflops_are_computed_once_from_the_windows() -> None:
    info = measurement().to_info()
    assert info["gflop_per_window"] == 12.35 and info["windows"] == 8
    assert info["inference_gflops"] == achieved_gflops(8, 12.345, 2.0) == 49.4
    assert achieved_gflops(8, 12.345, 0.0) is None
    assert "inference_gflops" not in measurement(gflop_per_window=None).to_info()


def test_a_written_case_reads_back() -> None:
    dice = DiceResult((ClassDice(1, 0.999, 5000, 5000), ClassDice(2, 0.98, 10, 12)), 1e-4)
    pairs = PairSample.from_ratios([1.9, 2.1, 2.0])
    gates = GateFigures(
        dice=dice,
        min_class_voxels=1000,
        logits=None,
        reference_s=2.0,
        candidate_s=1.0,
        speedup=pairs.speedup,
        baseline_speedup=None,
        injected="none",
        gates={"dice": True, "speedup": True},
        pairs=pairs,
    ).to_info()
    ref = measurement(role="reference", backend="torch").to_info()
    cand = measurement().to_info() | gates
    row = CaseRecord.from_extra_info("a.nii.gz", {"reference": ref, "candidate": cand})
    assert row.speedup == pytest.approx(pairs.speedup)
    assert row.gated_class_dice_min == 0.999 and row.class_dice == {"1": 0.999, "2": 0.98}
    assert row.candidate_gflops == 49.4 and row.passed
    no_pairs = CaseRecord.from_extra_info(
        "a.nii.gz", {"reference": ref, "candidate": {**cand, "pair_speedups": None}}
    )
    assert no_pairs.speedup == speedup(2.0, 1.0) == 2.0  # one latency ratio, the gates' own
    assert gates["gates"] == {"dice": True, "speedup": True} and json.dumps(gates)
