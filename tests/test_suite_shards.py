"""The suite sharded over two "machines" (subprocesses, pytest-split) and merged: the same
cases, Dice values and gate decision as one unsharded run; a shard of other settings is
refused; a case's two tests never land in different shards; Dice-only runs under xdist.

Three tiny phantoms (one 64^3 window each), one timed round: each pytest run takes seconds.
One case has ``speedup_min`` 1000 in the gate file, so the gate decision to reproduce is a
failure of that case (the other gates are Dice only, so a busy machine cannot flip them).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import run_pytest

from segbench.cli import main
from segbench.inputs.phantoms import GridSpec, PhantomSpec, default_cache_dir, ensure_phantom
from segbench.results.runs import load_run

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pytest_split") is None,
    reason="pytest-split is not installed (pip install -e '.[dev]')",
)

GRIDS = [("tiny3mm", "RAS", 7), ("tinyb3mm", "LPS", 8), ("tinyc3mm", "LAS", 9)]
CASES = [f"phantom_{name}_{ori.lower()}_s{seed:03d}.nii.gz" for name, ori, seed in GRIDS]
SLOW_CASE = CASES[1]  # speedup_min 1000: fails its speed-up gate in every run


def pytest_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The suite with one untimed-warm-up round per role."""
    return run_pytest(cwd, "--segbench-rounds=1", "--segbench-warmup=0", *args)


def listed_tests(stdout: str) -> list[tuple[str, str]]:
    """``(role, case)`` of every test in a -v / --collect-only -q listing (not the summary, nor
    a test's name written again before its verdict after progress lines)."""
    return re.findall(
        r"^\S*test_regression\.py::test_(reference|candidate)\[([^\]]+)\](?:$| [A-Z])",
        stdout,
        re.M,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder of three tiny phantoms and a gate file: Dice gates for all, and an
    impossible speed-up gate for SLOW_CASE."""
    root = tmp_path_factory.mktemp("shards")
    data = root / "data"
    data.mkdir()
    for name, ori, seed in GRIDS:
        image, _ = ensure_phantom(
            PhantomSpec(GridSpec(name, (60, 56, 48), (3.0, 3.0, 3.0), ori), seed),
            default_cache_dir(),
        )
        shutil.copy(image, data / image.name)
    (root / "bench.json").write_text(
        json.dumps({"gates": {"speedup_min": 0.0}, "cases": {SLOW_CASE: {"speedup_min": 1000.0}}})
    )
    return root


def suite_args(work: Path, *extra: str) -> list[str]:
    """The suite's options; no run is judged contended (``--segbench-busy-max=1``): the slow
    case must fail its speed-up gate, and a 0.15 s run with three clock ticks of someone else's
    time would make its only pair contended and its verdict ``inconclusive (machine busy)``."""
    return [
        f"--segbench-data={work / 'data'}",
        f"--segbench-config={work / 'bench.json'}",
        "--segbench-busy-max=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs(work: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """One unsharded run and the two shards of the same suite (each with --benchmark-json)."""
    out = {}
    start = time.perf_counter()
    out["full"] = pytest_run(
        work, *suite_args(work, "-v", "--benchmark-only", "--benchmark-json=full.json")
    )
    for group in (1, 2):
        out[f"shard-{group}"] = pytest_run(
            work,
            *suite_args(
                work,
                "-v",
                "--benchmark-only",
                "-m",
                "segbench",
                "--splits=2",
                f"--group={group}",
                f"--benchmark-json=shard-{group}.json",
            ),
        )
    print(f"unsharded run + 2 shards: {time.perf_counter() - start:.1f} s")
    return out


def _cli(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


@pytest.mark.slow
def test_two_shards_merge_to_the_unsharded_run(
    work: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    full = runs["full"]
    assert full.returncode == 1, full.stdout[-3000:] + full.stderr[-3000:]
    shard_tests = {g: listed_tests(runs[f"shard-{g}"].stdout) for g in (1, 2)}
    # pytest-split alone would cut the second case's pair; each case's two tests stay together
    for g, listed in shard_tests.items():
        cases = {case for _, case in listed}
        pairs = sorted((r, c) for c in cases for r in ("reference", "candidate"))
        assert sorted(listed) == pairs, runs[f"shard-{g}"].stdout[-3000:]
    assert sorted(c for g in shard_tests for _, c in shard_tests[g]) == sorted(CASES * 2)
    assert "collected 6 items / 2 deselected / 4 selected" in runs["shard-1"].stdout
    assert "collected 6 items / 4 deselected / 2 selected" in runs["shard-2"].stdout
    assert runs["shard-1"].returncode == 1 and runs["shard-2"].returncode == 0  # SLOW_CASE in 1

    merged = work / "merged.json"
    assert _cli("merge", work / "shard-1.json", work / "shard-2.json", "-o", merged) == 0
    whole, sharded = load_run(work / "full.json"), load_run(merged)
    assert [r.case for r in sharded.rows] == [r.case for r in whole.rows] == CASES
    for a, b in zip(whole.rows, sharded.rows, strict=True):
        assert a.mean_dice == b.mean_dice and a.class_dice == b.class_dice, a.case
        assert a.flipped_fraction == b.flipped_fraction and a.gates == b.gates, a.case
        assert a.machine and b.machine
    assert [r.case for r in sharded.rows if not r.passed] == [SLOW_CASE]
    assert _cli("gate", work / "full.json") == 1
    assert _cli("gate", merged) == 1
    for path in (work / "full.json", merged):  # report reads a merged run as any run
        assert _cli("report", path, "--no-plots", "--out", work / "rep" / path.stem) == 0


@pytest.mark.slow
def test_shard_of_other_settings_is_refused(
    work: Path,
    runs: dict[str, subprocess.CompletedProcess[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (work / "shard-1.json").is_file(), runs["shard-1"].stdout[-2000:]
    other = pytest_run(
        work,
        *suite_args(
            work,
            "--benchmark-only",
            "-m",
            "segbench",
            "--splits=2",
            "--group=2",
            "--segbench-rounds=2",
            "--benchmark-json=shard-2-rounds2.json",
        ),
    )
    assert other.returncode == 0, other.stdout[-3000:]
    capsys.readouterr()
    code = _cli(
        "merge", work / "shard-1.json", work / "shard-2-rounds2.json", "-o", work / "refused.json"
    )
    err = capsys.readouterr().err
    assert code == 2 and not (work / "refused.json").exists()
    assert "settings.config.timing.rounds: shard-1.json has 1, shard-2-rounds2.json has 2" in err
    assert "Fix:" in err


@pytest.mark.slow
def test_cases_stay_whole_whatever_the_split(work: Path) -> None:
    listed = []
    for group in (1, 2, 3):
        out = pytest_run(
            work, *suite_args(work, "--collect-only", "-q", "--splits=3", f"--group={group}")
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        tests = listed_tests(out.stdout)
        assert len(tests) == 2 and {c for _, c in tests} == {CASES[group - 1]}, out.stdout
        listed += tests
    assert sorted(listed) == sorted((r, c) for c in CASES for r in ("reference", "candidate"))
    # a selection by role is the user's: no candidate comes back to its reference
    out = pytest_run(
        work,
        *suite_args(
            work, "--collect-only", "-q", "-k", "test_reference", "--splits=2", "--group=1"
        ),
    )
    assert [r for r, _ in listed_tests(out.stdout)] == ["reference", "reference"], out.stdout


@pytest.mark.slow
def test_dice_only_under_xdist(
    work: Path, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    pytest.importorskip("xdist")
    out = pytest_run(work, *suite_args(work, "--benchmark-disable", "-n", "2"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "6 passed" in out.stdout
    # the controller prints the workers' rows: the same Dice as the timed run, no speed-up
    table = out.stdout.split("segbench: demo model")[1]
    assert "Dice only: benchmarks disabled" in table and "all ok" in table
    for row in load_run(work / "full.json").rows:
        line = next(x for x in table.splitlines() if x.startswith(row.case))
        assert f"{row.mean_dice:.5f}" in line and " - " in line, line
    usage = pytest_run(work, *suite_args(work, "--benchmark-only", "-n", "2"))
    assert usage.returncode == 4
    assert "Can't have both --benchmark-only and --benchmark-disable" in usage.stderr
