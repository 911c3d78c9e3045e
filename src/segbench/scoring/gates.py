"""The gates: mask agreement (Dice; in millimetres: NSD, HD95, volume, vanished classes) and
speed-up. Each returns a :class:`GateResult` whose
message is what a person reads when CI goes red; it ends with what to do about it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segbench.scoring.metrics import DiceResult, LogitDiff
from segbench.scoring.stats import (
    Estimate,
    PairSample,
    Verdict,
    busy,
    change_interval,
    decision_confidence,
    speedup_interval,
    verdict,
)
from segbench.scoring.surface import PRESENT, Agreement, ClassAgreement
from segbench.settings.config import Gates


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    message: str


def _class_name(label: int, class_names: Sequence[str]) -> str:
    return class_names[label] if label < len(class_names) else f"label {label}"


def check_dice(
    case: str,
    dice: DiceResult,
    gates: Gates,
    class_names: Sequence[str],
    logits: LogitDiff | None = None,
) -> GateResult:
    """Fail when the mean Dice < ``dice_min`` or any class with at least ``min_class_voxels``
    voxels (in either mask) is below ``class_dice_min``, or when either backend's logits hold
    NaN or infinite values (named as such, never a difference of 0)."""
    low_classes = [
        c
        for c in dice.per_class
        if c.voxels >= gates.min_class_voxels and c.dice < gates.class_dice_min
    ]
    non_finite = logits is not None and logits.non_finite > 0
    passed = dice.mean >= gates.dice_min and not low_classes and not non_finite
    worst = dice.worst(3)
    worst_text = (
        ", ".join(
            f"{_class_name(c.label, class_names)} {c.dice:.4f} ({c.reference_voxels} ref / "
            f"{c.candidate_voxels} cand voxels)"
            for c in worst
        )
        or "no foreground class in either mask"
    )
    logit_text = _logit_text(logits)
    message = (
        f"{case}: mean Dice {dice.mean:.5f} (gate dice_min {gates.dice_min}); worst classes: "
        f"{worst_text}; class gate class_dice_min {gates.class_dice_min} for classes of >= "
        f"{gates.min_class_voxels} voxels"
        + (
            f" failed for {', '.join(_class_name(c.label, class_names) for c in low_classes)}"
            if low_classes
            else ""
        )
        + f"; {logit_text}{dice.flipped_fraction:.3%} of voxels changed label."
    )
    if non_finite:
        message += (
            " Fix: a backend produced NaN or infinite logits (an overflow in float16, a broken "
            "export or a bad weight): check the ONNX file and its precision against the "
            "checkpoint; no threshold can accept non-finite logits."
        )
    elif not passed:
        message += (
            " Fix: the candidate no longer reproduces the reference: re-export the ONNX file from "
            "the current checkpoint and compare the two profiles in benchmarks.json; if the change "
            'is intended, lower the thresholds for this case under "cases" in benchmarks.json.'
        )
    return GateResult("dice", passed, message)


def _logit_text(logits: LogitDiff | None) -> str:
    """The logit difference for the Dice gate's message; NaN/inf logits are named as such."""
    if logits is None:
        return ""
    text = f"max |logit diff| {logits.max_abs:.3g}, mean {logits.mean_abs:.3g}"
    if not logits.non_finite:
        return text + "; "
    counts = [
        f"{n:,} in the {role}"
        for role, n in (
            ("reference", logits.reference_non_finite),
            ("candidate", logits.candidate_non_finite),
        )
        if n
    ]
    return f"NaN/inf logits: {' and '.join(counts)} (gate failed); {text} over the finite ones; "


def speedup(reference_s: float, candidate_s: float) -> float:
    return reference_s / candidate_s if candidate_s > 0 else float("inf")


@dataclass(frozen=True)
class BaselineSpeedup:
    """A case's speed-up in a saved run of the same machine type, where it came from and,
    for runs that saved them, its pair speed-ups."""

    speedup: float
    source: str
    ratios: tuple[float, ...] = ()

    @property
    def pairs(self) -> PairSample:
        return PairSample.from_ratios(self.ratios or (self.speedup,))


@dataclass(frozen=True)
class SpeedupCheck:
    """A case's speed-up gate: the verdict and the statistics behind it."""

    gate: GateResult
    pairs: PairSample
    interval: Estimate | None
    change: Estimate | None  # speed-up / baseline speed-up, with a baseline
    verdict: Verdict | None  # against the baseline
    baseline_pairs: PairSample | None = None


FIX_SLOWER = (
    " Fix: the candidate got slower relative to the reference: check its provider, threads and "
    "graph_level in benchmarks.json and profile the stage breakdown in the benchmark's "
    "extra_info; if the change is intended, save a new baseline run."
)
FIX_INCONCLUSIVE = (
    " Fix: the pairs are too noisy to tell; raise timing.budget_s (and timing.max_rounds) in "
    "benchmarks.json, run on a quieter runner, or set gates.inconclusive_fails to false."
)


FIX_BUSY = (
    " Fix: other processes took the cores during the pairs left out: run on a quieter runner "
    "(or one job per machine), raise timing.budget_s so that more pairs are re-measured, or "
    "set gates.inconclusive_fails to false."
)


def _fix(found: Verdict | None) -> str:
    if found is Verdict.BUSY:
        return FIX_BUSY
    return FIX_INCONCLUSIVE if found is Verdict.INCONCLUSIVE else FIX_SLOWER


def left_out_text(left_out: int, pairs: int) -> str:
    """``; 3 of 9 pairs left out (machine busy)``, or nothing."""
    return f"; {left_out} of {pairs} pairs left out (machine busy)" if left_out else ""


def change_against(cases: Sequence[tuple[PairSample, PairSample]], gates: Gates) -> Estimate | None:
    """The change against a baseline (:func:`~segbench.scoring.stats.change_interval`) with
    the interval its verdict reads: at :func:`~segbench.scoring.stats.decision_confidence` of
    ``gates.confidence``, whose ends are one-sided bounds at ``gates.confidence``."""
    return change_interval(cases, decision_confidence(gates.confidence))


BUSY_SHARE = 0.2  # contended runs per pair measured from which the machine counts as busy


def busy_change(
    change: Estimate | None, contended: int, pairs: int, bias: float
) -> Estimate | None:
    """The change's interval a verdict reads: as measured on a quiet machine; on a busy one,
    widened by ``bias`` (``gates.busy_bias``) each way, the systematic error the uncontended
    pairs of a busy machine still carry (a neighbour that comes and goes changes what each run
    follows; measured in docs/gates.md). Busy: ``contended`` runs (pairs left out, runs run
    again) were at least ``BUSY_SHARE`` of the ``pairs`` measured; one blip in a quiet
    session (1 of 12 pairs) does not widen the interval."""
    if change is None or not bias or not contended or contended < BUSY_SHARE * pairs:
        return change
    low, high = change.low * (1.0 - bias), change.high * (1.0 + bias)
    return Estimate(change.value, low, high, change.confidence)


def judge(change: Estimate | None, point: float, drop_max: float) -> Verdict:
    """The verdict of a change against a baseline: from its interval (:func:`verdict`), or,
    without one (fewer than two pairs, as in runs saved without pair speed-ups), from the
    estimate ``point`` alone: regressed below ``1 - drop_max``, else unchanged."""
    if change is not None:
        return verdict(change, drop_max)
    return Verdict.REGRESSED if point < 1.0 - drop_max else Verdict.UNCHANGED


def _verdict_passes(verdict: Verdict, gates: Gates) -> bool:
    return verdict is Verdict.UNCHANGED or (verdict.inconclusive and not gates.inconclusive_fails)


def check_speedup(
    case: str,
    pairs: PairSample,
    latencies: tuple[float, float],
    gates: Gates,
    estimator: str,
    baseline: BaselineSpeedup | None = None,
    left_out: int = 0,
    rerun: int = 0,
) -> SpeedupCheck:
    """The case's speed-up gate. The speed-up is the geometric mean of the interleaved pairs'
    ratios (:mod:`segbench.scoring.stats`); without pairs, reference / candidate latency. It
    fails when below ``speedup_min``, and, given a baseline run, when its verdict against the
    baseline's at ``speedup_drop_max`` is ``regressed`` (or ``inconclusive`` with
    ``inconclusive_fails``). ``latencies`` are (reference_s, candidate_s) for the message.
    ``pairs`` are the uncontended pairs; ``left_out`` counts the contended ones left out
    (:mod:`segbench.bench.contention`): with none left, nothing is read from the pairs and the
    verdict is ``inconclusive (machine busy)``. ``rerun`` counts contended runs dropped and run
    again: with those or ``left_out``, the verdict allows for ``gates.busy_bias``."""
    if left_out and pairs.n < 2:  # one uncontended pair is no interval
        return _busy_check(case, gates, left_out, left_out + pairs.n, baseline)
    reference_s, candidate_s = latencies
    interval = speedup_interval(pairs, gates.confidence)
    ratio = pairs.speedup if pairs.n else speedup(reference_s, candidate_s)
    shown = interval.text() if interval else f"{ratio:.2f}x"
    message = (
        f"{case}: speed-up {shown} ("
        + (
            f"geometric mean of {pairs.n} interleaved pairs"
            + (f", {gates.confidence:.0%} interval" if interval else "")
            if pairs.n
            else "reference / candidate latency"
        )
        + left_out_text(left_out, pairs.n + left_out)
        + f"; reference {reference_s:.3f} s / candidate {candidate_s:.3f} s, {estimator} of the "
        f"rounds); gate speedup_min {gates.speedup_min}x"
    )
    passed = ratio >= gates.speedup_min
    change = found = None
    if baseline is not None and pairs.n:
        raw = change_against([(pairs, baseline.pairs)], gates)
        change = busy_change(raw, left_out + rerun, pairs.n + left_out, gates.busy_bias)
        point = math.exp(pairs.mean - baseline.pairs.mean)
        found = busy(judge(change, point, gates.speedup_drop_max), left_out, change is not raw)
        against = (
            f"{change.text('')} ({change.confidence:.0%} interval"
            + (
                f", widened by {gates.busy_bias:.0%} each way: busy_bias)"
                if change is not raw
                else ")"
            )
            if change
            else f"{point:.2f} (one pair: no interval)"
        )
        message += (
            f"; baseline {baseline.speedup:.2f}x ({baseline.source}): {against} of it, "
            f"{found.value} (gate speedup_drop_max {gates.speedup_drop_max:.0%})"
        )
        passed = passed and _verdict_passes(found, gates)
    message += "."
    if not passed:
        message += _fix(found)
    return SpeedupCheck(
        GateResult("speedup", passed, message),
        pairs,
        interval,
        change,
        found,
        baseline.pairs if baseline is not None and found is not None else None,
    )


def _busy_check(
    case: str, gates: Gates, left_out: int, total: int, baseline: BaselineSpeedup | None
) -> SpeedupCheck:
    """The speed-up gate when every pair was contended: no figure is read from them."""
    found = Verdict.BUSY
    passed = _verdict_passes(found, gates)
    message = (
        f"{case}: speed-up not measured: {left_out} of {total} pairs were contended (other "
        f"processes took the cores while they ran), fewer than two left; {found.value}."
    ) + ("" if passed else FIX_BUSY)
    return SpeedupCheck(
        GateResult("speedup", passed, message),
        PairSample(()),
        None,
        None,
        found,
        baseline.pairs if baseline is not None else None,
    )


@dataclass(frozen=True)
class SuiteVerdict:
    """The suite's change against its baseline (see :func:`suite_verdict`)."""

    usable: Mapping[str, tuple[PairSample, PairSample]]  # the cases it is read from
    change: Estimate | None  # the interval the verdict read (widened on a busy machine)
    point: float  # geometric mean over the cases of speed-up / baseline speed-up
    verdict: Verdict
    widened: bool = False  # by gates.busy_bias: the machine was busy


def suite_verdict(
    cases: Mapping[str, tuple[PairSample, PairSample]],
    gates: Gates,
    left_out: int = 0,
    rerun: int = 0,
) -> SuiteVerdict | None:
    """The suite's change and verdict at ``suite_speedup_drop_max`` (see
    :func:`check_suite_speedup`), from the cases with pairs (two at least where pairs were
    left out) and a baseline; ``None`` when there is no such case."""
    least = 2 if left_out else 1  # with pairs left out, a case needs an interval of its own
    usable = {c: (s, b) for c, (s, b) in cases.items() if s.n >= least and b.n}
    if not usable:
        return None
    contended = left_out + rerun
    measured = sum(s.n for s, _ in cases.values()) + left_out
    raw = change_against(list(usable.values()), gates)
    change = busy_change(raw, contended, measured, gates.busy_bias)
    point = math.exp(sum(s.mean - b.mean for s, b in usable.values()) / len(usable))
    found = busy(judge(change, point, gates.suite_speedup_drop_max), left_out, change is not raw)
    return SuiteVerdict(usable, change, point, found, change is not raw)


def check_suite_speedup(
    cases: Mapping[str, tuple[PairSample, PairSample]],
    gates: Gates,
    left_out: int = 0,
    rerun: int = 0,
) -> GateResult | None:
    """The whole suite against a baseline run: the geometric mean over the cases of
    speed-up / baseline speed-up, with its interval (each case a (this run's pairs, the
    baseline's pairs) pair, see :func:`~segbench.scoring.stats.change_interval`), and its
    verdict at ``suite_speedup_drop_max``. It fails when ``regressed`` (or ``inconclusive``
    with ``inconclusive_fails``). Where a case has one pair only (a run saved without pair
    speed-ups) there is no interval and the estimate alone is held to the threshold
    (:func:`judge`). ``None`` when no case has a baseline.

    One case's speed-up moves by a tenth between pairs on a shared 2-core runner; a regression
    of the candidate moves every case, so the mean over the cases' pairs separates the two.
    ``left_out`` counts the contended pairs left out of the cases' samples: an inconclusive
    verdict with some left out reads ``inconclusive (machine busy)``, as does a suite where no
    case kept a pair. With contended pairs left out or ``rerun`` contended runs run again, the
    interval is widened by ``gates.busy_bias`` (:func:`busy_change`).
    """
    found = suite_verdict(cases, gates, left_out, rerun)
    if found is None:
        if not left_out:
            return None
        passed = _verdict_passes(Verdict.BUSY, gates)
        message = (
            f"suite: {Verdict.BUSY.value}: no case kept two uncontended pairs ({left_out} "
            "contended pairs left out)."
        )
        return GateResult("suite_speedup", passed, message + ("" if passed else FIX_BUSY))
    passed = _verdict_passes(found.verdict, gates)
    message = _suite_message(found, gates, left_out, rerun)
    return GateResult("suite_speedup", passed, message + ("" if passed else _fix(found.verdict)))


def _suite_message(found: SuiteVerdict, gates: Gates, left_out: int, rerun: int) -> str:
    change, usable = found.change, found.usable
    floor = 1.0 - gates.suite_speedup_drop_max
    shown = change.text("") if change else f"{found.point:.2f} (no interval: a case has one pair)"
    logs = {c: s.mean - b.mean for c, (s, b) in usable.items()}
    worst = sorted(logs, key=logs.__getitem__)[:3]
    return (
        f"suite: {found.verdict.value}: speed-up {shown} x the baseline's (geometric mean over "
        f"{len(usable)} cases"
        + (f", {change.confidence:.0%} interval" if change else "")
        + (f", {left_out} contended pairs left out" if left_out else "")
        + (f", {rerun} contended runs run again" if rerun else "")
        + (
            f", the interval widened by {gates.busy_bias:.0%} each way (busy_bias)"
            if found.widened
            else ""
        )
        + f"; gate suite_speedup_drop_max "
        f"{gates.suite_speedup_drop_max:.0%}: regressed when the interval is below 1 and the "
        f"estimate below {floor:.2f}, unchanged when the interval is above {floor:.2f}); lowest: "
        + ", ".join(
            f"{c} {usable[c][0].speedup:.2f}x vs {usable[c][1].speedup:.2f}x" for c in worst
        )
        + "."
    )


FIX_AGREEMENT = (
    " Fix: the candidate's mask no longer follows the reference's {what}: re-export the ONNX "
    "file from the current checkpoint and compare the two profiles in benchmarks.json; if the "
    'change is intended, {relax} for this case under "cases" in benchmarks.json.'
)


def _listed(items: Sequence[str], limit: int = 5) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _figure_gate(
    name: str, case: str, figure: str, gate: str, failed: Sequence[str], fix: tuple[str, str]
) -> GateResult:
    """An agreement gate's result: ``case: FIGURE (GATE) failed for A, B.`` with the classes
    past its limit listed when there are any (then it fails, and the message ends with
    :data:`FIX_AGREEMENT` for ``fix`` = (what moved, what to relax))."""
    message = f"{case}: {figure} ({gate})" + (f" failed for {_listed(failed)}" if failed else "")
    message += "." + (FIX_AGREEMENT.format(what=fix[0], relax=fix[1]) if failed else "")
    return GateResult(name, not failed, message)


def check_nsd(
    case: str, agreement: Agreement, gates: Gates, class_names: Sequence[str]
) -> GateResult:
    """Fail when a class of at least ``min_class_voxels`` voxels (in either mask) has a
    normalised surface Dice below ``nsd_min`` at its tolerance (``nsd_tolerance_mm``, or the
    class's ``class_nsd_tolerance_mm``). A class present on one side only has NSD 0."""
    sized = sorted(agreement.sized(gates.min_class_voxels), key=lambda c: (c.nsd, c.label))
    low = [c for c in sized if c.nsd < gates.nsd_min]
    shown = [
        f"{_class_name(c.label, class_names)} {c.nsd:.4f} at {c.tolerance_mm:g} mm" for c in low
    ]
    lowest = (
        f"lowest {_class_name(sized[0].label, class_names)} {sized[0].nsd:.4f} at "
        f"{sized[0].tolerance_mm:g} mm"
        if sized
        else f"no class of >= {gates.min_class_voxels} voxels"
    )
    return _figure_gate(
        "nsd",
        case,
        f"normalised surface Dice {lowest}",
        f"gate nsd_min {gates.nsd_min} at nsd_tolerance_mm {gates.nsd_tolerance_mm:g} for "
        f"classes of >= {gates.min_class_voxels} voxels",
        shown,
        (
            "boundaries",
            "lower nsd_min or raise nsd_tolerance_mm (class_nsd_tolerance_mm for one class)",
        ),
    )


def check_hd95(
    case: str, agreement: Agreement, gates: Gates, class_names: Sequence[str]
) -> GateResult:
    """Fail when a class of at least ``min_class_voxels`` voxels present in both masks has an
    HD95 above ``hd95_max_mm`` (a class present on one side only has no finite HD95: the
    ``nsd`` and ``vanished`` gates judge it)."""
    sized = [c for c in agreement.sized(gates.min_class_voxels) if math.isfinite(c.hd95_mm)]
    high = sorted((c for c in sized if c.hd95_mm > gates.hd95_max_mm), key=lambda c: -c.hd95_mm)
    worst = max(sized, key=lambda c: c.hd95_mm, default=None)
    return _figure_gate(
        "hd95",
        case,
        "HD95 "
        + (
            f"highest {_class_name(worst.label, class_names)} {worst.hd95_mm:.2f} mm"
            if worst
            else f"no class of >= {gates.min_class_voxels} voxels in both masks"
        ),
        f"gate hd95_max_mm {gates.hd95_max_mm:g} for classes of >= {gates.min_class_voxels} voxels",
        [f"{_class_name(c.label, class_names)} {c.hd95_mm:.2f} mm" for c in high],
        ("outline", "raise hd95_max_mm"),
    )


def check_volume(
    case: str, agreement: Agreement, gates: Gates, class_names: Sequence[str]
) -> GateResult:
    """Fail when a class of at least ``min_class_voxels`` voxels present in both masks has a
    volume (mL) that differs from the reference's by more than ``volume_diff_max_pct`` %."""
    sized = [c for c in agreement.sized(gates.min_class_voxels) if c.presence == PRESENT]
    off = sorted(
        (c for c in sized if abs(c.volume_diff_pct) > gates.volume_diff_max_pct),
        key=lambda c: -abs(c.volume_diff_pct),
    )
    worst = max(sized, key=lambda c: abs(c.volume_diff_pct), default=None)

    def text(c: ClassAgreement) -> str:
        return (
            f"{_class_name(c.label, class_names)} {c.volume_diff_pct:+.2f} % "
            f"({c.reference_ml:.1f} -> {c.candidate_ml:.1f} mL)"
        )

    return _figure_gate(
        "volume",
        case,
        "volume difference " + (f"largest {text(worst)}" if worst else "no class in both masks"),
        f"gate volume_diff_max_pct {gates.volume_diff_max_pct:g} for classes of >= "
        f"{gates.min_class_voxels} voxels",
        [text(c) for c in off],
        ("volumes", "raise volume_diff_max_pct"),
    )


def check_vanished(
    case: str, agreement: Agreement, gates: Gates, class_names: Sequence[str]
) -> GateResult:
    """Fail when more than ``vanished_max`` classes (of any size) have voxels in the
    reference's mask and none in the candidate's. Classes that appeared (none in the
    reference) are named, not counted."""
    gone = agreement.vanished
    new = agreement.appeared

    def named(labels: Sequence[int]) -> str:
        return _listed(
            [
                f"{_class_name(k, class_names)} ({c.reference_voxels or c.candidate_voxels} voxels)"
                for k in labels
                if (c := agreement.of(k)) is not None
            ]
        )

    passed = len(gone) <= gates.vanished_max
    message = (
        f"{case}: {len(gone)} class(es) vanished from the candidate's mask"
        + (f": {named(gone)}" if gone else "")
        + f" (gate vanished_max {gates.vanished_max}, every class counts)"
        + (f"; appeared: {named(new)}" if new else "")
        + "."
    )
    if not passed:
        message += FIX_AGREEMENT.format(
            what="structures (a class the reference finds is missing)", relax="raise vanished_max"
        )
    return GateResult("vanished", passed, message)


def check_agreement(
    case: str, agreement: Agreement, gates: Gates, class_names: Sequence[str]
) -> list[GateResult]:
    """The four agreement gates in millimetres: ``nsd``, ``hd95``, ``volume``, ``vanished``."""
    return [
        check(case, agreement, gates, class_names)
        for check in (check_nsd, check_hd95, check_volume, check_vanished)
    ]
