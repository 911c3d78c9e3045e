"""The speed-up gate study: how often the gate against a baseline raises a false alarm on
unchanged code, and how often it catches a candidate made 10 % and 30 % slower.

    python scripts/gate_study.py --runs 10 --out reports/gate_study --table docs/results/x.md

One unchanged main job (``pytest --benchmark-only``) is saved as the baseline, with 60 s of
pairs per case (``--segbench-budget=60``) as a push to main saves it in the benchmark workflow
(``--baseline-budget S`` changes that; 0 keeps the main job's 15 s); then ``--runs`` rounds
of three main jobs against it (``--conditions`` picks fewer), interleaved so that a change of
the machine's state hits every condition alike: unchanged,
``--segbench-inject=slowdown=0.1`` and ``slowdown=0.3``.
Each job's pytest-benchmark JSON is kept in ``--out``; a job whose file is already there is not
run again (an interrupted study resumes). Arguments after ``--`` go to every pytest run.

``busy_unchanged`` and ``busy_slow10`` run the same jobs beside a neighbour that this script
starts itself: one process keeping one core busy for 3 s, idle for 3 s, over and over
(``--neighbour ON,OFF`` changes the seconds), stopped when the job ends and, whatever happens,
after the job's longest time (it also stops when this script dies).

Per condition the Markdown table gives the runs the session failed (a false alarm for
unchanged code, a catch for a slowed candidate), the suite verdicts (regressed / unchanged /
inconclusive, see :mod:`segbench.scoring.stats`), the suite's speed-up / baseline's estimate
and interval width, the cases judged regressed on their own, the pairs per case and the wall
time per run. ``--summarise-only`` writes the table of the runs already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from dice_study import main_job  # scripts/ is on sys.path when a script runs

CONDITIONS = {"unchanged": [], "slow10": ["--segbench-inject=slowdown=0.1"]}
CONDITIONS["slow30"] = ["--segbench-inject=slowdown=0.3"]
CONDITIONS["busy_unchanged"] = []
CONDITIONS["busy_slow10"] = ["--segbench-inject=slowdown=0.1"]
BASELINE_BUDGET_S = 60.0  # the baseline's pairs per case: as the benchmark workflow saves it
LABELS = {
    "unchanged": "unchanged code (false alarm = session failed)",
    "slow10": "candidate 10 % slower (caught = session failed)",
    "slow30": "candidate 30 % slower (caught = session failed)",
    "busy_unchanged": "busy neighbour, unchanged code (false alarm = session failed)",
    "busy_slow10": "busy neighbour, candidate 10 % slower (caught = session failed)",
}
NEIGHBOUR_LIMIT_S = 1800.0  # a neighbour stops by itself after this, whatever happens
NEIGHBOUR = """
import os, sys, time
on, off, limit = (float(a) for a in sys.argv[1:4])
parent, end = os.getppid(), time.monotonic() + limit
while time.monotonic() < end and os.getppid() == parent:
    stop = time.monotonic() + on
    while time.monotonic() < stop:
        pass
    time.sleep(off)
"""


@contextmanager
def neighbour(on_s: float, off_s: float, limit_s: float = NEIGHBOUR_LIMIT_S) -> Iterator[None]:
    """A process beside the job: one core busy for ``on_s``, idle for ``off_s``, over and over;
    stopped on exit, and by itself after ``limit_s`` or when this process dies."""
    args = [sys.executable, "-c", NEIGHBOUR, str(on_s), str(off_s), str(limit_s)]
    proc = subprocess.Popen(args)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_job(path: Path, extra: list[str]) -> tuple[float, int]:
    """One main job writing ``path``; (wall seconds, exit code)."""
    start = time.perf_counter()
    proc = subprocess.run(main_job(path, extra), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    path.with_suffix(".log").write_text(proc.stdout[-20000:] + proc.stderr[-5000:])
    meta = path.with_suffix(".meta.json")
    meta.write_text(json.dumps({"wall_s": wall, "exit": proc.returncode, "args": extra}))
    return wall, proc.returncode


@dataclass
class Outcome:
    """What one condition's runs gave."""

    failed: int = 0
    runs: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    changes: list[float] = field(default_factory=list)
    widths: list[float] = field(default_factory=list)
    case_regressed: int = 0
    pairs: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    left_out: list[int] = field(default_factory=list)
    above: int = 0  # runs whose interval lies above 1 (a "better" no change made)


@dataclass(frozen=True)
class Judged:
    """One saved run of the study, recomputed from its pairs."""

    verdict: str
    change: float | None  # suite speed-up / the baseline's
    low: float | None  # its interval (the level the verdict reads)
    width: float | None  # the interval's half-width, a fraction
    regressed: int  # cases judged regressed on their own
    pairs: list[int]  # uncontended pairs per case
    left_out: int  # contended pairs left out, all cases


def judge(path: Path) -> Judged:
    """The suite verdict of a saved run under the gates it ran with, as the session judged it
    (:func:`segbench.scoring.gates.suite_verdict`)."""
    from segbench.results.decision import run_gates
    from segbench.results.runs import load_run
    from segbench.scoring.gates import suite_verdict
    from segbench.scoring.stats import Verdict

    run = load_run(path)
    gates = run_gates(run)
    left_out = sum(r.left_out for r in run.rows)
    rerun = sum(r.rerun for r in run.rows)
    cases = {
        r.case: (r.pairs, b)
        for r in run.rows
        if (b := r.baseline_pairs) is not None and r.speedup is not None
    }
    found = suite_verdict(cases, gates, left_out, rerun)
    change = found.change if found is not None else None
    verdict = found.verdict if found is not None else Verdict.BUSY if left_out else None
    return Judged(
        verdict.value if verdict is not None else Verdict.INCONCLUSIVE.value,
        change.value if change else None,
        change.low if change else None,
        change.half_width if change else None,
        sum(r.verdict == "regressed" for r in run.rows),
        [r.pairs.n for r in run.rows],
        left_out,
    )


def _row(label: str, o: Outcome) -> str:
    v = o.verdicts
    return (
        f"| {label} | {o.failed} of {o.runs} | {v['regressed']} / {v['unchanged']} / "
        f"{v['inconclusive']} / {v['inconclusive (machine busy)']} | "
        + (f"{min(o.changes):.3f}-{max(o.changes):.3f}" if o.changes else "-")
        + f" | {o.above} | "
        + (f"{statistics.median(o.widths):.1%}" if o.widths else "-")
        + f" | {o.case_regressed} | {min(o.pairs)}-{max(o.pairs)} | "
        f"{min(o.left_out)}-{max(o.left_out)} | "
        f"{min(o.walls):.0f} / {statistics.median(o.walls):.0f} / {max(o.walls):.0f} s |"
    )


def summarise(out: Path) -> str:
    outcomes = {name: Outcome() for name in CONDITIONS}
    for name, outcome in outcomes.items():
        for path in sorted(out.glob(f"{name}_[0-9]*.json")):
            if path.name.endswith(".meta.json"):
                continue
            meta = json.loads(path.with_suffix(".meta.json").read_text())
            found = judge(path)
            outcome.runs += 1
            outcome.failed += meta["exit"] != 0
            outcome.verdicts[found.verdict] += 1
            outcome.case_regressed += found.regressed
            outcome.pairs += found.pairs
            outcome.left_out.append(found.left_out)
            outcome.above += found.low is not None and found.low > 1.0
            outcome.walls.append(meta["wall_s"])
            if found.change is not None and found.width is not None:
                outcome.changes.append(found.change)
                outcome.widths.append(found.width)
    lines = []
    baseline = out / "baseline.json"
    if baseline.is_file():
        from segbench.results.runs import load_run

        counts = [r.pairs.n for r in load_run(baseline).rows]
        meta = json.loads(baseline.with_suffix(".meta.json").read_text())
        lines += [
            f"Baseline: one unchanged main job, {min(counts)}-{max(counts)} pairs per case, "
            f"{meta['wall_s']:.0f} s.",
            "",
        ]
    lines += [
        "| condition | runs failed | suite verdicts (regressed / unchanged / inconclusive / "
        "inconclusive (machine busy)) | suite speed-up vs baseline, min-max | runs with the "
        "interval above 1 | interval half-width, median | cases regressed | clean pairs per "
        "case, min-max | pairs left out per run, min-max | wall per run, min / median / max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_row(LABELS[name], o) for name, o in outcomes.items() if o.runs]
    return "\n".join(lines)


def _said(path: Path) -> str:
    try:
        found = judge(path)
    except Exception as exc:  # a study goes on past one unreadable run
        return f"unreadable ({exc})"
    shown = f" {found.change:.3f} +-{found.width:.1%}" if found.change and found.width else ""
    return f"suite {found.verdict}{shown}, {found.left_out} pairs left out"


def _seconds_pair(text: str) -> tuple[float, float]:
    on, _, off = text.partition(",")
    return float(on), float(off)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("reports/gate_study"))
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument(
        "--conditions",
        default="unchanged,slow10,slow30",
        help=f"which conditions to run, comma-separated, of {','.join(CONDITIONS)} "
        "(default: unchanged,slow10,slow30)",
    )
    parser.add_argument(
        "--baseline-budget",
        type=float,
        default=BASELINE_BUDGET_S,
        help="save the baseline with --segbench-budget=S, as a push to main saves it in the "
        f"benchmark workflow (default {BASELINE_BUDGET_S:g}; 0: the main job's own budget)",
    )
    parser.add_argument(
        "--neighbour",
        type=_seconds_pair,
        default=(3.0, 3.0),
        help="the busy conditions' neighbour: seconds busy, seconds idle (default 3,3)",
    )
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        parser.error(f"unknown condition(s) {', '.join(unknown)}; choose from {list(CONDITIONS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        baseline = args.out / "baseline.json"
        if not baseline.is_file():
            budget = [f"--segbench-budget={args.baseline_budget:g}"] if args.baseline_budget else []
            wall, code = run_job(baseline, [*extra, *budget])
            print(f"baseline: exit {code}, {wall:.0f} s", flush=True)
        for i in range(args.runs):
            for name in conditions:
                inject = CONDITIONS[name]
                path = args.out / f"{name}_{i:02d}.json"
                if path.is_file():
                    continue
                busy = neighbour(*args.neighbour) if name.startswith("busy") else nullcontext()
                with busy:
                    wall, code = run_job(path, [*extra, f"--segbench-baseline={baseline}", *inject])
                print(f"{name} {i + 1}/{args.runs}: exit {code}, {wall:.0f} s, " + _said(path))
    table = summarise(args.out)
    print(table)
    if args.table is not None:
        args.table.write_text(table + "\n")


if __name__ == "__main__":
    main()
