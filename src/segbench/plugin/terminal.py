"""The table at the end of a session: one :class:`~segbench.results.record.CaseRecord` per case,
of this process and of pytest-xdist workers, then how it was timed and the suite gate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

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
    """The records in the suite's case order (unknown cases last, by id)."""
    order = {c: i for i, c in enumerate(case_ids)}
    return [records[c] for c in sorted(records, key=lambda c: (order.get(c, len(order)), c))]


def write_summary(
    terminalreporter: Any,
    rows: Sequence[CaseRecord],
    *,
    model: str,
    bench: BenchConfig,
    class_names: Mapping[str, str] | None,
    baseline: object | None,
    malloc: str,
    suite_gate: GateResult | None,
    injection: Injection,
) -> None:
    profiles = bench.reference.backend.value, bench.candidate.backend.value
    injected = f" - INJECTED: {injection.describe()}" if injection.active else ""
    terminalreporter.write_sep(
        "=",
        f"segbench: {model} model, {profiles[0]} (reference) vs {profiles[1]} (candidate)"
        + injected,
    )
    terminalreporter.write_line(summary_table(rows, *profiles, class_names=class_names))
    timing = bench.timing
    terminalreporter.write_line(
        timing_line(
            {
                "estimator": timing.estimator,
                "rounds": timing.rounds,
                "warmup_rounds": timing.warmup_rounds,
            },
            bench.source,
            timed=not benchmarks_disabled(terminalreporter.config),
        )
        + (f"; baseline {baseline}" if baseline else "")
        + f"; malloc {malloc}"
    )
    if not benchmarks_disabled(terminalreporter.config):
        terminalreporter.write_line(REFERENCE_LINE)
    if suite_gate is not None:
        verdict = "ok" if suite_gate.passed else "FAIL"
        terminalreporter.write_line(f"{verdict} suite_speedup: {suite_gate.message}")
    if injection.active:
        terminalreporter.write_line(
            f"INJECTED into the candidate: {injection.describe()} - {INJECTED_NOTE}"
        )
