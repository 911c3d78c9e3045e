"""Markdown rendering of saved runs: the per-case table of a published study, with its summary
rows, and the case-by-case comparison of two runs."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence

from segbench.results.agreement_report import agreement_section
from segbench.results.compare import CaseChange, Comparison, summary_numbers
from segbench.results.decision import fastest_candidate, run_gates
from segbench.results.escape import markdown, markdown_code
from segbench.results.mismatch import describe, injected_banner
from segbench.results.record import STAGES, CaseRecord
from segbench.results.runs import Run
from segbench.results.table import cpu_text, speedup_text
from segbench.settings.config import Gates


def _fmt(value: float | int | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _cell(text: object) -> str:
    """A table cell: pipes escaped (unless :func:`markdown` escaped them), line breaks
    flattened."""
    return _PIPE.sub("\\|", str(text)).replace("\n", " ").replace("\r", " ")


_PIPE = re.compile(r"(?<!\\)\|")


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
    return f"{markdown(name)} {dice:.5f}"


def _result(row: CaseRecord) -> str:
    if row.missing_roles:
        return "MISSING " + ", ".join(row.missing_roles)
    if not row.gates:
        return "not scored"
    failed = row.failed_gates
    return "FAIL " + markdown(", ".join(failed)) if failed else "ok"


def _profile(rows: Sequence[CaseRecord], role: str) -> str:
    seen: list[str] = []
    for r in rows:
        res = r.roles.get(role)
        if res is not None:
            text = f"{res.backend} ({res.provider})"
            if res.precision not in (None, "fp32"):
                text = f"{res.backend} ({res.provider}, {res.precision})"
            text = markdown(text)
            if text not in seen:
                seen.append(text)
    return ", ".join(seen) or "-"


REF_GATE = "reference s (paired, gate)"
REF_OWN = "reference s (own rounds)"
WORST_LISTED = 12


def reference_figures_note(estimator: str) -> str:
    """What the two reference latencies are (the report and the comparison say it once)."""
    return (
        f"`{REF_GATE}`: the {estimator} of the reference runs interleaved with the candidate's "
        "timed rounds, the figure the speed-up gate uses (speed-up = it / candidate s); "
        f"`{REF_OWN}`: the {estimator} of the reference test's own timed rounds "
        "(pytest-benchmark's stats of `reference[...]`), measured before the candidate's"
    )


def render_report(
    rows: Sequence[CaseRecord],
    title: str,
    *,
    run: Run | None = None,
    class_names: Mapping[str, str] | None = None,
    images: Sequence[tuple[str, str]] = (),
) -> str:
    """The study table of one run: subject, shape, the reference latency of the speed-up gate
    (paired with the candidate's rounds), candidate latency (s), speed-up, the reference test's
    own latency, mean Dice, worst class and gate result per case, then summary rows (total,
    mean, median, min) and the number of failed gates; then the worst classes, and the median
    stage times per role beside the latency the table shows for it.

    An injected run (``--segbench-inject``) says so in its title and first paragraph.
    ``class_names`` maps a label (``"3"``) to a name; ``images`` are ``(caption, relative path)``
    pairs linked at the end (the plots written beside the report)."""
    rows = list(rows)
    estimator = markdown(rows[0].estimator) if rows else "min"
    injection = run.injection if run is not None else _injection(rows)
    lines = _report_title(title, injection)
    lines += [*_report_facts(rows, run, estimator), ""]
    lines += _case_table(rows, class_names)
    lines += [
        "",
        "Total speed-up = sum of reference latencies (paired, gate) / sum of candidate "
        "latencies; mean and median are over the per-case speed-ups.",
    ]
    lines += worst_classes(rows, class_names, run)
    lines += agreement_section(rows, class_names, run_gates(run) if run else Gates())
    lines += _stage_table(rows, estimator)
    if images:
        lines += [""] + [f"![{caption}]({path})" for caption, path in images]
    return "\n".join(lines) + "\n"


def _report_title(title: str, injection: str) -> list[str]:
    """The report's heading, and the injection banner of an injected run."""
    lines = [
        f"# {markdown(title)}"
        + (f" (INJECTED: {markdown(injection)})" if injection != "none" else ""),
        "",
    ]
    if injection != "none":
        lines += [f"**{markdown(injected_banner(injection))}**", ""]
    return lines


def _report_facts(rows: Sequence[CaseRecord], run: Run | None, estimator: str) -> list[str]:
    """The bullet list under the title: the run, both roles' profiles, the model, what the
    latencies are, the fastest candidate, then what the saved run knows of its machine."""
    facts = [
        f"- reference: {_profile(rows, 'reference')}; candidate: {_profile(rows, 'candidate')}",
        f"- model: {markdown(', '.join(sorted({r.model for r in rows}))) or '-'}; latency = "
        f"{estimator} of the timed rounds, end to end per volume",
        f"- {reference_figures_note(estimator)}",
    ]
    if any(r.candidate is not None for r in rows):
        facts.append(f"- {markdown(fastest_candidate(rows))}")
    if run is None:
        return facts
    when = ", ".join(t for t in (run.datetime, f"commit {run.commit}" if run.commit else None) if t)
    run_line = f"- run: {markdown_code(run.path.name)}" + (f" ({markdown(when)})" if when else "")
    return [run_line, *facts, *_machine_facts(run, estimator)]


def _machine_facts(run: Run, estimator: str) -> list[str]:
    """Bullets of the saved run's machine, CPU instruction sets, OpenVINO precision and
    timing settings (each only when the run has it)."""
    facts: list[str] = []
    if run.machine:
        facts.append(f"- machine: {markdown(run.machine)}")
    if run.cpu_flags:
        facts.append(f"- CPU instruction sets: {markdown(', '.join(run.cpu_flags))}")
    if run.openvino_precisions:
        facts.append(
            "- OpenVINO's default inference precision: "
            + markdown(", ".join(run.openvino_precisions))
        )
    timing = ((run.settings or {}).get("config") or {}).get("timing")
    if isinstance(timing, Mapping) and "rounds" in timing:
        facts.append(
            markdown(
                f"- timing: {timing['rounds']} rounds after "
                f"{timing.get('warmup_rounds', 0)} warm-ups, "
                f"{timing.get('estimator', estimator)}"
            )
        )
    return facts


def _case_columns(rows: Sequence[CaseRecord]) -> list[tuple[str, str, str]]:
    """The study table's columns ``(key, header, alignment)``: precision, the reference's own
    rounds, Dice against the ground truth and the machine only where a case has them."""
    own = any(r.reference_own_s is not None for r in rows)
    with_truth = any(r.dice_vs_ground_truth for r in rows)
    machines = {r.machine for r in rows if r.machine}
    with_precision = any(r.precision not in (None, "fp32") for r in rows)
    with_cpu = any(r.contention is not None for r in rows)
    return [
        ("case", "subject", "l"),
        ("shape", "shape", "l"),
        *([("precision", "precision", "l")] if with_precision else []),
        ("ref", REF_GATE, "r"),
        ("cand", "candidate s", "r"),
        ("speedup", "speed-up", "r"),
        *([("own", REF_OWN, "r")] if own else []),
        *([("cpu", "CPU share ref/cand, pairs busy", "r")] if with_cpu else []),
        ("dice", "mean Dice", "r"),
        ("worst", "worst class", "l"),
        *([("truth", "Dice vs truth (ref / cand)", "l")] if with_truth else []),
        *([("machine", "machine", "l")] if len(machines) > 1 else []),
        ("gates", "gates", "l"),
    ]


def _case_cells(r: CaseRecord, class_names: Mapping[str, str] | None) -> dict[str, object]:
    """One case's row of the study table, by column key."""
    truth = r.dice_vs_ground_truth
    return {
        "case": markdown(r.label),
        "shape": _shape(r),
        "precision": markdown(r.precision or "-"),
        "ref": _fmt(r.reference_s, ".3f"),
        "cand": _fmt(r.candidate_s, ".3f"),
        "speedup": speedup_text(r),
        "own": _fmt(r.reference_own_s, ".3f"),
        "cpu": cpu_text(r),
        "dice": _fmt(r.mean_dice, ".5f"),
        "worst": _worst(r, class_names),
        "truth": f"{_fmt(truth.get('reference'), '.4f')} / {_fmt(truth.get('candidate'), '.4f')}"
        if truth
        else "-",
        "machine": markdown(r.machine or "-"),
        "gates": _result(r),
    }


def _summary_cells(rows: Sequence[CaseRecord]) -> list[Mapping[str, object]]:
    """The study table's summary rows (total, mean, median, min, failed gates), by column key."""
    s = summary_numbers(rows)
    owns = [r.reference_own_s for r in rows if r.reference_own_s is not None]
    return [
        {
            "case": f"**total ({s['cases']} cases)**",
            "ref": _fmt(s["reference_total_s"], ".3f"),
            "cand": _fmt(s["candidate_total_s"], ".3f"),
            "speedup": _fmt(s["total_speedup"], ".2f", "x"),
            "own": _fmt(sum(owns) if owns else None, ".3f"),
        },
        *(
            {
                "case": f"**{stat}**",
                "ref": _fmt(s[f"{stat}_reference_s"], ".3f"),
                "cand": _fmt(s[f"{stat}_candidate_s"], ".3f"),
                "speedup": _fmt(s[f"{stat}_speedup"], ".2f", "x"),
                "own": _fmt(
                    (statistics.fmean if stat == "mean" else statistics.median)(owns)
                    if owns
                    else None,
                    ".3f",
                ),
                "dice": _fmt(s[f"{stat}_dice"], ".5f"),
            }
            for stat in ("mean", "median")
        ),
        {
            "case": "**min**",
            "speedup": _fmt(s["min_speedup"], ".2f", "x"),
            "dice": _fmt(s["min_dice"], ".5f"),
        },
        {
            "case": "**failed gates**",
            "gates": f"{s['failed_gates']} of {s['gates']}"
            + (f" ({s['failed_cases']} cases not ok)" if s["failed_cases"] else ""),
        },
    ]


def _case_table(rows: Sequence[CaseRecord], class_names: Mapping[str, str] | None) -> list[str]:
    """The study table: one row per case, then the summary rows."""
    columns = _case_columns(rows)
    body: list[Mapping[str, object]] = [_case_cells(r, class_names) for r in rows]
    body += _summary_cells(rows)
    return _table(
        [h for _, h, _ in columns],
        [[line.get(k, "") for k, _, _ in columns] for line in body],
        "".join(a for _, _, a in columns),
    )


def _injection(rows: Sequence[CaseRecord]) -> str:
    found = [i for i in dict.fromkeys(r.injected for r in rows) if i and i != "none"]
    return ", ".join(found) or "none"


def worst_classes(
    rows: Sequence[CaseRecord],
    class_names: Mapping[str, str] | None = None,
    run: Run | None = None,
    limit: int = WORST_LISTED,
) -> list[str]:
    """Markdown lines: the classes with the lowest Dice over all cases (by name), each with
    the case, how many cases fall below the gate thresholds, and the thresholds."""
    names = class_names or {}
    worst: dict[str, tuple[float, str]] = {}
    below: dict[str, int] = {}
    small: dict[str, int] = {}  # below, and below the lowest Dice of the gated classes
    thresholds = {r.case: run_gates(run, r.case) if run else Gates() for r in rows}
    for r in rows:
        for label, dice in r.class_dice.items():
            if label not in worst or dice < worst[label][0]:
                worst[label] = (dice, r.case)
            if dice < thresholds[r.case].class_dice_min:
                below[label] = below.get(label, 0) + 1
                if r.gated_class_dice_min is not None and dice < r.gated_class_dice_min:
                    small[label] = small.get(label, 0) + 1
    if not worst:
        return []
    gates = run_gates(run) if run else Gates()
    ranked = sorted(worst, key=lambda k: (worst[k][0], k))[:limit]
    n_below = sum(1 for k in worst if below.get(k))
    lines = [
        "",
        f"## Worst classes ({len(ranked)} of {len(worst)}, lowest Dice first)",
        "",
        f"Per-class Dice gate: class_dice_min {gates.class_dice_min:g}, applied to classes "
        f"with at least {gates.min_class_voxels} voxels in the reference mask; mean Dice gate: "
        f"dice_min {gates.dice_min:g}. {n_below} of {len(worst)} classes are below "
        "class_dice_min in at least one case.",
        "",
    ]
    table = [
        [
            markdown(names.get(label, f"label {label}")),
            markdown(label),
            f"{worst[label][0]:.5f}",
            markdown(worst[label][1]),
            f"{below.get(label, 0)} of {sum(label in r.class_dice for r in rows)}"
            + (f" ({small[label]} too small to gate)" if small.get(label) else ""),
        ]
        for label in ranked
    ]
    return lines + _table(
        ["class", "label", "lowest Dice", "in case", "cases below class_dice_min"],
        table,
        "lrrll",
    )


def _stage_table(rows: Sequence[CaseRecord], estimator: str) -> list[str]:
    staged = [r for r in rows if any(res.stages_s for res in r.roles.values())]
    if not staged:
        return []
    lines = [
        "",
        "## Stage times (s, median of each test's own timed rounds)",
        "",
        "The last column is the latency the table above shows for the role: the candidate's "
        f"is the {estimator} of the same rounds (equal to `total` when the {estimator} and the "
        f"median agree); the reference's `{REF_GATE}` comes from the runs interleaved with the "
        f"candidate's rounds, not from these, so it differs from `total` by the drift between "
        f"the two tests (the own rounds' figure, `{REF_OWN}`, is in brackets).",
        "",
    ]
    stage_rows: list[list[object]] = []
    for r in staged:
        for role, res in r.roles.items():
            st = res.stages_s
            if role == "reference":
                shown = f"{_fmt(res.latency_s, '.3f')} (paired, gate)"
                if res.own_latency_s is not None and res.latency_source == "gate":
                    shown += f" [{res.own_latency_s:.3f} own rounds]"
            else:
                shown = f"{_fmt(res.latency_s, '.3f')} ({r.estimator} of own rounds)"
            stages = [_fmt(st.get(k), ".3f") for k in STAGES]
            stage_rows.append(
                [markdown(r.label), markdown(f"{role} ({res.backend})"), *stages, shown]
            )
    return lines + _table(
        ["subject", "role", *STAGES, "latency in the table"], stage_rows, "llrrrrl"
    )


def _change(old: float | None, new: float | None, spec: str, ratio: float | None) -> str:
    text = f"{_fmt(old, spec)} -> {_fmt(new, spec)}"
    return text + (f" (x{ratio:.2f})" if ratio is not None else "")


def render_comparison(comparison: Comparison, title: str = "segbench: run comparison") -> str:
    """What changed per case between two runs: both latencies (new / old ratio; the reference's
    is the paired figure of the speed-up gate), the speed-up, the mean Dice and its delta, and
    every threshold crossed; then cases in one run only. A comparison forced past differences
    that make latencies incomparable says FORCED and lists them; an injected run says so."""
    c = comparison
    lines = [f"# {title}" + (" - FORCED" if c.forced else ""), ""]
    if c.forced:
        lines += [
            "**FORCED: compared with --force although the runs were measured differently, so "
            "their latencies do not compare (old vs new): " + markdown(describe(c.refused)) + "**",
            "",
        ]
    for which, run in (("old", c.old), ("new", c.new)):
        if run.injected:
            lines += [f"**{which} run {markdown(injected_banner(run.injection))}**", ""]
    lines += [*_comparison_facts(c), ""]
    lines += _table(
        ["subject", REF_GATE, "candidate s", "speed-up", "mean Dice", "result"],
        [_change_cells(ch) for ch in c.changes],
        "lrrrrl",
    )
    if c.regressions:
        lines += ["", "## Thresholds crossed", ""]
        for ch in c.regressions:
            lines += [f"- {markdown(ch.case)}: " + markdown("; ".join(ch.exceeded))]
    if c.only_old or c.only_new:
        lines += ["", "## Cases in one run only", ""]
        lines += [f"- only in old: {markdown(case)}" for case in c.only_old]
        lines += [f"- only in new: {markdown(case)}" for case in c.only_new]
    lines += ["", _comparison_verdict(c)]
    return "\n".join(lines) + "\n"


def _comparison_facts(c: Comparison) -> list[str]:
    """The bullets under the comparison's title: both runs, the thresholds, what the reference
    latency is, the settings that differ, and a run saved without a segbench block."""
    lines = [
        f"- old: {markdown_code(c.old.path.name)}"
        + (f" (commit {markdown(c.old.commit)})" if c.old.commit else ""),
        f"- new: {markdown_code(c.new.path.name)}"
        + (f" (commit {markdown(c.new.commit)})" if c.new.commit else ""),
        f"- thresholds: latency ratio new/old <= {c.max_slowdown:g} per role, mean Dice drop "
        f"<= {c.max_dice_drop:g}, no gate newly failing, a class's NSD drop <= "
        f"{c.max_nsd_drop:g}, no class newly vanished",
        f"- {reference_figures_note(markdown(c.new.rows[0].estimator) if c.new.rows else 'min')}; "
        f"this comparison uses `{REF_GATE}`",
    ]
    if c.warnings:
        lines.append(
            "- settings that differ (latencies still compare; old vs new): "
            + markdown(describe(c.warnings))
        )
    if c.old.settings is None or c.new.settings is None:
        lines.append(
            "- a run saved without a segbench block: only its CPU, model, estimator and "
            "injection were checked"
        )
    return lines


def _change_cells(ch: CaseChange) -> list[object]:
    """One case's row of the comparison table."""
    delta = f" ({ch.dice_delta:+.5f})" if ch.dice_delta is not None else ""
    return [
        markdown(ch.case),
        _change(ch.old.reference_s, ch.new.reference_s, ".3f", ch.latency_ratio["reference"]),
        _change(ch.old.candidate_s, ch.new.candidate_s, ".3f", ch.latency_ratio["candidate"]),
        f"{_fmt(ch.old_speedup, '.2f', 'x')} -> {_fmt(ch.new_speedup, '.2f', 'x')}",
        f"{_fmt(ch.old.mean_dice, '.5f')} -> {_fmt(ch.new.mean_dice, '.5f')}{delta}",
        "REGRESSED" if ch.regressed else "ok",
    ]


def _comparison_verdict(c: Comparison) -> str:
    """The comparison's last line: how many cases crossed a threshold, FORCED, INJECTED."""
    verdict = (
        f"{len(c.regressions)} of {len(c.changes)} cases crossed a threshold."
        if c.regressed
        else f"No threshold crossed in {len(c.changes)} common cases."
    )
    if c.forced:
        verdict += " FORCED: the runs were measured differently (see above)."
    injected = [w for w, run in (("old", c.old), ("new", c.new)) if run.injected]
    if injected:
        verdict += f" INJECTED ({' and '.join(injected)} run): not the code's verdict."
    return verdict
