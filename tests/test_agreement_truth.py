"""Each role's mask against the case's ground truth in mm (informational, no gate): computed
once per mask in the paired run, saved under the candidate's ``agreement["truth"]``, read
back and shown by the report; absent without a truth; runs saved before it still load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import build_tiny_net, tiny_card, write_nifti

from segbench.bench.paired import PairedRun, Truth
from segbench.bench.runtime import Runtime
from segbench.pipeline.backends import BackendKind, TorchBackend
from segbench.pipeline.predict import Prediction, StageTimes
from segbench.results.agreement import AgreementRecord
from segbench.results.agreement_report import agreement_section
from segbench.results.record import CaseRecord
from segbench.settings.config import BenchConfig, Gates, Profile

SHAPE = (30, 30, 24)
SPACING = 3.0


def masks() -> tuple[np.ndarray, np.ndarray]:
    """The reference's mask (a ball of class 1, a box of class 2) and the candidate's: the ball
    moved by one voxel (3 mm) along x."""
    x, y, z = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    ball = (x - 12) ** 2 + (y - 15) ** 2 + (z - 12) ** 2 <= 36
    ref = np.zeros(SHAPE, dtype=np.uint8)
    ref[ball] = 1
    ref[20:26, 5:12, 4:20] = 2
    cand = ref.copy()
    cand[cand == 1] = 0
    cand[np.roll(ball, 1, axis=0)] = 1
    return ref, cand


def prediction(labels: np.ndarray) -> Prediction:
    return Prediction(
        mask=None,  # type: ignore[arg-type]  # the figures read the labels only
        labels=labels,
        times=StageTimes(0.1, 0.1, 0.1),
        provider="cpu",
        network_shape=SHAPE,
    )


def paired(tmp_path: Path, truth: np.ndarray | None, label_check: str = "unnamed") -> PairedRun:
    """A paired run of a 30x30x24 case at 3 mm whose two roles already hold :func:`masks`
    (no network runs)."""
    image = write_nifti(tmp_path / "ct.nii.gz", shape=SHAPE, zooms=(SPACING,) * 3)
    runtime = Runtime(
        tiny_card(),
        {
            "reference": TorchBackend(build_tiny_net()),
            "candidate": TorchBackend(build_tiny_net()),
        },
        {"reference": Profile(BackendKind.TORCH), "candidate": Profile(BackendKind.ONNX)},
        None,
        "export",
        None,
    )
    pair = PairedRun.load("ct.nii.gz", image, None, runtime, BenchConfig(), Gates())
    if truth is not None:
        pair.truth = Truth(truth, "truth.nii.gz", label_check)
    ref, cand = masks()
    pair.runs["reference"].last = prediction(ref)
    pair.runs["candidate"].last = prediction(cand)
    return pair


def saved_record(pair: PairedRun) -> tuple[dict[str, Any], CaseRecord]:
    evaluation = pair.evaluate(timed=False)
    info = pair.gate_info(evaluation, "none")
    return info["agreement"], CaseRecord.from_extra_info("ct.nii.gz", {"candidate": info})


def test_truth_figures_are_computed_and_saved(tmp_path: Path) -> None:
    ref, _ = masks()
    saved, record = saved_record(paired(tmp_path, truth=ref.copy()))
    truth = saved["truth"]
    assert set(truth) == {"reference", "candidate"}
    # a truth equal to the reference: perfect for the reference, in every figure
    assert {k: v["nsd"] for k, v in truth["reference"].items()} == {"1": 1.0, "2": 1.0}
    assert truth["reference"]["1"] == {
        "nsd": 1.0,
        "hd95_mm": 0.0,
        "volume_diff_pct": 0.0,
        "presence": "present",
        "voxels": int((ref == 1).sum()),
    }
    # the candidate's ball moved 3 mm: below NSD 1 at 1 mm, HD95 one voxel; its box is exact
    moved = truth["candidate"]["1"]
    assert 0.0 < moved["nsd"] < 1.0 and moved["hd95_mm"] == pytest.approx(SPACING)
    assert truth["candidate"]["2"]["nsd"] == 1.0
    # the candidate-vs-reference figures are those of before
    assert saved["classes"]["1"]["nsd"] == moved["nsd"]
    ag = record.agreement
    assert ag is not None and ag.truth["candidate"]["1"].nsd == moved["nsd"]
    assert ag.truth_worst("reference") == ("1", 1.0, 0.0)
    assert ag.truth_worst("candidate") == ("1", moved["nsd"], SPACING)


def test_truth_figures_are_computed_once_per_mask(tmp_path: Path) -> None:
    ref, _ = masks()
    pair = paired(tmp_path, truth=ref.copy())
    first = pair.truth_agreement("reference")
    # a later run of the same mask (a new array, equal voxel for voxel) reuses the figures
    pair.runs["reference"].last = prediction(ref.copy())
    assert pair.truth_agreement("reference") is first
    changed = ref.copy()
    changed[changed == 2] = 0
    pair.runs["reference"].last = prediction(changed)
    again = pair.truth_agreement("reference")
    assert again is not first and again is not None and again["2"]["presence"] == "vanished"
    # a candidate's mask equal to the reference's, in the same numbering, reuses them too
    pair.runs["candidate"].last = prediction(changed.copy())
    assert pair.truth_agreement("candidate") is again


@pytest.mark.parametrize("label_check", [None, "differ: label 1 is 'liver' in the truth"])
def test_no_truth_figures_without_a_usable_truth(tmp_path: Path, label_check: str | None) -> None:
    ref, _ = masks()
    truth = None if label_check is None else ref.copy()
    saved, record = saved_record(paired(tmp_path, truth, label_check or "unnamed"))
    assert "truth" not in saved and saved["classes"]
    assert record.agreement is not None and record.agreement.truth == {}
    assert record.agreement.truth_worst("candidate") is None


def test_old_runs_load_and_report_without_truth_columns(tmp_path: Path) -> None:
    ref, _ = masks()
    saved, record = saved_record(paired(tmp_path, truth=ref.copy()))
    old_saved = {k: v for k, v in saved.items() if k != "truth"}
    old = CaseRecord.from_extra_info(
        "old.nii.gz", {"candidate": {"case": "old.nii.gz", "agreement": old_saved}}
    )
    assert old.agreement is not None and old.agreement.truth == {}
    assert AgreementRecord.from_info({"classes": {}, "truth": "x"}) == AgreementRecord({})
    names = {"1": "ball", "2": "box|x"}
    text = "\n".join(agreement_section([old], names, Gates()))
    assert "## Agreement in millimetres" in text and "vs truth" not in text
    # beside a run with the figures: the columns, "-" for the case without a truth
    text = "\n".join(agreement_section([record, old], names, Gates(min_class_voxels=0)))
    lines = text.splitlines()
    (header,) = [line for line in lines if line.startswith("| subject")]
    assert "| reference vs truth | candidate vs truth | figures s |" in header
    moved = saved["truth"]["candidate"]["1"]["nsd"]
    (row,) = [line for line in lines if line.startswith("| ct.nii.gz")]
    assert "| ball 1.0000, max HD95 0.00 mm |" in row
    assert f"| ball {moved:.4f}, max HD95 3.00 mm |" in row
    (old_row,) = [line for line in lines if line.startswith("| old.nii.gz")]
    assert old_row.count("| - |") >= 1 and old_row.split("|")[-3].strip() == "-"
    assert "box\\|x" in text  # names are escaped
