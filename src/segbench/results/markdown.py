"""Markdown rendering of saved runs: the per-case table of a published study, with its summary
rows, and the case-by-case comparison of two runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from segbench.results.compare import Comparison, summary_numbers
from segbench.results.record import STAGES, CaseRecord
from segbench.results.runs import Run


def _fmt(value: float | int | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _cell(text: object) -> str:
    """A table cell: pipes escaped, line breaks flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str) -> list[str]:
    """A pipe table; ``align`` has one letter per column, ``l`` or ``r``."""
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [header, rule, *rows]
    return ["| " + " | ".join(_cell(c) for c in line) + " |" for line in lines]


def _shape(row: CaseRecord) -> str:
    return "x".join(str(s) for s in row.shape) or "-"


def _worst(row: CaseRecord, class_names: Mapping[str, str] | None) -> str:
    worst = row.worst_class
    if worst is None:
        return "-"
    label, dice = worst
    name = (class_names or {}).get(label, f"label {label}")
    return f"{name} {dice:.5f}"


def _result(row: CaseRecord) -> str:
    if row.missing_roles:
        return "MISSING " + ", ".join(row.missing_roles)
    if not row.gates:
        return "not scored"
    failed = row.failed_gates
    return "FAIL " + ", ".join(failed) if failed else "ok"


def _profile(rows: Sequence[CaseRecord], role: str) -> str:
    seen: list[str] = []
    for r in rows:
        res = r.roles.get(role)
        if res is not None:
            text = f"{res.backend} ({res.provider})"
            if text not in seen:
                seen.append(text)
    return ", ".join(seen) or "-"


def render_report(
    rows: Sequence[CaseRecord],
    title: str,
    *,
    run: Run | None = None,
    class_names: Mapping[str, str] | None = None,
    images: Sequence[tuple[str, str]] = (),
) -> str:
    """The study table of one run: subject, shape, reference and candidate latency (s),
    speed-up, mean Dice, worst class and gate result per case, then summary rows (total, mean,
    median, min) and the number of failed gates; then the median stage times per role.

    ``class_names`` maps a label (``"3"``) to a name; ``images`` are ``(caption, relative path)``
    pairs linked at the end (the plots written beside the report)."""
    rows = list(rows)
    s = summary_numbers(rows)
    estimator = rows[0].estimator if rows else "min"
    lines = [f"# {title}", ""]
    facts = [
        f"- reference: {_profile(rows, 'reference')}; candidate: {_profile(rows, 'candidate')}",
        f"- model: {', '.join(sorted({r.model for r in rows})) or '-'}; latency = "
        f"{estimator} of the timed rounds, end to end per volume; "
        "speed-up = reference / candidate",
    ]
    if run is not None:
        when = ", ".join(
            t for t in (run.datetime, f"commit {run.commit}" if run.commit else None) if t
        )
        facts.insert(0, f"- run: `{run.path.name}`" + (f" ({when})" if when else ""))
        if run.machine:
            facts.append(f"- machine: {run.machine}")
    lines += [*facts, ""]

    with_truth = any(r.dice_vs_ground_truth for r in rows)
    header = [
        "subject",
        "shape",
        "reference s",
        "candidate s",
        "speed-up",
        "mean Dice",
        "worst class",
    ]
    align = "llrrrrl"
    if with_truth:
        header.append("Dice vs truth (ref / cand)")
        align += "l"
    machines = {r.machine for r in rows if r.machine}
    if len(machines) > 1:  # a merged run of shards on several machines
        header.append("machine")
        align += "l"
    header.append("gates")
    align += "l"
    body: list[list[object]] = []
    for r in rows:
        line: list[object] = [
            r.case,
            _shape(r),
            _fmt(r.reference_s, ".3f"),
            _fmt(r.candidate_s, ".3f"),
            _fmt(r.speedup, ".2f", "x"),
            _fmt(r.mean_dice, ".5f"),
            _worst(r, class_names),
        ]
        if with_truth:
            truth = r.dice_vs_ground_truth
            line.append(
                f"{_fmt(truth.get('reference'), '.4f')} / {_fmt(truth.get('candidate'), '.4f')}"
                if truth
                else "-"
            )
        if len(machines) > 1:
            line.append(r.machine or "-")
        line.append(_result(r))
        body.append(line)

    def summary(label: str, *cells: object, gates: object = "") -> list[object]:
        row: list[object] = [f"**{label}**", "", *cells]
        row += [""] * (len(header) - 1 - len(row))
        row.append(gates)
        return row

    body += [
        summary(
            f"total ({s['cases']} cases)",
            _fmt(s["reference_total_s"], ".3f"),
            _fmt(s["candidate_total_s"], ".3f"),
            _fmt(s["total_speedup"], ".2f", "x"),
        ),
        *(
            summary(
                stat,
                _fmt(s[f"{stat}_reference_s"], ".3f"),
                _fmt(s[f"{stat}_candidate_s"], ".3f"),
                _fmt(s[f"{stat}_speedup"], ".2f", "x"),
                _fmt(s[f"{stat}_dice"], ".5f"),
            )
            for stat in ("mean", "median")
        ),
        summary("min", "", "", _fmt(s["min_speedup"], ".2f", "x"), _fmt(s["min_dice"], ".5f")),
        summary(
            "failed gates",
            gates=f"{s['failed_gates']} of {s['gates']}"
            + (f" ({s['failed_cases']} cases not ok)" if s["failed_cases"] else ""),
        ),
    ]
    lines += _table(header, body, align)
    lines += [
        "",
        "Total speed-up = sum of reference latencies / sum of candidate latencies; mean and "
        "median are over the per-case speed-ups.",
    ]

    staged = [r for r in rows if any(res.stages_s for res in r.roles.values())]
    if staged:
        lines += ["", "## Stage times (median of the runs, s)", ""]
        stage_rows: list[list[object]] = []
        for r in staged:
            for role, res in r.roles.items():
                st = res.stages_s
                stage_rows.append(
                    [
                        r.case,
                        f"{role} ({res.backend})",
                        *(_fmt(st.get(k), ".3f") for k in STAGES),
                    ]
                )
        lines += _table(
            ["subject", "role", *STAGES],
            stage_rows,
            "llrrrr",
        )
    if images:
        lines += [""] + [f"![{caption}]({path})" for caption, path in images]
    return "\n".join(lines) + "\n"


def _change(old: float | None, new: float | None, spec: str, ratio: float | None) -> str:
    text = f"{_fmt(old, spec)} -> {_fmt(new, spec)}"
    return text + (f" (x{ratio:.2f})" if ratio is not None else "")


def render_comparison(comparison: Comparison, title: str = "segbench: run comparison") -> str:
    """What changed per case between two runs: both latencies (new / old ratio), the speed-up,
    the mean Dice and its delta, and every threshold crossed; then cases in one run only."""
    c = comparison
    lines = [
        f"# {title}",
        "",
        f"- old: `{c.old.path.name}`" + (f" (commit {c.old.commit})" if c.old.commit else ""),
        f"- new: `{c.new.path.name}`" + (f" (commit {c.new.commit})" if c.new.commit else ""),
        f"- thresholds: latency ratio new/old <= {c.max_slowdown:g} per role, mean Dice drop "
        f"<= {c.max_dice_drop:g}, no gate newly failing",
        "",
    ]
    body: list[list[object]] = []
    for ch in c.changes:
        delta = f" ({ch.dice_delta:+.5f})" if ch.dice_delta is not None else ""
        body.append(
            [
                ch.case,
                _change(
                    ch.old.reference_s, ch.new.reference_s, ".3f", ch.latency_ratio["reference"]
                ),
                _change(
                    ch.old.candidate_s, ch.new.candidate_s, ".3f", ch.latency_ratio["candidate"]
                ),
                f"{_fmt(ch.old_speedup, '.2f', 'x')} -> {_fmt(ch.new_speedup, '.2f', 'x')}",
                f"{_fmt(ch.old.mean_dice, '.5f')} -> {_fmt(ch.new.mean_dice, '.5f')}{delta}",
                "REGRESSED" if ch.regressed else "ok",
            ]
        )
    lines += _table(
        ["subject", "reference s", "candidate s", "speed-up", "mean Dice", "result"],
        body,
        "lrrrrl",
    )
    if c.regressions:
        lines += ["", "## Thresholds crossed", ""]
        for ch in c.regressions:
            lines += [f"- {_cell(ch.case)}: " + "; ".join(ch.exceeded)]
    if c.only_old or c.only_new:
        lines += ["", "## Cases in one run only", ""]
        lines += [f"- only in old: {_cell(case)}" for case in c.only_old]
        lines += [f"- only in new: {_cell(case)}" for case in c.only_new]
    verdict = (
        f"{len(c.regressions)} of {len(c.changes)} cases crossed a threshold."
        if c.regressed
        else f"No threshold crossed in {len(c.changes)} common cases."
    )
    lines += ["", verdict]
    return "\n".join(lines) + "\n"
