"""The report's section "Agreement in millimetres": per case the lowest NSD, the largest HD95
and volume difference, vanished and appeared classes, the noise floors and the seconds the
figures took, and where a case has a ground truth each role's lowest NSD and largest HD95
against it (informational: no gate reads them); per class the same over the cases (every
class: 118 rows for TotalSegmentator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from segbench.results.agreement import AgreementRecord, ClassFigures
from segbench.results.escape import markdown
from segbench.results.record import CaseRecord
from segbench.settings.config import Gates


def _f(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def _cell(text: object) -> str:
    return markdown(str(text))


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str) -> list[str]:
    rule = ["---:" if a == "r" else ":---" for a in align]
    return ["| " + " | ".join(_cell(c) for c in line) + " |" for line in (header, rule, *rows)]


def _floor(ag: AgreementRecord, role: str) -> str:
    floor = ag.noise_floor.get(role)
    if not floor:
        return "-"
    changed = int(floor.get("changed_voxels", 0))
    if not changed:
        return "identical"
    return f"{changed} vox, NSD {_f(floor.get('min_nsd'), '.4f')}"


def _truth(ag: AgreementRecord, role: str, names: Mapping[str, str], big: int) -> str:
    worst = ag.truth_worst(role, big)
    if worst is None:
        return "-"
    label, nsd, hd95 = worst
    return f"{names.get(label, 'label ' + label)} {nsd:.4f}, max HD95 {_f(hd95, '.2f', ' mm')}"


def _names(labels: Sequence[str], names: Mapping[str, str]) -> str:
    return ", ".join(names.get(k, f"label {k}") for k in labels) or "-"


def agreement_section(
    rows: Sequence[CaseRecord], class_names: Mapping[str, str] | None, gates: Gates
) -> list[str]:
    """Markdown lines of the section (none when no case has the figures)."""
    scored = [(r, r.agreement) for r in rows if r.agreement is not None]
    if not scored:
        return []
    names = class_names or {}
    big = gates.min_class_voxels
    lines = [
        "",
        "## Agreement in millimetres",
        "",
        f"Candidate vs reference mask per class: normalised surface Dice (NSD) at "
        f"nsd_tolerance_mm {gates.nsd_tolerance_mm:g} (gate nsd_min {gates.nsd_min:g}), HD95 "
        f"(gate hd95_max_mm {gates.hd95_max_mm:g}), volume difference (gate "
        f"volume_diff_max_pct {gates.volume_diff_max_pct:g}), each over the classes of >= {big} "
        f"voxels; vanished classes of any size (gate vanished_max {gates.vanished_max}). The "
        "noise floor is each role's last two runs of the case against each other "
        "(`identical`: voxel for voxel).",
        "",
    ]
    truth = any(ag.truth for _, ag in scored)
    if truth:
        lines[-1:-1] = [
            "The `vs truth` columns (informational, no gate) are each role's mask against the "
            "case's ground truth: the class of lowest NSD and the largest HD95 over the same "
            "classes (`-`: no usable ground truth).",
        ]
    body = []
    for r, ag in scored:
        worst = ag.worst_nsd(big)
        row = [
            r.label,
            f"{names.get(worst[0], 'label ' + worst[0])} {worst[1]:.4f}" if worst else "-",
            _f(ag.max_hd95_mm(big), ".2f", " mm"),
            _f(ag.max_volume_diff_pct(big), ".2f", " %"),
            _names(ag.vanished, names),
            _names(ag.appeared, names),
            _floor(ag, "reference"),
            _floor(ag, "candidate"),
        ]
        if truth:
            row += [_truth(ag, "reference", names, big), _truth(ag, "candidate", names, big)]
        body.append([*row, _f(ag.seconds, ".2f")])
    header = [
        "subject",
        "lowest NSD",
        "max HD95",
        "max abs volume diff",
        "vanished",
        "appeared",
        "noise floor reference",
        "noise floor candidate",
    ]
    header += ["reference vs truth", "candidate vs truth"] if truth else []
    lines += _table([*header, "figures s"], body, "llrrllll" + ("ll" if truth else "") + "r")
    return lines + class_table(scored, names)


def class_table(
    scored: Sequence[tuple[CaseRecord, AgreementRecord]], names: Mapping[str, str]
) -> list[str]:
    """Per class over the cases: lowest NSD (and its case), largest HD95, largest |volume
    difference|, reference volume range, cases where it vanished; lowest NSD first."""
    per: dict[str, list[tuple[str, ClassFigures]]] = {}
    for r, ag in scored:
        for label, c in ag.classes.items():
            per.setdefault(label, []).append((r.label, c))
    rows = []
    for label, items in per.items():
        figures = [c for _, c in items]
        low_case, low = min(items, key=lambda x: x[1].nsd)
        hd = [c.hd95_mm for c in figures if c.hd95_mm is not None]
        vol = [abs(v) for c in figures if (v := c.volume_diff_pct) is not None]
        ml = [c.reference_ml for c in figures]
        gone = sum(1 for c in figures if c.presence == "vanished")
        rows.append(
            (
                low.nsd,
                [
                    names.get(label, f"label {label}"),
                    label,
                    f"{low.nsd:.4f} ({low_case})",
                    _f(max(hd) if hd else None, ".2f"),
                    _f(max(vol) if vol else None, ".2f"),
                    f"{min(ml):.1f}-{max(ml):.1f}",
                    f"{gone} of {len(items)}",
                ],
            )
        )
    rows.sort(key=lambda x: x[0])
    return [
        "",
        f"### Per class ({len(rows)} classes, lowest NSD first)",
        "",
        *_table(
            [
                "class",
                "label",
                "lowest NSD (case)",
                "max HD95 mm",
                "max abs volume diff %",
                "reference mL",
                "vanished in",
            ],
            [r for _, r in rows],
            "lrlrrrl",
        ),
    ]
