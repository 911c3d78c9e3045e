"""The ``segbench`` command (also ``python -m segbench``): reports from saved runs.

- ``segbench report RUN.json [--out DIR] [--no-plots]``: DIR/report.md and three PNGs
  (latency.png, speedup_vs_voxels.png, class_dice.png); prints the Markdown.
- ``segbench compare OLD.json NEW.json [--max-slowdown 1.15] [--max-dice-drop 0.002]
  [--max-nsd-drop 0.01] [--force]``:
  prints what changed per case; exit 1 when a threshold is crossed; refuses (exit 2) runs
  measured differently (CPU type, injection, malloc mode, timing, model, weights) unless
  ``--force``.
- ``segbench export-gab RUN.json [-o OUT.json] [--kind smaller|bigger]``: github-action-benchmark
  ``custom`` JSON.
- ``segbench merge SHARD.json... -o MERGED.json``: one run from the shards of a sharded suite;
  refuses shards of different settings and a case in two shards.
- ``segbench gate RUN.json``: the session's summary table from a saved or merged run; exit 1
  when a gate failed or a case is missing its reference, its candidate or both.

Exit codes: 0 ok, 1 regression (``compare``) or failed gate (``gate``), 2 bad input or usage
(``compare``: runs that do not compare). An injected run (``--segbench-inject``) says so in the
first line of ``gate``, ``report`` and ``compare``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from segbench.cachefiles import check_target, same_file, write_text_atomic
from segbench.errors import InputError, SegbenchError
from segbench.results.agreement import MAX_NSD_DROP
from segbench.results.compare import compare_runs
from segbench.results.decision import fastest_candidate, gate_decision, run_gates
from segbench.results.escape import terminal
from segbench.results.markdown import render_comparison, render_report
from segbench.results.merge import merge_shards
from segbench.results.mismatch import injected_banner
from segbench.results.record import CaseRecord
from segbench.results.runfile import SegbenchBlock
from segbench.results.runs import ROLES, Run, load_run
from segbench.results.table import REFERENCE_LINE, missing, summary_table, timing_line

PLOTS = {
    "latency": "latency.png",
    "speedup_vs_voxels": "speedup_vs_voxels.png",
    "class_dice": "class_dice.png",
    "class_nsd": "class_nsd.png",
}
GAB_KINDS = {"smaller": "customSmallerIsBetter", "bigger": "customBiggerIsBetter"}

SUBCOMMANDS: dict[str, tuple[str, str]] = {  # name: (help, description)
    "report": (
        "Markdown table and plots of one run",
        "Write DIR/report.md (the per-case table with summary rows) and, unless "
        "--no-plots, latency.png, speedup_vs_voxels.png and class_dice.png; print the Markdown.",
    ),
    "compare": (
        "what changed per case between two runs",
        "Per case: latency ratio new/old of both roles, speed-up, mean Dice delta. "
        "Exit 1 when a role got slower than --max-slowdown, the mean Dice fell by more than "
        "--max-dice-drop, or a gate that passed now fails; cases in one run only are listed "
        "but do not fail. The reference latency is the paired figure of the speed-up gate. "
        "Refused (exit 2) unless --force: runs of different CPU types, an injected run "
        "against a normal one, another malloc mode, rounds, warm-up rounds, estimator, model "
        "or weights. Other differences (versions, gates, profiles) are warnings.",
    ),
    "export-gab": (
        "github-action-benchmark 'custom' JSON",
        "Entries {name, unit, value, extra} for github-action-benchmark. Latency "
        "per case (s) is 'customSmallerIsBetter': 'reference latency (paired, gate)' (the "
        "reference runs interleaved with the candidate's, the speed-up gate's figure), "
        "'reference latency (own rounds)' (the reference test's own rounds) and 'candidate "
        "latency'; mean Dice and speed-up per case are "
        "'customBiggerIsBetter'. Without --kind, two files are written: OUT-smaller.json and "
        "OUT-bigger.json (OUT = -o without its .json; default gab). With --kind, one file "
        "(-o, default: standard output).",
    ),
    "merge": (
        "one run from the shards of a sharded suite",
        "Combine the runs saved by the shards of one suite (pytest --splits N "
        "--group i --benchmark-json=shard-i.json) into one run file that report, compare, "
        "export-gab and gate read like any run. Refused (exit 2): shards whose settings differ "
        "(model, weights, ONNX file, benchmarks.json, timing, options, segbench/torch/"
        "onnxruntime versions), shards of different commits, a case in two shards. Each case "
        "keeps the machine that ran it (extra_info machine and shard).",
    ),
    "gate": (
        "the gate decision of a saved or merged run",
        "Print the summary table the pytest session prints, from a saved run (a "
        "merged one too). Exit 1 when a case failed a gate, a case lacks its reference or "
        "candidate benchmark, or a case of the suite has no benchmark at all.",
    ),
}


def _ratio(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a ratio > 0 (1.15 = 15 %% slower), got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segbench",
        description="Reports from saved segbench runs (pytest --benchmark-json / "
        "--benchmark-autosave files).",
        epilog="Exit codes: 0 ok, 1 a regression past the thresholds (compare) or a failed "
        "gate (gate), 2 bad input.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add_arguments in (
        ("report", _report_arguments),
        ("compare", _compare_arguments),
        ("export-gab", _export_gab_arguments),
        ("merge", _merge_arguments),
        ("gate", _gate_arguments),
    ):
        help_text, description = SUBCOMMANDS[name]
        add_arguments(sub.add_parser(name, help=help_text, description=description))
    return parser


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    """``segbench report``'s arguments."""
    parser.add_argument("run", type=Path, metavar="RUN.json")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: reports/<RUN stem>/)"
    )
    parser.add_argument("--title", default=None, help="report title (default: from the run)")
    parser.add_argument(
        "--no-plots", action="store_true", help="Markdown only (no matplotlib needed)"
    )


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    """``segbench compare``'s arguments and thresholds."""
    parser.add_argument("old", type=Path, metavar="OLD.json")
    parser.add_argument("new", type=Path, metavar="NEW.json")
    parser.add_argument(
        "--max-slowdown",
        type=_ratio,
        default=1.15,
        help="largest allowed latency ratio new/old per role (default: 1.15)",
    )
    parser.add_argument(
        "--max-dice-drop",
        type=_non_negative,
        default=0.002,
        help="largest allowed drop of the mean Dice (default: 0.002)",
    )
    parser.add_argument(
        "--max-nsd-drop",
        type=_non_negative,
        default=MAX_NSD_DROP,
        help="largest allowed drop of a class's normalised surface Dice (default: "
        f"{MAX_NSD_DROP}); a class newly vanished from the candidate's mask always counts",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare runs measured differently anyway (the output says FORCED and lists "
        "the differences)",
    )


def _export_gab_arguments(parser: argparse.ArgumentParser) -> None:
    """``segbench export-gab``'s arguments."""
    parser.add_argument("run", type=Path, metavar="RUN.json")
    parser.add_argument("-o", "--output", type=Path, default=None, help="output file or base name")
    parser.add_argument(
        "--kind", choices=sorted(GAB_KINDS), default=None, help="write only this kind"
    )


def _merge_arguments(parser: argparse.ArgumentParser) -> None:
    """``segbench merge``'s arguments."""
    parser.add_argument("shards", type=Path, nargs="+", metavar="SHARD.json")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="MERGED.json", help="the merged run"
    )


def _gate_arguments(parser: argparse.ArgumentParser) -> None:
    """``segbench gate``'s arguments."""
    parser.add_argument("run", type=Path, metavar="RUN.json")


# report ----------------------------------------------------------------------------------------


def class_names_of(model: str) -> dict[str, str] | None:
    """Class names of a built-in model (``{"1": "spleen", ...}``), or ``None`` when the model is
    unknown or its card cannot be read (torch missing, fixtures absent)."""
    try:
        from segbench.models import BUILTIN, get_card

        if model not in BUILTIN:
            return None
        names = get_card(model).class_names
    except Exception:  # names are a nicety: the report falls back to label numbers
        return None
    return {str(i): name for i, name in enumerate(names)}


def _title(run: Run) -> str:
    models = sorted({r.model for r in run.rows})
    return f"segbench report: {', '.join(models)} model, {run.path.stem}"


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    run = load_run(args.run)
    folder: Path = args.out if args.out is not None else Path("reports") / args.run.stem
    refuse_wrong_kind(folder, folder=True)
    rows = list(run.rows)
    models = {r.model for r in rows}
    names = class_names_of(models.pop()) if len(models) == 1 else None
    images: list[tuple[str, str]] = []
    for name in ("report.md", *([] if args.no_plots else PLOTS.values())):
        check_target(folder / name, inside=folder)  # before anything is written
    if not args.no_plots:
        from segbench.results import plots

        plots.require_matplotlib()  # fail before writing anything
        folder.mkdir(parents=True, exist_ok=True)
        plots.plot_latency(rows, folder / PLOTS["latency"])
        plots.plot_speedup_vs_voxels(rows, folder / PLOTS["speedup_vs_voxels"])
        plots.plot_class_dice(
            rows, folder / PLOTS["class_dice"], class_names=names, gates=run_gates(run)
        )
        images = [
            ("latency per case", PLOTS["latency"]),
            ("speed-up against voxels", PLOTS["speedup_vs_voxels"]),
            ("Dice per class", PLOTS["class_dice"]),
        ]
        if any(r.agreement is not None for r in rows):  # runs saved before have no NSD
            from segbench.results.agreement_plots import plot_class_nsd

            plot_class_nsd(
                rows, folder / PLOTS["class_nsd"], class_names=names, gates=run_gates(run)
            )
            images.append(("normalised surface Dice per class", PLOTS["class_nsd"]))
    text = render_report(rows, args.title or _title(run), run=run, class_names=names, images=images)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "report.md", text, inside=folder)
    out.write(text)
    written = ["report.md", *(p for _, p in images)]
    wrote = ", ".join(str(folder / w) for w in written)
    print(f"segbench: wrote {terminal(wrote)}", file=sys.stderr)
    return 0


# compare ---------------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    old, new = load_run(args.old), load_run(args.new)
    comparison = compare_runs(
        old,
        new,
        args.max_slowdown,
        args.max_dice_drop,
        force=args.force,
        max_nsd_drop=args.max_nsd_drop,
    )
    for diff in comparison.warnings:
        print(f"segbench compare: warning: {terminal(diff.text())} (old vs new)", file=sys.stderr)
    if comparison.forced:
        print(
            "segbench compare: FORCED past: "
            + terminal("; ".join(d.text() for d in comparison.refused)),
            file=sys.stderr,
        )
    out.write(render_comparison(comparison))
    return 1 if comparison.regressed else 0


# export-gab ------------------------------------------------------------------------------------


GAB_SERIES = {
    "reference": "reference latency (paired, gate)",
    "reference-own": "reference latency (own rounds)",
    "candidate": "candidate latency",
}


def gab_entries(run: Run) -> dict[str, list[dict[str, Any]]]:
    """github-action-benchmark entries by kind: ``"smaller"`` (latency per case, s: the
    reference's paired figure of the speed-up gate and its own test's rounds, the candidate's)
    and ``"bigger"`` (mean Dice and speed-up per case). An injected run says so in ``extra``.
    With named candidates a series of a candidate names it (``"<case> [<name>] - ..."``); the
    reference's own rounds, one per case, do not."""
    smaller: list[dict[str, Any]] = []
    bigger: list[dict[str, Any]] = []
    seen: set[str] = set()
    injected = f"; INJECTED: {run.injection}" if run.injected else ""
    for r in run.rows:
        named = r.case if r.candidate is None else f"{r.case} [{r.candidate}]"
        shape = "x".join(str(s) for s in r.shape)
        for series, role, value, how in (
            ("reference", "reference", r.reference_s, "rounds interleaved with the candidate's"),
            ("reference-own", "reference", r.reference_own_s, "the reference test's own rounds"),
            ("candidate", "candidate", r.candidate_s, "the candidate test's rounds"),
        ):
            res = r.roles.get(role)
            if res is None or value is None:
                continue
            if series == "reference-own" and res.latency_source != "gate":
                continue  # no paired figure: the series above is already the own rounds'
            source = res.latency_source if series != "reference-own" else "own rounds"
            name = f"{r.case if series == 'reference-own' else named} - {GAB_SERIES[series]}"
            if name in seen:
                continue
            seen.add(name)
            smaller.append(
                {
                    "name": name,
                    "unit": "s",
                    "value": round(value, 6),
                    "extra": f"{res.backend} ({res.provider}); {r.estimator} of {how}; "
                    f"shape {shape}; source {source}{injected}",
                }
            )
        if r.mean_dice is not None:
            worst = r.worst_class
            bigger.append(
                {
                    "name": f"{named} - mean Dice",
                    "unit": "Dice",
                    "value": r.mean_dice,
                    "extra": f"candidate vs reference mask; gate {_gate(r.gates, 'dice')}"
                    + (f"; worst label {worst[0]} {worst[1]:.4f}" if worst else "")
                    + injected,
                }
            )
        bigger += agreement_entries(r, named, injected)
        speedup = r.speedup
        if speedup is not None and math.isfinite(speedup):
            bigger.append(
                {
                    "name": f"{named} - speed-up",
                    "unit": "x",
                    "value": round(speedup, 4),
                    "extra": "reference (paired, gate) / candidate latency; gate "
                    f"{_gate(r.gates, 'speedup')}{injected}",
                }
            )
    return {"smaller": smaller, "bigger": bigger}


def agreement_entries(r: CaseRecord, named: str, injected: str) -> list[dict[str, Any]]:
    """github-action-benchmark entries of a case's agreement in mm: the lowest NSD over its
    classes ("bigger is better"; a run without the figures has none)."""
    ag = r.agreement
    worst = ag.worst_nsd() if ag is not None else None
    if ag is None or worst is None:
        return []
    vanished = f"; vanished labels {', '.join(ag.vanished)}" if ag.vanished else ""
    return [
        {
            "name": f"{named} - lowest NSD",
            "unit": "NSD",
            "value": round(worst[1], 6),
            "extra": f"label {worst[0]} at {ag.classes[worst[0]].tolerance_mm:g} mm, candidate "
            f"vs reference mask; gate {_gate(r.gates, 'nsd')}; vanished gate "
            f"{_gate(r.gates, 'vanished')}{vanished}{injected}",
        }
    ]


def _gate(gates: Mapping[str, bool], name: str) -> str:
    if name not in gates:
        return "not run"
    return "passed" if gates[name] else "FAILED"


def cmd_export_gab(args: argparse.Namespace, out: TextIO) -> int:
    if args.output is not None:
        if args.kind is not None:  # one file (without --kind, -o is a base name)
            refuse_wrong_kind(args.output, folder=False, example=f"gab-{args.kind}.json")
        refuse_overwrite(args.output, [args.run])
    entries = gab_entries(load_run(args.run))
    if args.kind is not None:
        text = json.dumps(entries[args.kind], indent=2) + "\n"
        if args.output is None:
            out.write(text)
        else:
            _write(args.output, text)
            print(
                f"segbench: wrote {terminal(args.output)} ({GAB_KINDS[args.kind]})",
                file=sys.stderr,
            )
        return 0
    base: Path = args.output if args.output is not None else Path("gab.json")
    stem = base.name[: -len(".json")] if base.name.endswith(".json") else base.name
    for kind, tool in GAB_KINDS.items():
        path = base.with_name(f"{stem}-{kind}.json")
        _write(path, json.dumps(entries[kind], indent=2) + "\n")
        out.write(f"{terminal(path)}\t{tool}\t{len(entries[kind])} entries\n")
    return 0


def _write(path: Path, text: str) -> None:
    """Write atomically (:func:`~segbench.cachefiles.write_text_atomic`): an interrupted write
    never leaves a truncated file under ``path``'s name, and a symlink is not written through."""
    write_text_atomic(path, text)


def refuse_wrong_kind(output: Path, folder: bool, example: str = "run.json") -> None:
    """Raise :class:`InputError`, before any work, when an output file name is a folder or an
    output folder (``folder``) is a file: saying which, not "not writable"."""
    if not folder and output.is_dir():
        raise InputError(
            output,
            "is a folder, not a file name",
            f"name the output file, e.g. {output / example}",
        )
    if folder and output.exists() and not output.is_dir():
        raise InputError(
            output,
            "is a file, not a folder (--out names the report's folder)",
            f"pass a folder for --out, e.g. {output.with_suffix('')}-report",
        )


def refuse_overwrite(output: Path, inputs: Sequence[Path]) -> None:
    """Raise :class:`InputError` when ``output`` is one of ``inputs`` (also through another
    spelling, a symlink or a hard link): writing it would destroy an input before it is read."""
    for src in inputs:
        if same_file(output, src):
            raise InputError(
                output,
                f"is also an input ({src}); writing it would replace that file",
                "write the output to another file name",
            )


# merge and gate ---------------------------------------------------------------------------------


def cmd_merge(args: argparse.Namespace, out: TextIO) -> int:
    refuse_wrong_kind(args.output, folder=False, example="merged.json")
    refuse_overwrite(args.output, args.shards)
    merged = merge_shards(args.shards)
    _write(args.output, json.dumps(merged, indent=4) + "\n")
    block = SegbenchBlock.read(merged["segbench"], args.output)
    shards = block.merged_from or ()
    for shard in shards:
        group = f"group {shard.group}/{shard.splits}" if shard.group else "-"
        out.write(
            f"{terminal(shard.file)}\t{group}\t{len(shard.cases)} cases\t"
            f"{terminal(shard.machine)}\n"
        )
    out.write(
        f"merged {len(shards)} shards, {len(block.cases or ())} cases into "
        f"{terminal(args.output)}\n"
    )
    if block.missing_groups:
        print(
            f"segbench merge: warning: pytest-split group(s) "
            f"{', '.join(map(str, block.missing_groups))} not given; `segbench gate` fails "
            "if their cases are missing",
            file=sys.stderr,
        )
    return 0


def cmd_gate(args: argparse.Namespace, out: TextIO) -> int:
    run = load_run(args.run)
    models = {r.model for r in run.rows}
    names = class_names_of(next(iter(models))) if len(models) == 1 else None
    rows = list(run.rows)
    rows += [missing(c) for c in run.expected_cases if c not in run.by_case()]
    backends = [
        next((res.backend for r in run.rows if (res := r.roles.get(role))), role) for role in ROLES
    ]
    named = [n for n in run.candidates if n is not None]
    versus = (
        f"{len(named)} candidates ({', '.join(named)})" if named else f"{backends[1]} (candidate)"
    )
    title = f" segbench: {', '.join(sorted(models))} model, {backends[0]} (reference) vs {versus} "
    if named:
        backends[1] = "candidate"
    title = terminal(title)
    if run.injected:
        out.write(terminal(injected_banner(run.injection)) + "\n")
    out.write(title.center(max(len(title) + 20, 80), "=") + "\n")
    out.write(summary_table(rows, backends[0], backends[1], class_names=names) + "\n")
    if named:
        out.write(terminal(fastest_candidate(rows)) + "\n")
    timing = run.segbench.timing
    out.write(
        terminal(
            timing_line(
                timing
                if timing is not None
                else {"estimator": run.rows[0].estimator if run.rows else "min"},
                run.segbench.config_source or "the saved run",
                timed=any(r.reference_s is not None for r in rows),
            )
        )
        + "\n"
    )
    if any(r.reference_s is not None for r in rows):
        out.write(REFERENCE_LINE + "\n")
    shards = run.segbench.merged_from
    if shards:
        out.write(f"merged from {len(shards)} shards:\n")
        for shard in shards:
            group = f" (group {shard.group}/{shard.splits})" if shard.group else ""
            text = (
                f"  {shard.file}{group} on {shard.machine}: {', '.join(shard.cases) or 'no case'}"
            )
            out.write(terminal(text) + "\n")
    decision = gate_decision(run)
    for note in decision.notes:
        out.write(f"note: {terminal(note)}\n")
    for problem in decision.problems:
        out.write(f"FAILED: {terminal(problem)}\n")
    out.write(
        f"segbench gate: {'passed' if decision.passed else 'FAILED'} "
        f"({len(rows)} cases, {sum(not r.passed for r in rows)} not ok)"
        + (f" - {terminal(injected_banner(run.injection))}" if run.injected else "")
        + "\n"
    )
    return 0 if decision.passed else 1


COMMANDS = {
    "report": cmd_report,
    "compare": cmd_compare,
    "export-gab": cmd_export_gab,
    "merge": cmd_merge,
    "gate": cmd_gate,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 regression, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    stream = out if out is not None else sys.stdout
    try:
        return COMMANDS[args.command](args, stream)
    except SegbenchError as exc:
        print(f"segbench {args.command}: {terminal(exc)}", file=sys.stderr)
        return 2
    except IsADirectoryError as exc:  # a folder appeared where the output file goes
        print(
            f"segbench {args.command}: {exc.filename2 or exc.filename} is a folder, not a "
            "file name. Fix: name the output file",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(
            f"segbench {args.command}: {terminal(exc)}. Fix: check that the output folder is "
            "writable",
            file=sys.stderr,
        )
        return 2
