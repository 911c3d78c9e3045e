"""The gate decision over a whole saved (or merged) run: every case of the suite present with
both roles, every recorded gate passed, and the suite's speed-up against its baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from segbench.results.runs import Run
from segbench.scoring.gates import check_suite_speedup
from segbench.settings.config import Gates

MAX_LISTED = 6


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
    if missing:
        problems.append(
            f"{len(missing)} case(s) of the suite have no benchmark in {run.path.name}: "
            + ", ".join(missing[:MAX_LISTED])
            + (" ..." if len(missing) > MAX_LISTED else "")
            + " (the test errored before timing, or its shard was not merged)"
        )
    groups = run.segbench.get("missing_groups") if run.segbench else None
    if groups:
        text = f"pytest-split group(s) {', '.join(map(str, groups))} were not merged"
        (problems if missing else notes).append(
            text + ("" if missing else " (every case of the suite ran in another group)")
        )
    for row in run.rows:
        if row.missing_roles:
            problems.append(f"{row.case}: no {' and no '.join(row.missing_roles)} benchmark")
        elif not row.gates:
            problems.append(f"{row.case}: the candidate recorded no gate result")
        elif row.failed_gates:
            problems.append(f"{row.case}: failed the {', '.join(row.failed_gates)} gate")
    suite = check_suite_speedup(
        {
            r.case: (r.speedup, r.baseline_speedup)
            for r in run.rows
            if r.speedup is not None and r.baseline_speedup is not None
        },
        _suite_drop_max(run),
    )
    if suite is not None:
        (notes if suite.passed else problems).append(suite.message)
    return GateDecision(tuple(problems), tuple(notes))


def _suite_drop_max(run: Run) -> float:
    """``suite_speedup_drop_max`` of the gates the run was measured with (its ``segbench``
    block), else the default."""
    return run_gates(run).suite_speedup_drop_max


def run_gates(run: Run, case: str | None = None) -> Gates:
    """The gates the run was measured with (its ``segbench`` block; ``case``'s own gates when
    benchmarks.json set some for it), else the defaults."""
    config = (run.settings or {}).get("config")
    if not isinstance(config, Mapping):
        return Gates()
    saved = config.get("gates")
    cases = config.get("cases")
    if case is not None and isinstance(cases, Mapping) and isinstance(cases.get(case), Mapping):
        saved = cases[case]
    if not isinstance(saved, Mapping):
        return Gates()
    known = {f.name for f in fields(Gates)}
    values = {
        k: v
        for k, v in saved.items()
        if k in known and isinstance(v, int | float) and not isinstance(v, bool)
    }
    try:
        return replace(Gates(), **values)  # type: ignore[arg-type]
    except TypeError:
        return Gates()
