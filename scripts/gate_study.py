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

Per condition the Markdown table gives the runs the session failed (a false alarm for
unchanged code, a catch for a slowed candidate), the suite verdicts (regressed / unchanged /
inconclusive, see :mod:`segbench.scoring.stats`), the suite's speed-up / baseline's estimate
and interval width, the cases judged regressed on their own, the pairs per case and the wall
time per run. ``--summarise-only`` writes the table of the runs already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dice_study import main_job  # scripts/ is on sys.path when a script runs

CONDITIONS = {"unchanged": [], "slow10": ["--segbench-inject=slowdown=0.1"]}
CONDITIONS["slow30"] = ["--segbench-inject=slowdown=0.3"]
BASELINE_BUDGET_S = 60.0  # the baseline's pairs per case: as the benchmark workflow saves it
LABELS = {
    "unchanged": "unchanged code (false alarm = session failed)",
    "slow10": "candidate 10 % slower (caught = session failed)",
    "slow30": "candidate 30 % slower (caught = session failed)",
}


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


def judge(path: Path) -> tuple[str, float | None, float | None, int, list[int]]:
    """(suite verdict, suite change, its interval's half-width, cases regressed, pairs per
    case) of a saved run, recomputed from its pairs under the gates it ran with."""
    from segbench.results.decision import run_gates
    from segbench.results.runs import load_run
    from segbench.scoring.gates import change_against, judge

    run = load_run(path)
    gates = run_gates(run)
    cases = [(r.pairs, b) for r in run.rows if (b := r.baseline_pairs) is not None]
    change = change_against(cases, gates)
    point = math.exp(sum(s.mean - b.mean for s, b in cases) / len(cases)) if cases else math.nan
    found = judge(change, point, gates.suite_speedup_drop_max)
    regressed = sum(r.verdict == "regressed" for r in run.rows)
    pairs = [r.pairs.n for r in run.rows]
    return (
        found.value,
        change.value if change else None,
        change.half_width if change else None,
        regressed,
        pairs,
    )


def summarise(out: Path) -> str:
    outcomes = {name: Outcome() for name in CONDITIONS}
    for name, outcome in outcomes.items():
        for path in sorted(out.glob(f"{name}_*.json")):
            if path.name.endswith(".meta.json"):
                continue
            meta = json.loads(path.with_suffix(".meta.json").read_text())
            found, change, width, regressed, pairs = judge(path)
            outcome.runs += 1
            outcome.failed += meta["exit"] != 0
            outcome.verdicts[found] += 1
            outcome.case_regressed += regressed
            outcome.pairs += pairs
            outcome.walls.append(meta["wall_s"])
            if change is not None and width is not None:
                outcome.changes.append(change)
                outcome.widths.append(width)
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
        "| condition | runs failed | suite verdicts (regressed / unchanged / inconclusive) "
        "| suite speed-up vs baseline, min-max | interval half-width, median | cases regressed "
        "| pairs per case, min-max | wall per run, min / median / max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, o in outcomes.items():
        if not o.runs:
            continue
        v = o.verdicts
        lines.append(
            f"| {LABELS[name]} | {o.failed} of {o.runs} | {v['regressed']} / {v['unchanged']} / "
            f"{v['inconclusive']} | "
            + (f"{min(o.changes):.3f}-{max(o.changes):.3f}" if o.changes else "-")
            + " | "
            + (f"{statistics.median(o.widths):.1%}" if o.widths else "-")
            + f" | {o.case_regressed} | {min(o.pairs)}-{max(o.pairs)} | "
            f"{min(o.walls):.0f} / {statistics.median(o.walls):.0f} / {max(o.walls):.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("reports/gate_study"))
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help=f"which conditions to run, comma-separated (default: {','.join(CONDITIONS)})",
    )
    parser.add_argument(
        "--baseline-budget",
        type=float,
        default=BASELINE_BUDGET_S,
        help="save the baseline with --segbench-budget=S, as a push to main saves it in the "
        f"benchmark workflow (default {BASELINE_BUDGET_S:g}; 0: the main job's own budget)",
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
                wall, code = run_job(path, [*extra, f"--segbench-baseline={baseline}", *inject])
                try:
                    found, change, width, _, _ = judge(path)
                except Exception as exc:
                    found, change, width = f"unreadable ({exc})", None, None
                print(
                    f"{name} {i + 1}/{args.runs}: exit {code}, {wall:.0f} s, suite {found}"
                    + (f" {change:.3f} +-{width:.1%}" if change and width else ""),
                    flush=True,
                )
    table = summarise(args.out)
    print(table)
    if args.table is not None:
        args.table.write_text(table + "\n")


if __name__ == "__main__":
    main()
