"""scripts/gate_study.py's busy condition: the neighbour it starts is bounded and stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def study(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import gate_study

    return gate_study


def _children() -> list[int]:
    import os

    found = subprocess.run(
        ["pgrep", "-P", str(os.getpid())], capture_output=True, text=True, check=False
    )
    return [int(p) for p in found.stdout.split()]


def test_the_neighbour_runs_during_the_job_and_is_stopped_after(study) -> None:  # type: ignore[no-untyped-def]
    before = set(_children())
    with study.neighbour(0.2, 0.2, limit_s=60):
        time.sleep(0.3)
        running = set(_children()) - before
        assert len(running) == 1
    assert not set(_children()) & running  # terminated and reaped


def test_the_neighbour_stops_by_itself_after_its_limit(study) -> None:  # type: ignore[no-untyped-def]
    args = [sys.executable, "-c", study.NEIGHBOUR, "0.05", "0.05", "0.5"]
    proc = subprocess.run(args, timeout=60, check=False)  # a neighbour that never ends: fails
    assert proc.returncode == 0


def test_busy_conditions_are_known(study) -> None:  # type: ignore[no-untyped-def]
    assert study.CONDITIONS["busy_slow10"] == ["--segbench-inject=slowdown=0.1"]
    assert study.CONDITIONS["busy_unchanged"] == []


def test_the_study_judges_a_run_as_the_session_did(study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The study's table reads the suite verdict through the plugin's own function: a run
    with contended runs run again (no pair left out) 5.5 % below its baseline is inconclusive
    (machine busy), as the session said, and regressed once the machine was quiet."""
    from saved_runs import make_run, write

    from segbench.results.contention import Contention

    def run(rerun: int) -> Path:
        data = make_run()
        for bench in data["benchmarks"]:
            info = bench["extra_info"]
            if info["role"] == "candidate":
                info["pair_speedups"] = [1.86, 1.93, 1.87, 1.92, 1.87]
                info["baseline_pair_speedups"] = [2.0, 2.01, 1.99, 2.0, 2.0]
                info.update(Contention(0.015, 5, 0, rerun=rerun).to_info())
        return write(tmp_path / f"rerun{rerun}.json", data)

    assert study.judge(run(0)).verdict == "regressed"
    busy = study.judge(run(2))
    assert busy.verdict == "inconclusive (machine busy)" and busy.change < 0.96
