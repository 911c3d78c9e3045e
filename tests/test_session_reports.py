"""What a session prints when things go wrong: a session's error once, as a usage error; a
case's error in one short line while the other cases run on; a gate's verdict kept when its
plot cannot be drawn; config and ground-truth errors refused with their file named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import run_pytest, write_nifti
from hostile_folder import GOOD, hostile_folder

from segbench.bench.paired import load_truth
from segbench.errors import InputError
from segbench.inputs.volumes import load_volume

FAST = ("--segbench-rounds=1", "--segbench-warmup=0", "--segbench-speedup-min=0")


def run_suite(tmp_path: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_pytest(tmp_path, "--benchmark-only", f"--segbench-data={data}", *FAST, *extra)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, hostile_folder(folder)


def errors_section(stdout: str) -> list[str]:
    """The lines of pytest's ERRORS section (up to the segbench table)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "= ERRORS =" in line)
    end = next(i for i, line in enumerate(lines) if "segbench: demo model" in line)
    return lines[start + 1 : end]


@pytest.mark.slow
def test_bad_cases_are_one_short_message_each(
    hostile: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, bad = hostile
    out = run_suite(tmp_path, folder)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    # the good case passes; the folder's walk leaves out the two files that are not NIfTI
    cases = [n for n in bad if f"test_reference[{n}]" in out.stdout]
    assert len(cases) >= 8, out.stdout[-3000:]
    assert f"2 passed, {len(cases)} skipped, {len(cases)} errors" in out.stdout
    section = errors_section(out.stdout)
    assert "Traceback" not in out.stdout and not any(line.startswith(">") for line in section)
    assert len(section) <= 6 * len(cases), "\n".join(section)
    for name in cases:
        header = next(i for i, line in enumerate(section) if f"test_reference[{name}]" in line)
        assert name in section[header + 1] and bad[name] in "\n".join(section[header + 1 :])
        assert f"test_candidate[{name}]" not in "\n".join(section)  # skipped, not repeated
    table = out.stdout.split("segbench: demo model")[1].split("short test summary")[0]
    assert GOOD in table and "ok" in table and table.count("ERROR") == len(cases)


@pytest.mark.slow
def test_long_tracebacks_on_request(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)), folder / "flat.nii.gz")
    out = run_suite(tmp_path, folder, "--tb=long")
    assert out.returncode == 1, out.stdout[-3000:]
    assert "in load_volume" in out.stdout or "load_volume(" in out.stdout
    assert "segbench.errors.InputError" in out.stdout


@pytest.mark.slow
def test_a_session_error_is_one_usage_error(
    hostile: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.onnx"
    out = run_suite(tmp_path, hostile[0], f"--segbench-onnx={missing}")
    assert out.returncode == 4, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert text.count(f"{missing} is not a readable ONNX file") == 1
    assert "Traceback" not in text and "test_reference[" not in text
    assert len(text.splitlines()) < 20, text


def test_collect_only_builds_no_runtime(tmp_path: Path) -> None:
    """--collect-only lists the cases without building the runtime (nor its errors)."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_nifti(folder / "a.nii.gz", shape=(8, 8, 8))
    out = run_suite(tmp_path, folder, "--collect-only", f"--segbench-onnx={tmp_path / 'no.onnx'}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "test_reference[a.nii.gz]" in out.stdout


def test_typo_in_a_case_key_is_a_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("liver_001.nii.gz", "liver_002.nii.gz"):
        write_nifti(folder / name, shape=(8, 8, 8))
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"cases": {"livr_001.nii.gz": {"dice_min": 0.9}}}))
    # -k keeps one case: the key is checked against every case found, not only the selected
    out = run_suite(tmp_path, folder, f"--segbench-config={config}", "-k", "liver_002")
    assert out.returncode == 4, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"{config}: key 'cases.livr_001.nii.gz' is not a case of this session" in out.stderr
    assert "closest case ids: 'liver_001.nii.gz'" in out.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"cases": {"liver_001.nii.gz": {"dice_min": 0.9}}}))
    listed = run_suite(tmp_path, folder, f"--segbench-config={good}", "--collect-only")
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: p.write_bytes(b'{"$comment": "\xff"}'), "not UTF-8 text"),
        (
            lambda p: p.write_text('{"profiles": {"candidate": {"backend": "tensorrt"}}}'),
            "must be one of ['torch', 'onnx'], got 'tensorrt'",
        ),
    ],
    ids=["folder", "latin1", "tensorrt"],
)
def test_bad_config_file_is_a_usage_error(tmp_path: Path, write: object, expected: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    write_nifti(folder / "a.nii.gz", shape=(8, 8, 8))
    config = tmp_path / "bench.json"
    write(config)  # type: ignore[operator]
    out = run_suite(tmp_path, folder, f"--segbench-config={config}")
    assert out.returncode == 4, out.stdout[-3000:] + out.stderr[-3000:]
    assert "INTERNALERROR" not in out.stdout + out.stderr
    assert f"{config}: " in out.stderr and expected in out.stderr


@pytest.mark.slow
def test_dice_failure_kept_when_the_png_cannot_be_written(
    hostile: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / GOOD).write_bytes((hostile[0] / GOOD).read_bytes())
    blocker = tmp_path / "reports-file"
    blocker.write_text("a file where the report folder should be")
    out = run_suite(tmp_path, good, "--segbench-inject=shift=1", f"--segbench-report-dir={blocker}")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    failure = out.stdout.split("= FAILURES =")[1].split("segbench: demo model")[0]
    assert "mean Dice" in failure and "(gate dice_min" in failure
    assert "(no PNG of the worst slice:" in failure and str(blocker) in failure
    assert failure.index("(gate dice_min") < failure.index("no PNG")
    assert "Traceback" not in out.stdout and "FAIL dice" in out.stdout


# ---- ground truth labels where the paired run loads them --------------------------------------


def _grid(tmp_path: Path) -> Path:
    return write_nifti(tmp_path / "ct.nii.gz", shape=(8, 8, 8))


def _truth(tmp_path: Path, values: np.ndarray, name: str = "truth.nii.gz") -> Path:
    ct = nib.load(_grid(tmp_path))
    path = tmp_path / name
    nib.save(nib.Nifti1Image(values, ct.affine), path)
    return path


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (0.5, "non-integral labels"),
        (-1.0, "negative labels"),
        (3.0, "out of range for a model of 3 classes"),
    ],
)
def test_load_truth_refuses_labels_that_are_not_classes(
    tmp_path: Path, value: float, match: str
) -> None:
    labels = np.zeros((8, 8, 8), np.float32)
    labels[2:4, 2:4, 2:4] = value
    path = _truth(tmp_path, labels)
    volume = load_volume(_grid(tmp_path))
    with pytest.raises(InputError, match=rf"truth\.nii\.gz: has .*{match}"):
        load_truth(path, volume, ("background", "a", "b"))


def test_load_truth_with_its_own_label_table_is_held_to_uint8(tmp_path: Path) -> None:
    labels = np.zeros((8, 8, 8), np.float32)
    labels[1, 1, 1] = 7.0  # not a class of a 3-class model, but named by the truth's table
    path = _truth(tmp_path, labels)
    volume = load_volume(_grid(tmp_path))
    truth = load_truth(path, volume, ("background", "a", "b"), names={7: "liver"})
    assert truth.labels.max() == 7 and truth.label_check.startswith("differ")
    labels[1, 1, 1] = 300.0
    path = _truth(tmp_path, labels, "big.nii.gz")
    with pytest.raises(InputError, match=r"big\.nii\.gz: has label 300, over 255"):
        load_truth(path, volume, ("background", "a", "b"), names={300: "liver"})


def test_load_truth_accepts_integral_float_labels(tmp_path: Path) -> None:
    labels = np.zeros((8, 8, 8), np.float32)
    labels[2:4, 2:4, 2:4] = 2.0
    truth = load_truth(_truth(tmp_path, labels), load_volume(_grid(tmp_path)), ("bg", "a", "b"))
    assert truth.labels.dtype == np.uint8 and truth.labels.max() == 2
