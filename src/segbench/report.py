"""Rendering: the per-case table printed at the end of a session (like the study's table)."""

from __future__ import annotations

from collections.abc import Sequence

from segbench.runner import CaseSummary


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(rows: Sequence[CaseSummary], reference: str, candidate: str) -> str:
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
    body = []
    for r in rows:
        failed = [g.name for g in r.gates if not g.passed]
        status = "ERROR" if r.error else ("FAIL " + ",".join(failed) if failed else "ok")
        body.append(
            (
                r.case,
                "x".join(str(s) for s in r.shape),
                _fmt(r.reference_s, ".3f"),
                _fmt(r.candidate_s, ".3f"),
                _fmt(r.speedup, ".2f") + ("x" if r.speedup else ""),
                _fmt(r.candidate_gflops, ".0f"),
                _fmt(r.dice.mean if r.dice else None, ".5f"),
                r.worst_class or "-",
                status,
            )
        )
    timed = [r for r in rows if r.reference_s is not None and r.candidate_s is not None]
    ref_total = sum(r.reference_s or 0.0 for r in timed)
    cand_total = sum(r.candidate_s or 0.0 for r in timed)
    dices = [r.dice.mean for r in rows if r.dice]
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
