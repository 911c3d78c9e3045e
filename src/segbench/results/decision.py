"""The gate decision over a whole saved (or merged) run: every case of the suite present with
both roles, every recorded gate passed, and the suite's speed-up against its baseline."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from segbench.results.record import CaseRecord
from segbench.results.runs import Run, capped
from segbench.scoring.gates import GateResult, check_suite_speedup
from segbench.scoring.stats import PairSample
from segbench.settings.config import Gates


@dataclass(frozen=True)
class GateDecision:
    """The verdict on a whole (merged) run: ``problems`` fail it, ``notes`` do not."""

    problems: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def gate_decision(run: Run) -> GateDecision:
    """Fail when a case of the suite has no benchmark, a case lacks its reference or its
    candidate, a candidate recorded no gate result, or a gate failed. A pytest-split group that
    was not merged fails through its missing cases; when every case ran elsewhere (more shards
    than cases) it is a note."""
    problems: list[str] = []
    notes: list[str] = []
    rows = run.by_case()
    missing = [c for c in run.expected_cases if c not in rows]
    keys = run.by_key()
    for case in run.expected_cases:
        if case in rows:
            gone = [n for n in run.expected_candidates if (case, n) not in keys]
            if gone:
                problems.append(f"{case}: no benchmark of candidate(s) {', '.join(gone)}")
    if missing:
        problems.append(
            f"{len(missing)} case(s) of the suite have no benchmark in {run.path.name}: "
            + capped(missing, ", ")
            + " (the test errored before timing, or its shard was not merged)"
        )
    groups = run.segbench.missing_groups
    if groups:
        text = f"pytest-split group(s) {', '.join(map(str, groups))} were not merged"
        (problems if missing else notes).append(
            text + ("" if missing else " (every case of the suite ran in another group)")
        )
    for row in run.rows:
        if row.missing_roles:
            problems.append(f"{row.label}: no {' and no '.join(row.missing_roles)} benchmark")
        elif not row.gates:
            problems.append(f"{row.label}: the candidate recorded no gate result")
        elif row.failed_gates:
            problems.append(f"{row.label}: failed the {', '.join(row.failed_gates)} gate")
    for suite in suite_gates(run.rows, run_gates(run)):
        (notes if suite.passed else problems).append(suite.message)
    return GateDecision(tuple(problems), tuple(notes))


def suite_gates(rows: Iterable[CaseRecord], gates: Gates) -> list[GateResult]:
    """The suite-speed-up gate (:func:`check_suite_speedup`) of each candidate over its cases
    with a baseline; a named candidate's message starts with its name."""
    by_candidate: dict[str | None, dict[str, tuple[PairSample, PairSample]]] = {}
    left_out: dict[str | None, int] = {}
    rerun: dict[str | None, int] = {}
    for r in rows:
        base = r.baseline_pairs
        if base is None:
            continue
        cases = by_candidate.setdefault(r.candidate, {})
        left_out[r.candidate] = left_out.get(r.candidate, 0) + r.left_out
        rerun[r.candidate] = rerun.get(r.candidate, 0) + r.rerun
        if r.speedup is not None:
            cases[r.case] = (r.pairs, base)
    out = []
    for name, cases in by_candidate.items():
        gate = check_suite_speedup(cases, gates, left_out[name], rerun[name])
        if gate is not None:
            out.append(gate if name is None else replace(gate, message=f"{name}: {gate.message}"))
    return out


def fastest_candidate(rows: Iterable[CaseRecord]) -> str:
    """The summary line of a session with named candidates: which is fastest at passing Dice,
    by the geometric mean of its speed-ups over the cases, among the candidates whose every
    case passed the Dice gate."""
    by_candidate: dict[str, list[CaseRecord]] = {}
    for r in rows:
        if r.candidate is not None:
            by_candidate.setdefault(r.candidate, []).append(r)
    means: dict[str, float] = {}
    failed: list[str] = []
    for name, cand_rows in by_candidate.items():
        speedups = [r.speedup for r in cand_rows]
        if not all(r.gates.get("dice") for r in cand_rows):
            failed.append(name)
        elif all(s is not None and 0 < s < math.inf for s in speedups):
            means[name] = PairSample.from_ratios([s for s in speedups if s is not None]).speedup
    dice_note = f" (failed Dice: {', '.join(failed)})" if failed else ""
    if not means:
        return f"fastest candidate at passing Dice: none timed with every case passing{dice_note}"
    ranked = sorted(means, key=lambda n: -means[n])
    return (
        f"fastest candidate at passing Dice: {ranked[0]} "
        f"(geometric-mean speed-up over the cases: "
        + ", ".join(f"{n} {means[n]:.2f}x" for n in ranked)
        + f"){dice_note}"
    )


def run_gates(run: Run, case: str | None = None) -> Gates:
    """The gates the run was measured with (its ``segbench`` block; ``case``'s own gates when
    benchmarks.json set some for it), else the defaults."""
    saved = run.segbench.gate_values(case)
    if saved is None:
        return Gates()
    defaults = Gates()
    values = {
        f.name: v
        for f in fields(Gates)
        if f.name in saved and _same_kind(v := saved[f.name], getattr(defaults, f.name))
    }
    try:
        return replace(Gates(), **values)
    except TypeError:
        return Gates()


def _same_kind(value: object, default: object) -> bool:
    """Whether a saved gate value can stand for ``default``: a boolean for a boolean gate
    (``inconclusive_fails``), a finite number (not a boolean) for a numeric one."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return abs(value) < 2**53  # a larger one would overflow the float arithmetic
    return math.isfinite(value)
