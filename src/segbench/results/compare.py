"""Two saved runs side by side: per case, the change of latency, speed-up and Dice
(``segbench compare``), and the summary numbers of a set of records."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segbench.results.agreement import MAX_NSD_DROP, agreement_changes
from segbench.results.mismatch import Difference, check_comparable
from segbench.results.record import CaseRecord
from segbench.results.runs import Run
from segbench.settings.kinds import ROLES


@dataclass(frozen=True)
class CaseChange:
    """One case present in both runs: latency ratios (new / old), speed-ups and Dice delta."""

    case: str
    old: CaseRecord
    new: CaseRecord
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
    differences: tuple[Difference, ...] = ()  # settings of the two runs that differ
    forced: bool = False  # compared with --force despite a refusing difference
    max_nsd_drop: float = MAX_NSD_DROP

    @property
    def refused(self) -> list[Difference]:
        """The differences that make the latency comparison meaningless (``forced`` past)."""
        return [d for d in self.differences if d.refuses]

    @property
    def warnings(self) -> list[Difference]:
        """The differences that leave the latencies comparable (versions, gates, ...)."""
        return [d for d in self.differences if not d.refuses]

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
    old: CaseRecord,
    new: CaseRecord,
    max_slowdown: float,
    max_dice_drop: float,
    max_nsd_drop: float = MAX_NSD_DROP,
) -> CaseChange:
    """Compare one case. Crossing a threshold means: a role's latency grew by more than
    ``max_slowdown`` (a ratio, 1.15 = 15 % slower), the mean Dice fell by more than
    ``max_dice_drop``, the new run lost the Dice it had, a gate that passed now fails, a class's
    NSD fell by more than ``max_nsd_drop`` or a class newly vanished from the candidate's mask
    (:func:`~segbench.results.agreement.agreement_changes`)."""
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
    exceeded += agreement_changes(old.agreement, new.agreement, max_nsd_drop)
    return CaseChange(new.label, old, new, ratios, delta, tuple(exceeded))


def compare_runs(
    old: Run,
    new: Run,
    max_slowdown: float = 1.15,
    max_dice_drop: float = 0.002,
    *,
    force: bool = False,
    max_nsd_drop: float = MAX_NSD_DROP,
) -> Comparison:
    """Case by case comparison of two runs (see :func:`compare_case` for the thresholds).
    Cases present in one run only are listed, not counted as regressions. Runs measured
    differently (another CPU type, an injection, other timing, model or weights: see
    :mod:`segbench.results.mismatch`) raise
    :class:`~segbench.results.mismatch.RunsNotComparable` unless ``force``."""
    if not max_slowdown > 0:
        raise ValueError(
            f"max_slowdown must be > 0 (a ratio, 1.15 = 15 % slower), got {max_slowdown}"
        )
    if not max_dice_drop >= 0:
        raise ValueError(f"max_dice_drop must be >= 0, got {max_dice_drop}")
    found = check_comparable(old, new, force)
    old_cases, new_cases = old.by_key(), new.by_key()  # by case and candidate name
    changes = tuple(
        compare_case(old_cases[c], new_cases[c], max_slowdown, max_dice_drop, max_nsd_drop)
        for c in new_cases
        if c in old_cases
    )
    return Comparison(
        old=old,
        new=new,
        max_slowdown=max_slowdown,
        max_dice_drop=max_dice_drop,
        changes=changes,
        only_old=tuple(r.label for c, r in old_cases.items() if c not in new_cases),
        only_new=tuple(r.label for c, r in new_cases.items() if c not in old_cases),
        differences=tuple(found),
        forced=force and any(d.refuses for d in found),
        max_nsd_drop=max_nsd_drop,
    )


def summary_numbers(rows: Sequence[CaseRecord]) -> dict[str, float | int | None]:
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
