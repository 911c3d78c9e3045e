"""Hostile inputs in a whole session (round 3): one good case among ten bad ones (a volume whose
grid cannot fit in memory, damaged DICOM headers) passes while each bad one fails in one line;
a user ONNX file that cannot serve the model stops the session before any test runs; Ctrl-C in
the middle of a case keeps and saves the cases that finished; NaN logits fail the Dice gate by
name; an output that is a folder is said to be one."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import run_pytest, write_dicom_series, write_nifti
from hostile_files import conv_model, insert_before_pixels, nested_sequences, set_number_of_frames
from onnx import TensorProto
from saved_runs import make_run

from segbench.cli import main
from segbench.scoring.gates import check_dice
from segbench.scoring.metrics import compute_dice, logit_diff
from segbench.settings.config import Gates

FAST = ["--benchmark-only", "--segbench-rounds=1", "--segbench-warmup=0"]
INTERRUPT_PLUGIN = '''
"""Ctrl-C during the N-th pipeline run of the session (SEGBENCH_TEST_INTERRUPT_AT)."""
import os

import segbench.bench.segmenters as segmenters

_real = segmenters.predict_volume
_calls = [0]


def _interrupting(*args, **kwargs):
    _calls[0] += 1
    if _calls[0] == int(os.environ["SEGBENCH_TEST_INTERRUPT_AT"]):
        raise KeyboardInterrupt
    return _real(*args, **kwargs)


segmenters.predict_volume = _interrupting
'''


def header_only_nifti(path: Path, shape: tuple[int, int, int], zoom: float) -> Path:
    """A NIfTI file of ``shape`` int16 voxels of ``zoom`` mm whose voxel data is missing: only
    a reader that decodes before it checks would notice (as a truncated file)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    with open(path, "wb") as fh:
        header.write_to(fh)
        fh.write(b"\0" * 4)  # no extensions
    return path


def dicom_case(folder: Path, damage: str) -> None:
    pydicom = pytest.importorskip("pydicom")
    paths = write_dicom_series(folder)
    if damage == "deep":
        insert_before_pixels(paths[0], nested_sequences(3000))
    elif damage == "frames":
        set_number_of_frames(paths[0], b"ab")
    else:
        for path in paths:
            ds = pydicom.dcmread(path)
            if damage == "no_columns":
                del ds.Columns
            elif damage == "zero_rows":
                ds.Rows = 0
            else:
                ds.ImageOrientationPatient = {
                    "zero_iop": [0.0] * 6,
                    "parallel_iop": [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
                    "scaled_iop": [2.0, 0.0, 0.0, 0.0, 2.0, 0.0],
                }[damage]
            ds.save_as(path)


BAD = {
    "units_m.nii": "needs about",  # 400^3 at 20 mm: a grid of 2667^3 at the demo's 3 mm
    "units_cm.nii": "needs about",  # 300^3 at 15 mm
    "dicom_deep": "nests DICOM sequences too deeply",
    "dicom_frames": "has NumberOfFrames 'ab'",
    "dicom_no_columns": "has no Columns tag",
    "dicom_zero_rows": "has Rows '0'",
    "dicom_zero_iop": "not two orthogonal unit vectors",
    "dicom_parallel_iop": "not two orthogonal unit vectors",
    "dicom_scaled_iop": "not two orthogonal unit vectors",
    "dicom_frames_b": "has NumberOfFrames 'ab'",
}


@pytest.mark.slow
def test_one_good_case_among_ten_bad_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_nifti(data / "good.nii.gz", shape=(40, 36, 20), zooms=(3.0, 3.0, 3.0))
    header_only_nifti(data / "units_m.nii", (400, 400, 400), 20.0)
    header_only_nifti(data / "units_cm.nii", (300, 300, 300), 15.0)
    for name in BAD:
        if name.startswith("dicom_"):
            dicom_case(data / name, name.removeprefix("dicom_").removesuffix("_b"))
    out = run_pytest(tmp_path, *FAST, f"--segbench-data={data}")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-4000:]
    assert "2 passed, 10 skipped, 10 errors" in out.stdout, out.stdout[-3000:]
    assert "Traceback" not in text and "INTERNALERROR" not in text
    lines = out.stdout.splitlines()
    for case, words in BAD.items():
        # one line: the message, naming the case's file or folder, what is wrong and the fix
        said = [line for line in lines if line.startswith(f"{data / case}: ")]
        assert len(said) == 1 and words in said[0] and "Fix: " in said[0], (case, said)
        assert f"ERROR at setup of test_reference[{case}]" in out.stdout
    rows = [line.split() for line in lines if line.split()[-1:] in (["ERROR"], ["ok"])]
    assert sorted(r[0] for r in rows if r[-1] == "ERROR") == sorted(BAD), rows
    assert [r[0] for r in rows if r[-1] == "ok"] == ["good.nii.gz"]
    assert len(lines) < 100, out.stdout  # short: no traceback, no captured log


@pytest.mark.slow
def test_bad_user_onnx_stops_the_session_before_any_test(tmp_path: Path) -> None:
    logits: list[int | str] = ["b", 7, "x", "y", "z"]  # the demo model's 7 classes
    bad = conv_model(tmp_path / "prod.onnx", channels=7, logits=logits, in_type=TensorProto.FLOAT16)
    out = run_pytest(tmp_path, *FAST, "--segbench-suite=quick", f"--segbench-onnx={bad}")
    assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, out.stderr
    assert f"{bad} does not match model 'demo'" in errors[0]
    assert "its input 'image' is float16, segbench feeds float32 windows" in errors[0]
    assert "passed" not in out.stdout and "reference" not in out.stdout  # nothing ran


@pytest.mark.slow
def test_ctrl_c_keeps_and_saves_the_finished_cases(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a_first.nii.gz", "b_second.nii.gz"):
        write_nifti(data / name, shape=(40, 36, 20), zooms=(3.0, 3.0, 3.0))
    (tmp_path / "interrupt_plugin.py").write_text(INTERRUPT_PLUGIN)
    # runs: a (reference 1, paired reference 2, candidate 3), b (reference 4, paired 5, cut: 6);
    # no run is judged contended (--segbench-busy-max=1): a contended run run again would move
    # the cut into case a
    import os

    os.environ["SEGBENCH_TEST_INTERRUPT_AT"] = "6"
    try:
        out = run_pytest(
            tmp_path,
            *FAST,
            f"--segbench-data={data}",
            "--segbench-busy-max=1",
            "-p",
            "interrupt_plugin",
            "--benchmark-json=run.json",
        )
    finally:
        del os.environ["SEGBENCH_TEST_INTERRUPT_AT"]
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-4000:]  # pytest's "interrupted"
    assert "ValueError" not in text and "INTERNALERROR" not in text, text[-4000:]
    assert (
        "segbench: interrupted (KeyboardInterrupt): the 1 finished case is kept in the table "
        "and saved to run.json; left out, unfinished: candidate[b_second.nii.gz]"
    ) in out.stdout, out.stdout[-3000:]
    saved = json.loads((tmp_path / "run.json").read_text())
    names = [b["name"] for b in saved["benchmarks"]]
    assert names == [
        "reference[a_first.nii.gz]",
        "candidate[a_first.nii.gz]",
        "reference[b_second.nii.gz]",
    ]
    assert main(["gate", str(tmp_path / "run.json")]) == 1  # b_second has no candidate


def test_nan_logits_fail_the_dice_gate_by_name() -> None:
    labels = np.zeros((4, 4, 4), np.uint8)
    dice = compute_dice(labels, labels)
    logits = np.zeros((3, 4, 4, 4), np.float32)
    same = logit_diff(logits, logits.copy())
    assert check_dice("c", dice, Gates(), ["bg", "a", "b"], same).passed
    broken = logits.copy()
    broken[1, :2] = np.nan
    broken[2, 0, 0, 0] = np.inf
    diff = logit_diff(logits, broken)
    assert (diff.candidate_non_finite, diff.reference_non_finite) == (33, 0)
    assert diff.max_abs == 0.0 and np.isfinite(diff.mean_abs)  # over the finite ones
    gate = check_dice("c", dice, Gates(), ["bg", "a", "b"], diff)
    assert not gate.passed  # Dice 1.0 does not save it
    assert "NaN/inf logits: 33 in the candidate (gate failed)" in gate.message
    assert "no threshold can accept non-finite logits" in gate.message
    assert "max |logit diff| 0; " not in gate.message


def test_outputs_that_are_folders_are_called_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run.json"
    run.write_text(json.dumps(make_run()))
    folder = tmp_path / "out"
    folder.mkdir()
    for argv, words in [
        (["merge", str(run), "-o", str(folder)], f"{folder}: is a folder, not a file name"),
        (["export-gab", str(run), "-o", str(folder), "--kind", "smaller"], "is a folder"),
        (["report", str(run), "--out", str(run), "--no-plots"], "is a file, not a folder"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Fix: " in err and "writable" not in err, err


def test_benchmark_json_that_is_a_folder_is_refused_at_the_start(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    out = run_pytest(tmp_path, "--collect-only", "--benchmark-json=runs")
    assert out.returncode == 4, out.stderr[-2000:]
    assert "--benchmark-json=runs is a folder, not a file name" in out.stderr
    assert "Fix: name the file, e.g. --benchmark-json=runs/run.json" in out.stderr
