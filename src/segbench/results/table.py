"""The per-case table printed at the end of a session and by ``segbench gate``: one line per
:class:`~segbench.results.record.CaseRecord`, then totals. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segbench.results.escape import terminal
from segbench.results.record import OK, CaseRecord
from segbench.scoring.stats import CONFIDENCE


def missing(case: str) -> CaseRecord:
    """A case of the suite with no benchmark at all (shown ``MISSING``)."""
    return CaseRecord(case, "-", (), (), None, "min", {})


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(
    rows: Sequence[CaseRecord],
    reference: str,
    candidate: str,
    class_names: Mapping[str, str] | None = None,
) -> str:
    """A fixed-width table: subject, shape, the candidate's precision (when a row ran in another
    than fp32), reference s (the runs paired with the candidate's
    rounds), candidate s, speed-up (the geometric mean of the pairs' ratios with its interval,
    ``1.37x [1.33, 1.41]``), with a baseline the speed-up / the baseline's and the verdict,
    the candidate's achieved GFLOP/s in the sliding window (PlainConvUNet models), mean Dice,
    worst class, result; then totals (sum of latencies, their ratio, mean and min Dice). Every
    cell is escaped for the terminal (:func:`~segbench.results.escape.terminal`)."""
    with_baseline = any(r.verdict is not None for r in rows)
    # the precision the candidate ran in, once a row ran in another than fp32
    with_precision = any(r.precision not in (None, "fp32") for r in rows)
    with_cpu = any(r.contention is not None for r in rows)  # runs saved before: none
    header = (
        "subject",
        "shape",
        *(("precision",) if with_precision else ()),
        f"{reference} s (paired, gate)",
        f"{candidate} s",
        "speed-up [interval]",
        *(("vs baseline",) if with_baseline else ()),
        *((f"CPU {reference}/{candidate}",) if with_cpu else ()),
        f"{candidate} GFLOP/s",
        "mean Dice",
        "worst class",
        "result",
    )
    body = [
        (
            r.label,
            "x".join(str(s) for s in r.shape),
            *((r.precision or "-",) if with_precision else ()),
            _fmt(r.reference_s, ".3f"),
            _fmt(r.candidate_s, ".3f") + cold_mark(r),
            speedup_text(r),
            *((baseline_text(r),) if with_baseline else ()),
            *((cpu_text(r),) if with_cpu else ()),
            _fmt(r.candidate_gflops, ".0f"),
            _fmt(r.mean_dice, ".5f"),
            r.worst_class_text(class_names),
            r.status,
        )
        for r in rows
    ]
    timed = [r for r in rows if r.reference_s is not None and r.candidate_s is not None]
    ref_total = sum(r.reference_s or 0.0 for r in timed)
    cand_total = sum(r.candidate_s or 0.0 for r in timed)
    dices = [r.mean_dice for r in rows if r.mean_dice is not None]
    n_failed = sum(r.status != OK for r in rows)
    totals = (
        f"total ({len(rows)} cases)"
        if all(r.candidate is None for r in rows)
        else f"total ({len({r.case for r in rows})} cases, {len(rows)} rows)",
        "",
        *(("",) if with_precision else ()),
        _fmt(ref_total if timed else None, ".3f"),
        _fmt(cand_total if timed else None, ".3f"),
        (f"{ref_total / cand_total:.2f}x" if timed and cand_total > 0 else "-"),
        *(("",) if with_baseline else ()),
        *((_busy_total(rows),) if with_cpu else ()),
        "",
        _fmt(sum(dices) / len(dices) if dices else None, ".5f"),
        f"min Dice {min(dices):.5f}" if dices else "-",
        f"{n_failed} failed" if n_failed else "all ok",
    )
    table = [[terminal(c) for c in row] for row in (header, *body, totals)]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    rule = "-" * len(lines[0])
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def cpu_text(row: CaseRecord) -> str:
    """``93/98%``: each side's median CPU share of its threads in the pairs; ``, 3/11 busy``
    when contended pairs were left out."""
    found = row.contention
    if found is None:
        return "-"
    busy = f", {found.left_out}/{found.pairs} busy" if found.left_out else ""
    return found.shares_text() + busy


def _busy_total(rows: Sequence[CaseRecord]) -> str:
    left = sum(r.left_out for r in rows)
    pairs = sum(r.contention.pairs for r in rows if r.contention is not None)
    return f"{left}/{pairs} pairs busy" if left else ""


def cold_mark(row: CaseRecord) -> str:
    """`` (cold)`` after the seconds of a candidate whose runs each start a process (a
    command: process start and model load are timed), else nothing."""
    role = row.roles.get("candidate")
    return " (cold)" if role is not None and role.timing == "cold" else ""


def speedup_text(row: CaseRecord) -> str:
    """``1.37x [1.33, 1.41]`` (``1.37x`` without an interval, ``-`` without a speed-up)."""
    interval = row.speedup_interval(row.confidence)
    if interval is not None:
        return interval.text()
    if row.speedup is None:
        return "- (machine busy)" if row.left_out else "-"
    return f"{row.speedup:.2f}x"


def baseline_text(row: CaseRecord) -> str:
    """``0.96 unchanged``: speed-up / the baseline's, and the verdict (``-`` without one)."""
    base = row.baseline_pairs
    if row.verdict is None or row.speedup is None or base is None or not base.n:
        return "-"
    return f"{row.speedup / base.speedup:.2f} {row.verdict}"


def timing_line(timing: Mapping[str, Any], source: str, timed: bool = True) -> str:
    """The line under the table: how latencies were measured and where the gates came from."""
    if not timed:
        return (
            "Dice only: benchmarks disabled (--benchmark-disable, or pytest-xdist), so no "
            f"latency and no speed-up gate; gates from {source}"
        )
    estimator = timing.get("estimator", "min")
    pairs = (
        f"{timing['rounds']} to {timing.get('max_rounds', timing['rounds'])} pairs per case "
        f"after {timing.get('warmup_rounds', 0)} warm-up(s)"
        if "rounds" in timing
        else "the timed pairs"
    )
    return (
        "speed-up = geometric mean of reference / candidate over the interleaved pairs "
        f"(reference run, candidate round), {pairs}, with its "
        f"{timing.get('confidence', CONFIDENCE):.0%} interval; seconds: {estimator} of the "
        f"rounds; gates from {source}"
    )


REFERENCE_LINE = (
    "reference s (paired, gate): the reference runs interleaved with the candidate's rounds; "
    "pytest-benchmark's reference[...] row: the reference test's own rounds, measured apart "
    "(reference s (own rounds))"
)
