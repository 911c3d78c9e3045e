"""The ``segbench`` command line on small synthetic saved runs: loading errors, the Markdown
report, the plots, ``compare`` exit codes and the github-action-benchmark export."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from saved_runs import CASES, make_run, run_cli, write

from segbench.cli import main
from segbench.errors import SegbenchError
from segbench.results.compare import compare_runs
from segbench.results.markdown import render_report
from segbench.results.runs import RunFileError, load_run, parse_run

# loading -----------------------------------------------------------------------------------


def test_load_run_rows(tmp_path: Path) -> None:
    run = load_run(write(tmp_path / "run.json", make_run()))
    assert [r.case for r in run.rows] == [c[0] for c in CASES]
    a = run.rows[0]
    assert a.shape == (64, 64, 40) and a.voxels == 64 * 64 * 40
    assert a.reference_s == 2.5 and a.candidate_s == 1.25 and a.speedup == pytest.approx(2.0)
    assert a.worst_class == ("2", 0.99871)
    assert a.provider == "CPUExecutionProvider"
    assert a.stages["reference"]["total"] == 2.5
    assert a.dice_vs_ground_truth == {"reference": 0.91, "candidate": pytest.approx(0.911)}
    assert run.rows[2].dice_vs_ground_truth == {}
    assert a.passed and run.commit == "0123456789ab"


def test_latency_falls_back_to_stats_min() -> None:
    data = make_run()
    for bench in data["benchmarks"]:
        bench["extra_info"].pop("latency_s")
        bench["extra_info"].pop("reference_s", None)
        bench["extra_info"].pop("candidate_s", None)
    row = parse_run(data).rows[0]
    assert row.reference_s == pytest.approx(2.5 + 1e-4)
    assert row.roles["candidate"].latency_source == "stats.min"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "is not JSON"),
        ({"results": []}, "not a pytest-benchmark run"),
        (
            {"benchmarks": [{"name": "test_x", "extra_info": {}, "stats": {"min": 1.0}}]},
            "none with segbench's extra_info",
        ),
    ],
)
def test_load_errors_name_the_file(tmp_path: Path, content: Any, needle: str) -> None:
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(RunFileError) as info:
        load_run(path)
    message = str(info.value)
    assert str(path) in message and needle in message and "Fix:" in message
    assert isinstance(info.value, SegbenchError)


def test_missing_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli("report", tmp_path / "nope.json", "--no-plots")
    assert code == 2
    assert "nope.json: does not exist" in capsys.readouterr().err


def test_usage_error_is_exit_2() -> None:
    assert main(["compare", "only-one.json"]) == 2
    assert main(["compare", "a.json", "b.json", "--max-slowdown", "0"]) == 2


# report ------------------------------------------------------------------------------------


def test_report_markdown(tmp_path: Path) -> None:
    run_path = write(tmp_path / "run_07.json", make_run(failed_dice=("scan_c.nii.gz",)))
    out = tmp_path / "rep"
    code, text = run_cli("report", run_path, "--out", out, "--no-plots")
    assert code == 0
    assert (out / "report.md").read_text() == text
    assert (
        "| subject | shape | reference s (paired, gate) | candidate s | speed-up | "
        "reference s (own rounds) | mean Dice |"
    ) in text
    assert (
        "| phantom_a_s1.nii.gz | 64x64x40 | 2.500 | 1.250 | 2.00x | 2.500 | 0.99955 | "
        "label 2 0.99871" in text
    )
    assert "0.9100 / 0.9110" in text  # Dice vs ground truth, both roles
    assert "FAIL dice" in text
    # summary rows: totals 4.3 s / 2.75 s, mean and median of the speed-ups 2.0, 1.2, 1.2
    assert "| **total (3 cases)** |  | 4.300 | 2.750 | 1.56x | 4.300 |" in text
    assert "| **mean** |  | 1.433 | 0.917 | 1.47x | 1.433 |" in text
    assert "| **median** |  | 1.200 | 1.000 | 1.20x | 1.200 |" in text
    assert "| **min** |  |  |  | 1.20x |  | 0.99825 |" in text
    assert "1 of 6 (1 cases not ok)" in text
    assert "## Stage times" in text
    assert not (out / "latency.png").exists()


def test_report_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_path = write(tmp_path / "run_03.json", make_run())
    monkeypatch.chdir(tmp_path)
    assert run_cli("report", run_path, "--no-plots")[0] == 0
    assert (tmp_path / "reports" / "run_03" / "report.md").is_file()


def test_render_report_with_class_names() -> None:
    rows = parse_run(make_run()).rows
    text = render_report(rows, "t", class_names={"2": "kidney"})
    assert "kidney 0.99871" in text and text.startswith("# t\n")


def test_report_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run_path = write(tmp_path / "run.json", make_run())
    out = tmp_path / "rep"
    code, text = run_cli("report", run_path, "--out", out)
    assert code == 0
    for name in ("latency.png", "speedup_vs_voxels.png", "class_dice.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
        assert f"]({name})" in text


def test_plot_disagreement_picks_the_worst_slice(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from segbench.results.plots import PlotError, plot_disagreement

    rng = np.random.default_rng(0)
    ct = rng.normal(40.0, 30.0, (40, 36, 12)).astype(np.float32)
    reference = np.zeros(ct.shape, np.uint8)
    reference[10:30, 8:28, 2:10] = 1
    reference[15:20, 12:18, 2:10] = 2
    candidate = reference.copy()
    candidate[10:14, 8:28, 4] = 0  # 80 voxels differ on slice 4
    candidate[10:30, 8:28, 7] = 2  # 400 - 30 voxels differ on slice 7
    candidate[0:2, 0:2, 9] = 3  # 4 voxels on slice 9
    path = tmp_path / "deep" / "disagreement.png"
    z = plot_disagreement(ct, reference, candidate, path, "synthetic", spacing=(1.5, 1.5, 3.0))
    assert z == 7
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(PlotError, match="shapes differ"):
        plot_disagreement(ct, reference[:-1], candidate, path, "bad")


# compare -----------------------------------------------------------------------------------


def test_compare_unchanged_passes(tmp_path: Path) -> None:
    old = write(tmp_path / "old.json", make_run())
    new = write(tmp_path / "new.json", make_run())
    code, text = run_cli("compare", old, new)
    assert code == 0
    assert "No threshold crossed in 3 common cases." in text
    assert "REGRESSED" not in text


def test_compare_flags_slowdown_and_dice_drop(tmp_path: Path) -> None:
    old = write(tmp_path / "old.json", make_run())
    new = write(tmp_path / "new.json", make_run(slow_candidate=1.3, dice_drop=0.01))
    code, text = run_cli("compare", old, new)
    assert code == 1
    assert text.count("REGRESSED") == 3
    assert "candidate latency x1.30" in text and "exceeds --max-slowdown 1.15" in text
    assert "drops more than --max-dice-drop 0.002" in text
    assert "1.250 -> 1.625 (x1.30)" in text
    # looser thresholds: what remains is the speed-up gate newly failing where 1.2x became 0.92x
    code, text = run_cli("compare", old, new, "--max-slowdown", "1.4", "--max-dice-drop", "0.02")
    assert code == 1 and text.count("REGRESSED") == 2
    assert "phantom_b_s2.nii.gz: the speedup gate passed before and fails now" in text
    assert "scan_c.nii.gz: the speedup gate passed before and fails now" in text


def test_compare_slowdown_only_and_cases_in_one_run(tmp_path: Path) -> None:
    new_data = make_run(slow_candidate=1.3)
    extra = copy.deepcopy(new_data["benchmarks"][-2:])
    for bench in extra:
        bench["extra_info"]["case"] = bench["group"] = "new_case.nii.gz"
    new_data["benchmarks"] += extra
    comparison = compare_runs(parse_run(make_run()), parse_run(new_data))
    assert comparison.only_new == ("new_case.nii.gz",) and comparison.only_old == ()
    change = comparison.changes[0]
    assert change.latency_ratio["candidate"] == pytest.approx(1.3)
    assert change.latency_ratio["reference"] == pytest.approx(1.0)
    assert change.dice_delta == pytest.approx(0.0)
    assert change.old_speedup == pytest.approx(2.0) and change.new_speedup == pytest.approx(2 / 1.3)
    assert comparison.regressed


def test_compare_newly_failing_gate(tmp_path: Path) -> None:
    comparison = compare_runs(
        parse_run(make_run()), parse_run(make_run(failed_dice=("scan_c.nii.gz",)))
    )
    assert [c.case for c in comparison.regressions] == ["scan_c.nii.gz"]


# export-gab --------------------------------------------------------------------------------


def test_export_gab_two_files(tmp_path: Path) -> None:
    run_path = write(tmp_path / "run.json", make_run())
    code, text = run_cli("export-gab", run_path, "-o", tmp_path / "out" / "gab.json")
    assert code == 0
    smaller = json.loads((tmp_path / "out" / "gab-smaller.json").read_text())
    bigger = json.loads((tmp_path / "out" / "gab-bigger.json").read_text())
    assert "customSmallerIsBetter" in text and "customBiggerIsBetter" in text
    assert len(smaller) == 9 and len(bigger) == 6
    # the reference's two figures are two series, named by which one they are
    assert [e["name"] for e in smaller[:3]] == [
        "phantom_a_s1.nii.gz - reference latency (paired, gate)",
        "phantom_a_s1.nii.gz - reference latency (own rounds)",
        "phantom_a_s1.nii.gz - candidate latency",
    ]
    for entry in smaller + bigger:
        assert set(entry) <= {"name", "unit", "value", "extra"}
        assert isinstance(entry["name"], str) and isinstance(entry["unit"], str)
        assert isinstance(entry["value"], float | int) and isinstance(entry["extra"], str)
    assert {
        "name": "phantom_a_s1.nii.gz - candidate latency",
        "unit": "s",
        "value": 1.25,
    }.items() <= smaller[2].items()
    units = {e["name"].rsplit(" - ", 1)[1]: e["unit"] for e in bigger}
    assert units == {"mean Dice": "Dice", "speed-up": "x"}


def test_export_gab_one_kind_to_stdout(tmp_path: Path) -> None:
    run_path = write(tmp_path / "run.json", make_run())
    code, text = run_cli("export-gab", run_path, "--kind", "bigger")
    assert code == 0
    entries = json.loads(text)
    assert [e["value"] for e in entries if e["unit"] == "x"] == pytest.approx([2.0, 1.2, 1.2])


def test_report_without_matplotlib_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    run_path = write(tmp_path / "run.json", make_run())
    code, _ = run_cli("report", run_path, "--out", tmp_path / "rep")
    assert code == 2
    assert "pip install 'segbench[report]'" in capsys.readouterr().err
    assert not (tmp_path / "rep" / "report.md").exists()
    assert run_cli("report", run_path, "--out", tmp_path / "rep", "--no-plots")[0] == 0
