"""The table at the end of a session: one :class:`~segbench.results.record.CaseRecord` per case,
of this process and of pytest-xdist workers, then how it was timed and the suite gate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from segbench.results.decision import fastest_candidate
from segbench.results.escape import terminal
from segbench.results.mismatch import INJECTED_NOTE
from segbench.results.record import CaseRecord
from segbench.results.table import REFERENCE_LINE, summary_table, timing_line
from segbench.scoring.gates import GateResult
from segbench.settings.config import BenchConfig
from segbench.settings.injection import Injection


def benchmarks_disabled(config: pytest.Config) -> bool:
    """Whether pytest-benchmark times nothing (--benchmark-disable, or switched off by xdist)."""
    bench = getattr(config, "_benchmarksession", None)
    return bool(getattr(bench, "disabled", False))


def ordered(records: Mapping[str, CaseRecord], case_ids: Sequence[str]) -> list[CaseRecord]:
    """The records in the suite's case order (unknown cases last, by id), a case's candidates
    in the order they were recorded."""
    order = {c: i for i, c in enumerate(case_ids)}
    keys = list(records)
    rank = {k: i for i, k in enumerate(keys)}

    def sort_key(k: str) -> tuple[int, str, int]:
        case = records[k].case
        return order.get(case, len(order)), case, rank[k]

    return [records[k] for k in sorted(keys, key=sort_key)]


def threads_text(rows: Sequence[CaseRecord]) -> str:
    """``"; threads: reference 2, ort-cpu 2"``: each backend's thread count as recorded (empty
    when none recorded one)."""
    found: dict[str, int] = {}
    for r in rows:
        for role, res in r.roles.items():
            if res.threads is not None:
                name = r.candidate if role == "candidate" and r.candidate else role
                found.setdefault(name, res.threads)
    if not found:
        return ""
    return "; threads: " + ", ".join(f"{name} {n}" for name, n in found.items())


def write_summary(
    terminalreporter: Any,
    rows: Sequence[CaseRecord],
    *,
    model: str,
    bench: BenchConfig,
    class_names: Mapping[str, str] | None,
    baseline: object | None,
    malloc: str,
    suite_gates: Sequence[GateResult],
    injection: Injection,
) -> None:
    profiles = bench.reference.kind, bench.candidate.kind
    injected = f" - INJECTED: {injection.describe()}" if injection.active else ""
    named = list(bench.candidates)
    versus = (
        f"{len(named)} candidates ({', '.join(named)})" if named else f"{profiles[1]} (candidate)"
    )
    terminalreporter.write_sep(
        "=", terminal(f"segbench: {model} model, {profiles[0]} (reference) vs {versus}" + injected)
    )
    table_names = (profiles[0], "candidate") if named else profiles
    terminalreporter.write_line(summary_table(rows, *table_names, class_names=class_names))
    if named:
        terminalreporter.write_line(terminal(fastest_candidate(rows)))
    timing = bench.timing
    line = (
        timing_line(
            {
                "estimator": timing.estimator,
                "rounds": timing.rounds,
                "max_rounds": timing.max_rounds,
                "warmup_rounds": timing.warmup_rounds,
                "confidence": bench.gates.confidence,
            },
            bench.source,
            timed=not benchmarks_disabled(terminalreporter.config),
        )
        + (f"; baseline {baseline}" if baseline else "")
        + f"; malloc {malloc}"
        + threads_text(rows)
    )
    terminalreporter.write_line(terminal(line))
    if not benchmarks_disabled(terminalreporter.config):
        terminalreporter.write_line(REFERENCE_LINE)
    for suite_gate in suite_gates:
        status = "ok" if suite_gate.passed else "FAIL"
        terminalreporter.write_line(f"{status} suite_speedup: {terminal(suite_gate.message)}")
    if injection.active:
        terminalreporter.write_line(
            terminal(f"INJECTED into the candidate: {injection.describe()} - {INJECTED_NOTE}")
        )
