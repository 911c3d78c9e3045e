"""The plugin's live progress (a line per case and round, rewritten in place in a terminal, a
line per run elsewhere) and what a saved run records about a case's files: a
TotalSegmentator-layout case gets its ground truth, named relative to the data folder."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from helpers import PYTEST_LINE, FakeReporter, attached_terminal, run_pytest

from segbench.inputs.cases import Case
from segbench.inputs.phantoms import (
    LABELS,
    GridSpec,
    PhantomSpec,
    default_cache_dir,
    ensure_phantom,
    phantom_set,
)
from segbench.plugin import progress
from segbench.plugin.progress import INTERVAL, Terminal, announcer
from segbench.plugin.session import SegbenchSession
from segbench.settings.cpu import read_cpu_flags

TINY = GridSpec("wheel3mm", (60, 56, 48), (3.0, 3.0, 3.0), "RAS")  # one 64^3 window of demo


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_live_line_is_rewritten_in_place_at_most_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    reporter = FakeReporter(tty=True)
    observer = attached_terminal(reporter).case("phantom_lung192x208")
    assert observer is not None
    move = f"\r\x1b[{len(PYTEST_LINE)}C"  # after pytest's text, which stays
    show = observer.start("candidate", "round", 2, 3)
    assert show is not None
    assert reporter.out == [f"{move}  phantom_lung192x208  candidate  round 2/3\x1b[K"]
    for done in range(27):  # within one interval: no write
        show(done, 27)
    assert len(reporter.out) == 1
    clock.now += 1.5 * INTERVAL
    show(14, 27)
    assert (
        reporter.out[-1]
        == f"{move}  phantom_lung192x208  candidate  round 2/3  windows 14/27\x1b[K"
    )
    show(27, 27)  # the last window is always shown
    assert reporter.out[-1].endswith("windows 27/27\x1b[K") and len(reporter.out) == 3
    observer.start("reference", "paired", 3, 3)
    assert reporter.out[-1] == f"{move}  phantom_lung192x208  reference  paired 3/3\x1b[K"
    observer.end()  # erased: pytest's line is as pytest left it
    assert reporter.out[-1] == f"{move}\x1b[K"
    assert reporter.currentfspath == Path("tests/test_regression.py")
    assert not any("\n" in text for text in reporter.out)


def test_live_line_drops_the_case_on_a_narrowattached_terminal() -> None:
    reporter = FakeReporter(tty=True, width=len(PYTEST_LINE) + 40)
    observer = attached_terminal(reporter).case("phantom_lung192x208_las_s102.nii.gz")
    assert observer is not None
    show = observer.start("reference", "warm-up", 1, 2)
    assert reporter.out[-1].endswith("C  reference  warm-up 1/2\x1b[K")
    assert show is not None
    show(3, 3)
    assert reporter.out[-1].endswith("C  reference  warm-up 1/2  windows 3/3\x1b[K")


def test_callback_cost_stays_small_with_a_real_clock() -> None:
    reporter = FakeReporter(tty=True)
    observer = attached_terminal(reporter).case("c")
    assert observer is not None
    show = observer.start("candidate", "round", 1, 1)
    assert show is not None
    start = progress.time.monotonic()
    for done in range(20000):
        show(done, 10**6)
    elapsed = progress.time.monotonic() - start
    assert len(reporter.out) - 1 <= 1 + elapsed / INTERVAL


def test_without_a_terminal_one_line_per_run_then_pytests_line_again() -> None:
    reporter = FakeReporter(tty=False)
    observer = attached_terminal(reporter).case("scan.nii.gz")
    assert observer is not None
    note = observer.start("reference", "round", 1, 2)
    assert note is not None
    for done in range(28):
        note(done, 27)
    observer.start("reference", "round", 2, 2)
    observer.end()
    assert "".join(reporter.out) == (
        "\n  scan.nii.gz  reference  round 1/2\n"
        "  scan.nii.gz  reference  round 2/2  windows 27\n" + PYTEST_LINE
    )
    assert reporter.currentfspath == Path("tests/test_regression.py")


def test_announcements_and_modes() -> None:
    reporter = FakeReporter(tty=False)
    terminal = attached_terminal(reporter)
    say = announcer(terminal)
    assert say is not None
    say("exporting demo to ONNX (opset 17) into /c/onnx...")
    assert "".join(reporter.out) == (
        "\nsegbench: exporting demo to ONNX (opset 17) into /c/onnx...\n" + PYTEST_LINE
    )
    quiet = attached_terminal(FakeReporter(tty=True), "auto", verbosity=-1)  # -q
    assert quiet.case("c") is None and announcer(quiet) is None
    assert attached_terminal(FakeReporter(tty=True), "on", verbosity=-1).case("c") is not None
    assert attached_terminal(FakeReporter(tty=True), "off").case("c") is None
    assert attached_terminal(None, "on").case("c") is None  # no terminal reporter
    worker = Terminal(None, "on")
    worker.attach(FakeReporter(tty=True), None, 0, worker=True)
    assert worker.case("c") is None


def _session(tmp_path: Path, mode: str, suite: str = "quick") -> Any:
    options = SimpleNamespace(record_paths=mode, data=tmp_path / "data", suite=suite)
    return SimpleNamespace(options=options)


def test_recorded_truth_is_relative_unless_asked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    case = Case(id="a/scan.nii.gz", path=data / "a" / "scan.nii.gz", truth=data / "a" / "s.nii")
    record: Any = SegbenchSession.recorded_truth
    assert record(_session(tmp_path, "relative"), case, case.truth) == "a/s.nii"
    assert record(_session(tmp_path, "absolute"), case, case.truth) == str(case.truth)
    ts = Case(id="s1", path=data / "s1" / "ct.nii.gz", masks=data / "s1" / "segmentations")
    label_map = tmp_path / "cache" / "truth" / "s1-0123.nii.gz"
    assert record(_session(tmp_path, "relative"), ts, label_map) == "s1/segmentations"
    phantom = Case(id="p.nii.gz", phantom=phantom_set("quick")[0])
    seg = tmp_path / "cache" / "phantoms" / "p_seg.nii.gz"
    assert record(_session(tmp_path, "relative"), phantom, seg) == "quick:p_seg.nii.gz"
    assert record(_session(tmp_path, "relative"), case, None) is None


def _totalsegmentator_case(data: Path) -> None:
    """``data/s0001/ct.nii.gz`` with ``segmentations/<class>.nii.gz`` (and a non-class mask)."""
    image, labels = ensure_phantom(PhantomSpec(TINY, 5), default_cache_dir())
    case = data / "s0001"
    (case / "segmentations").mkdir(parents=True)
    (case / "ct.nii.gz").write_bytes(image.read_bytes())
    seg: Any = nib.load(labels)
    array = np.asanyarray(seg.dataobj)
    for label, name in [*LABELS.items(), (99, "brain")]:
        if label:
            mask = nib.Nifti1Image((array == label).astype(np.uint8), seg.affine)
            nib.save(mask, case / "segmentations" / f"{name}.nii.gz")


@pytest.mark.slow
def test_suite_shows_progress_and_records_the_truth_relative_to_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _totalsegmentator_case(data)
    run = tmp_path / "run.json"
    out = run_pytest(
        tmp_path,
        "--benchmark-only",
        f"--segbench-data={data}",
        "--segbench-rounds=1",
        "--segbench-warmup=1",
        "--segbench-progress=on",
        f"--benchmark-json={run}",
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    lines = out.stdout.splitlines()
    for line in (
        "  s0001  reference  warm-up 1/1",
        "  s0001  reference  round 1/1  windows 1",
        "  s0001  candidate  warm-up 1/1",
        "  s0001  reference  paired 1/1  windows 1",
        "  s0001  candidate  round 1/1  windows 1",
    ):
        assert line in lines, out.stdout[-3000:]
    text = run.read_text()
    assert str(tmp_path) not in text  # no absolute path of the case or its truth
    saved = json.loads(text)
    assert saved["segbench"]["paths"] == {"mode": "relative", "cases_from": "data"}
    # the machine facts: the CPU's instruction sets (no profile runs on OpenVINO)
    assert saved["segbench"]["machine"] == {"cpu_flags": read_cpu_flags() or "unknown"}
    for bench in saved["benchmarks"]:
        info = bench["extra_info"]
        assert bench["params"] == {"segbench_case_id": "s0001"}
        assert info["ground_truth"]["file"] == "s0001/segmentations"
        assert info["ground_truth"]["labels"] == "match"
        assert info["dice_vs_ground_truth"] > 0.5
