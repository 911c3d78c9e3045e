"""Rendering: the per-case table printed at the end of a session (like the study's table).

The same table is printed by ``segbench gate`` from a saved (or merged) run, so its rows are
plain :class:`TableRow` values made either from a session's :class:`~segbench.runner.CaseSummary`
or from a saved run's :class:`~segbench.runs.CaseRow`. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from segbench.runs import ROLES, CaseRow

if TYPE_CHECKING:
    from segbench.runner import CaseSummary

OK = "ok"


@dataclass(frozen=True)
class TableRow:
    """One line of the table. ``status`` is ``ok``, ``FAIL <gates>``, ``ERROR``, ``MISSING ...``
    or ``not scored``; only ``ok`` passes."""

    case: str
    shape: tuple[int, ...]
    reference_s: float | None
    candidate_s: float | None
    speedup: float | None
    mean_dice: float | None
    worst_class: str
    status: str
    candidate_gflops: float | None = None  # achieved in the candidate's sliding window

    @property
    def passed(self) -> bool:
        return self.status == OK

    @classmethod
    def from_summary(cls, summary: CaseSummary) -> TableRow:
        """A row of the running session."""
        failed = [g.name for g in summary.gates if not g.passed]
        if summary.error:
            status = "ERROR"
        else:
            status = "FAIL " + ",".join(failed) if failed else OK
        return cls(
            case=summary.case,
            shape=tuple(summary.shape),
            reference_s=summary.reference_s,
            candidate_s=summary.candidate_s,
            speedup=summary.speedup,
            mean_dice=summary.dice.mean if summary.dice else None,
            worst_class=summary.worst_class or "-",
            status=status,
            candidate_gflops=summary.candidate_gflops,
        )

    @classmethod
    def from_case_row(
        cls, row: CaseRow, class_names: Mapping[str, str] | None = None
    ) -> TableRow:
        """A row of a saved run: ``MISSING <role>`` when a role has no benchmark (its test
        errored before timing, or it ran in another shard), ``not scored`` when the candidate
        recorded no gate result."""
        missing = [role for role in ROLES if role not in row.roles]
        if missing:
            status = "MISSING " + ",".join(missing)
        elif not row.gates:
            status = "not scored"
        else:
            status = "FAIL " + ",".join(row.failed_gates) if row.failed_gates else OK
        worst = row.worst_class
        if worst is None:
            worst_text = "-"
        else:
            name = (class_names or {}).get(worst[0], f"label {worst[0]}")
            worst_text = f"{name} {worst[1]:.4f}"
        return cls(
            case=row.case,
            shape=row.shape,
            reference_s=row.reference_s,
            candidate_s=row.candidate_s,
            speedup=row.speedup,
            mean_dice=row.mean_dice,
            worst_class=worst_text,
            status=status,
            candidate_gflops=row.candidate_gflops,
        )

    @classmethod
    def missing(cls, case: str, why: str = "MISSING") -> TableRow:
        """A case that should have run but has no benchmark at all."""
        return cls(case, (), None, None, None, None, "-", why)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (sent from pytest-xdist workers to the controller)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableRow:
        return cls(**{**data, "shape": tuple(data.get("shape") or ())})


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(rows: Sequence[TableRow], reference: str, candidate: str) -> str:
    """A fixed-width table: subject, shape, reference s, candidate s, speed-up, the candidate's
    achieved GFLOP/s in the sliding window (PlainConvUNet models), mean Dice, worst class,
    result; then totals (sum of latencies, their ratio, mean and min Dice)."""
    header = (
        "subject",
        "shape",
        f"{reference} s",
        f"{candidate} s",
        "speed-up",
        f"{candidate} GFLOP/s",
        "mean Dice",
        "worst class",
        "result",
    )
    body = [
        (
            r.case,
            "x".join(str(s) for s in r.shape),
            _fmt(r.reference_s, ".3f"),
            _fmt(r.candidate_s, ".3f"),
            _fmt(r.speedup, ".2f") + ("x" if r.speedup else ""),
            _fmt(r.candidate_gflops, ".0f"),
            _fmt(r.mean_dice, ".5f"),
            r.worst_class or "-",
            r.status,
        )
        for r in rows
    ]
    timed = [r for r in rows if r.reference_s is not None and r.candidate_s is not None]
    ref_total = sum(r.reference_s or 0.0 for r in timed)
    cand_total = sum(r.candidate_s or 0.0 for r in timed)
    dices = [r.mean_dice for r in rows if r.mean_dice is not None]
    n_failed = sum(not r.passed for r in rows)
    totals = (
        f"total ({len(rows)} cases)",
        "",
        _fmt(ref_total if timed else None, ".3f"),
        _fmt(cand_total if timed else None, ".3f"),
        (f"{ref_total / cand_total:.2f}x" if timed and cand_total > 0 else "-"),
        "",
        _fmt(sum(dices) / len(dices) if dices else None, ".5f"),
        f"min Dice {min(dices):.5f}" if dices else "-",
        f"{n_failed} failed" if n_failed else "all ok",
    )
    table = [header, *body, totals]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    rule = "-" * len(lines[0])
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def timing_line(timing: Mapping[str, Any], source: str, timed: bool = True) -> str:
    """The line under the table: how latencies were measured and where the gates came from."""
    if not timed:
        return (
            "Dice only: benchmarks disabled (--benchmark-disable, or pytest-xdist), so no "
            f"latency and no speed-up gate; gates from {source}"
        )
    estimator = timing.get("estimator", "min")
    rounds = (
        f"{timing['rounds']} rounds after {timing.get('warmup_rounds', 0)} warm-ups"
        if "rounds" in timing
        else "the timed rounds"
    )
    return (
        f"speed-up = reference / candidate latency, {estimator} of {rounds} (the candidate's "
        f"interleaved with reference runs); gates from {source}"
    )
