"""Saved runs: a pytest-benchmark JSON file read back into one typed :class:`CaseRow` per case,
and the comparison of two runs (:func:`compare_runs`).

A saved run holds two benchmarks per case, grouped by case id: the reference (PyTorch) and the
candidate (ONNX Runtime), each with segbench's ``extra_info``. Latencies come from that
extra_info (segbench's own estimator, ``min`` or ``median`` of the timed rounds) and, where it is
missing, from pytest-benchmark's ``stats.min``. Nothing here imports torch or matplotlib.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.errors import SegbenchError

ROLES = ("reference", "candidate")
STAGES = ("preprocess", "inference", "postprocess", "total")


class RunFileError(SegbenchError, ValueError):
    """A file that is not a saved segbench run (missing, not JSON, not pytest-benchmark's)."""

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class RoleResult:
    """What one role (reference or candidate) recorded for one case."""

    backend: str
    provider: str
    latency_s: float | None
    latency_source: str  # "extra_info", "stats.min" or "none"
    stages_s: Mapping[str, float] = field(default_factory=dict)
    dice_vs_ground_truth: float | None = None


@dataclass(frozen=True)
class CaseRow:
    """One case of a saved run: both latencies, the mask agreement and the gate results."""

    case: str
    model: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    voxels: int | None
    estimator: str
    roles: Mapping[str, RoleResult]
    mean_dice: float | None = None
    class_dice: Mapping[str, float] = field(default_factory=dict)
    flipped_fraction: float | None = None
    max_abs_logit_diff: float | None = None
    candidate_gflops: float | None = None  # achieved in the candidate's sliding window
    baseline_speedup: float | None = None  # the case's speed-up in the baseline run, if any
    gates: Mapping[str, bool] = field(default_factory=dict)
    machine: str | None = None  # the machine that ran the case (a merged run has several)

    @property
    def provider(self) -> str:
        """The candidate's execution provider (e.g. ``CPUExecutionProvider``)."""
        cand = self.roles.get("candidate")
        return cand.provider if cand else "-"

    @property
    def reference_s(self) -> float | None:
        ref = self.roles.get("reference")
        return ref.latency_s if ref else None

    @property
    def candidate_s(self) -> float | None:
        cand = self.roles.get("candidate")
        return cand.latency_s if cand else None

    @property
    def speedup(self) -> float | None:
        """Reference latency / candidate latency (``None`` when either is missing)."""
        ref, cand = self.reference_s, self.candidate_s
        if ref is None or cand is None:
            return None
        return ref / cand if cand > 0 else math.inf

    @property
    def worst_class(self) -> tuple[str, float] | None:
        """The label with the lowest Dice (ties: the lower label), or ``None`` without Dice."""
        if not self.class_dice:
            return None
        label = min(self.class_dice, key=lambda k: (self.class_dice[k], _label_key(k)))
        return label, self.class_dice[label]

    @property
    def stages(self) -> dict[str, Mapping[str, float]]:
        """Median stage times per role: ``{"reference": {"inference": ...}, ...}``."""
        return {role: r.stages_s for role, r in self.roles.items()}

    @property
    def dice_vs_ground_truth(self) -> dict[str, float]:
        """Each role's Dice against the phantom's ground truth (empty for real scans)."""
        return {
            role: r.dice_vs_ground_truth
            for role, r in self.roles.items()
            if r.dice_vs_ground_truth is not None
        }

    @property
    def failed_gates(self) -> list[str]:
        return [name for name, ok in self.gates.items() if not ok]

    @property
    def missing_roles(self) -> list[str]:
        """The roles without a benchmark in the run (a test that errored before timing)."""
        return [role for role in ROLES if role not in self.roles]

    @property
    def passed(self) -> bool:
        """Both roles ran, every recorded gate passed and the candidate was scored at all."""
        return bool(self.gates) and not self.failed_gates and not self.missing_roles


@dataclass(frozen=True)
class Run:
    """A saved run: where it came from and its cases in the order they ran."""

    path: Path
    rows: tuple[CaseRow, ...]
    datetime: str | None = None
    commit: str | None = None
    machine: str | None = None
    cpu: str | None = None  # machine_info.cpu.brand_raw: speed-ups compare on one CPU type
    segbench: Mapping[str, Any] = field(default_factory=dict)  # the run's "segbench" block

    def by_case(self) -> dict[str, CaseRow]:
        return {r.case: r for r in self.rows}

    @property
    def machines(self) -> list[str]:
        """The distinct machines that ran the cases, in case order."""
        return list(dict.fromkeys(r.machine for r in self.rows if r.machine))

    @property
    def expected_cases(self) -> list[str]:
        """The cases the run should hold: the suite each session saw before sharding, else the
        cases it selected (from the ``segbench`` block; empty for runs saved without one)."""
        block = self.segbench
        cases: list[str] = []
        for key in ("suite", "cases"):
            for value in (block.get(key) or []) if isinstance(block, Mapping) else []:
                if str(value) not in cases:
                    cases.append(str(value))
            if cases:
                break
        return cases


def _label_key(label: str) -> tuple[int, str]:
    return (int(label), "") if label.isdigit() else (1 << 30, label)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _role_result(
    info: Mapping[str, Any], stats: Any, role: str, cand: Mapping[str, Any]
) -> RoleResult:
    # the candidate's extra_info holds the latencies its speed-up gate used (the reference runs
    # interleaved with its timed rounds); the reference's own rounds are the fallback
    latency = _number(cand.get(f"{role}_s"))
    source = "extra_info"
    if latency is None:
        latency = _number(info.get("latency_s"))
    if latency is None and isinstance(stats, Mapping):
        latency = _number(stats.get("min"))
        source = "stats.min"
    if latency is None:
        source = "none"
    raw_stages = info.get("stages_s")
    stages = (
        {k: v for k in STAGES if (v := _number(raw_stages.get(k))) is not None}
        if isinstance(raw_stages, Mapping)
        else {}
    )
    return RoleResult(
        backend=str(info.get("backend") or "-"),
        provider=str(info.get("provider") or "-"),
        latency_s=latency,
        latency_source=source,
        stages_s=stages,
        dice_vs_ground_truth=_number(info.get("dice_vs_ground_truth")),
    )


def _row(case: str, benches: Mapping[str, Mapping[str, Any]]) -> CaseRow:
    infos = {role: b.get("extra_info") or {} for role, b in benches.items()}
    cand = infos.get("candidate", {})
    first = cand or next(iter(infos.values()))
    roles = {
        role: _role_result(infos[role], benches[role].get("stats"), role, cand)
        for role in ROLES
        if role in benches
    }
    class_dice = cand.get("class_dice")
    gates = cand.get("gates")
    voxels = first.get("voxels")
    return CaseRow(
        case=case,
        model=str(first.get("model") or "-"),
        shape=tuple(int(s) for s in first.get("shape") or ()),
        spacing=tuple(float(s) for s in first.get("spacing") or ()),
        voxels=int(voxels) if isinstance(voxels, int) else None,
        estimator=str(first.get("estimator") or "min"),
        roles=roles,
        mean_dice=_number(cand.get("mean_dice")),
        class_dice={str(k): d for k, v in class_dice.items() if (d := _number(v)) is not None}
        if isinstance(class_dice, Mapping)
        else {},
        flipped_fraction=_number(cand.get("flipped_fraction")),
        max_abs_logit_diff=_number(cand.get("max_abs_logit_diff")),
        candidate_gflops=_number(cand.get("inference_gflops")),
        baseline_speedup=_number(cand.get("baseline_speedup")),
        gates={str(k): bool(v) for k, v in gates.items()} if isinstance(gates, Mapping) else {},
        machine=str(first["machine"]) if first.get("machine") else None,
    )


def parse_run(data: Any, path: str | Path = "<in-memory run>") -> Run:
    """Typed rows from an already decoded pytest-benchmark JSON document."""
    if not isinstance(data, Mapping) or not isinstance(data.get("benchmarks"), list):
        raise RunFileError(
            path,
            'is not a pytest-benchmark run (no top-level "benchmarks" list)',
            "pass the file written by `pytest --benchmark-only --benchmark-json=run.json` or one "
            "saved under .benchmarks/ by --benchmark-autosave",
        )
    cases: dict[str, dict[str, Mapping[str, Any]]] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") if isinstance(bench, Mapping) else None
        if not isinstance(info, Mapping) or info.get("role") not in ROLES:
            continue
        case = str(info.get("case") or bench.get("group") or bench.get("name"))
        cases.setdefault(case, {})[str(info["role"])] = bench
    if not cases:
        raise RunFileError(
            path,
            f"holds {len(data['benchmarks'])} benchmarks but none with segbench's extra_info "
            '("role": reference/candidate)',
            "save the run of segbench's own suite (tests/test_regression.py, "
            "`pytest --benchmark-only --benchmark-json=run.json`), not another benchmark suite",
        )
    machine = data.get("machine_info")
    commit = data.get("commit_info")
    block = data.get("segbench")
    rows = tuple(_row(case, benches) for case, benches in cases.items())
    machines = list(dict.fromkeys(r.machine for r in rows if r.machine))
    return Run(
        path=Path(path),
        rows=rows,
        datetime=str(data["datetime"]) if data.get("datetime") else None,
        commit=str(commit.get("id"))[:12]
        if isinstance(commit, Mapping) and commit.get("id")
        else None,
        machine=f"{len(machines)} machines (per case below)"
        if len(machines) > 1
        else (_machine_text(machine) if isinstance(machine, Mapping) else None),
        cpu=_cpu_brand(machine),
        segbench=block if isinstance(block, Mapping) else {},
    )


def _cpu_brand(machine: Any) -> str | None:
    cpu = machine.get("cpu") if isinstance(machine, Mapping) else None
    brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
    return str(brand) if brand else None


def machine_label(machine: Any) -> str:
    """A short name of pytest-benchmark's ``machine_info``: host name, CPU, CPU count and
    Python version (``"runner-7 (AMD EPYC 7763, 4 CPUs, Python 3.11.9)"``)."""
    if not isinstance(machine, Mapping):
        return "-"
    text = _machine_text(machine)
    node = machine.get("node")
    return f"{node} ({text})" if node else text


def _machine_text(machine: Mapping[str, Any]) -> str:
    cpu = machine.get("cpu")
    brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
    count = cpu.get("count") if isinstance(cpu, Mapping) else None
    parts = [
        str(brand) if brand else str(machine.get("machine") or ""),
        f"{count} CPUs" if count else "",
        f"Python {machine['python_version']}" if machine.get("python_version") else "",
    ]
    return ", ".join(p for p in parts if p) or "-"


def load_run(path: str | Path) -> Run:
    """Read a saved run. Raises :class:`RunFileError` naming the file and the fix."""
    return parse_run(read_run_json(path), path)


def read_run_json(path: str | Path) -> Any:
    """The decoded JSON of a saved run (not yet checked for segbench's content)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFileError(
            path,
            "does not exist",
            "give the path of a saved run (--benchmark-json=FILE, or .benchmarks/*/NNNN_*.json)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(
            path, f"cannot be read ({type(exc).__name__}: {exc})", "check the path and permissions"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFileError(
            path,
            f"is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
            "pass the JSON file that pytest-benchmark wrote; a run cut short by a killed job "
            "is truncated: rerun the benchmark",
        ) from exc
    return data


# comparing two runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseChange:
    """One case present in both runs: latency ratios (new / old), speed-ups and Dice delta."""

    case: str
    old: CaseRow
    new: CaseRow
    latency_ratio: Mapping[str, float | None]  # role -> new / old
    dice_delta: float | None  # new mean Dice - old mean Dice
    exceeded: tuple[str, ...]  # one sentence per threshold crossed

    @property
    def old_speedup(self) -> float | None:
        return self.old.speedup

    @property
    def new_speedup(self) -> float | None:
        return self.new.speedup

    @property
    def regressed(self) -> bool:
        return bool(self.exceeded)


@dataclass(frozen=True)
class Comparison:
    """Two runs case by case; ``regressed`` when any case crossed a threshold."""

    old: Run
    new: Run
    max_slowdown: float
    max_dice_drop: float
    changes: tuple[CaseChange, ...]
    only_old: tuple[str, ...]
    only_new: tuple[str, ...]

    @property
    def regressions(self) -> list[CaseChange]:
        return [c for c in self.changes if c.regressed]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)


def _ratio(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return new / old


def compare_case(
    old: CaseRow, new: CaseRow, max_slowdown: float, max_dice_drop: float
) -> CaseChange:
    """Compare one case. Crossing a threshold means: a role's latency grew by more than
    ``max_slowdown`` (a ratio, 1.15 = 15 % slower), the mean Dice fell by more than
    ``max_dice_drop``, the new run lost the Dice it had, or a gate that passed now fails."""
    ratios = {role: _ratio(getattr(new, f"{role}_s"), getattr(old, f"{role}_s")) for role in ROLES}
    exceeded: list[str] = []
    for role, ratio in ratios.items():
        if ratio is not None and ratio > max_slowdown:
            exceeded.append(
                f"{role} latency x{ratio:.2f} ({getattr(old, f'{role}_s'):.3f} s -> "
                f"{getattr(new, f'{role}_s'):.3f} s) exceeds --max-slowdown {max_slowdown:g}"
            )
    delta = None
    if old.mean_dice is not None and new.mean_dice is not None:
        delta = new.mean_dice - old.mean_dice
        if -delta > max_dice_drop:
            exceeded.append(
                f"mean Dice {old.mean_dice:.5f} -> {new.mean_dice:.5f} ({delta:+.5f}) drops more "
                f"than --max-dice-drop {max_dice_drop:g}"
            )
    elif old.mean_dice is not None:
        exceeded.append("the new run has no mean Dice for this case (its candidate failed?)")
    for gate in new.failed_gates:
        if old.gates.get(gate):
            exceeded.append(f"the {gate} gate passed before and fails now")
    return CaseChange(old.case, old, new, ratios, delta, tuple(exceeded))


def compare_runs(
    old: Run, new: Run, max_slowdown: float = 1.15, max_dice_drop: float = 0.002
) -> Comparison:
    """Case by case comparison of two runs (see :func:`compare_case` for the thresholds).
    Cases present in one run only are listed, not counted as regressions."""
    if not max_slowdown > 0:
        raise ValueError(
            f"max_slowdown must be > 0 (a ratio, 1.15 = 15 % slower), got {max_slowdown}"
        )
    if not max_dice_drop >= 0:
        raise ValueError(f"max_dice_drop must be >= 0, got {max_dice_drop}")
    old_cases, new_cases = old.by_case(), new.by_case()
    changes = tuple(
        compare_case(old_cases[c], new_cases[c], max_slowdown, max_dice_drop)
        for c in new_cases
        if c in old_cases
    )
    return Comparison(
        old=old,
        new=new,
        max_slowdown=max_slowdown,
        max_dice_drop=max_dice_drop,
        changes=changes,
        only_old=tuple(c for c in old_cases if c not in new_cases),
        only_new=tuple(c for c in new_cases if c not in old_cases),
    )


def summary_numbers(rows: Sequence[CaseRow]) -> dict[str, float | int | None]:
    """Totals shared by the Markdown report and the CLI: latency sums, speed-up statistics,
    Dice statistics and the number of failed gates."""
    timed = [r for r in rows if r.reference_s is not None and r.candidate_s is not None]
    ref_total = sum(r.reference_s or 0.0 for r in timed)
    cand_total = sum(r.candidate_s or 0.0 for r in timed)
    speedups = [s for r in timed if (s := r.speedup) is not None and math.isfinite(s)]
    dices = [r.mean_dice for r in rows if r.mean_dice is not None]
    return {
        "cases": len(rows),
        "reference_total_s": ref_total if timed else None,
        "candidate_total_s": cand_total if timed else None,
        "total_speedup": ref_total / cand_total if timed and cand_total > 0 else None,
        "mean_speedup": statistics.fmean(speedups) if speedups else None,
        "median_speedup": statistics.median(speedups) if speedups else None,
        "min_speedup": min(speedups) if speedups else None,
        "mean_reference_s": ref_total / len(timed) if timed else None,
        "mean_candidate_s": cand_total / len(timed) if timed else None,
        "median_reference_s": statistics.median([r.reference_s or 0.0 for r in timed])
        if timed
        else None,
        "median_candidate_s": statistics.median([r.candidate_s or 0.0 for r in timed])
        if timed
        else None,
        "mean_dice": statistics.fmean(dices) if dices else None,
        "median_dice": statistics.median(dices) if dices else None,
        "min_dice": min(dices) if dices else None,
        "gates": sum(len(r.gates) for r in rows),
        "failed_gates": sum(len(r.failed_gates) for r in rows),
        "failed_cases": sum(bool(r.failed_gates) or not r.gates for r in rows),
    }
