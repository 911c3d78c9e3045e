"""The two gates: mask agreement (Dice) and speed-up. Each returns a :class:`GateResult` whose
message is what a person reads when CI goes red; it ends with what to do about it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segbench.scoring.metrics import DiceResult, LogitDiff
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
    voxels (in either mask) is below ``class_dice_min``."""
    low_classes = [
        c
        for c in dice.per_class
        if c.voxels >= gates.min_class_voxels and c.dice < gates.class_dice_min
    ]
    passed = dice.mean >= gates.dice_min and not low_classes
    worst = dice.worst(3)
    worst_text = (
        ", ".join(
            f"{_class_name(c.label, class_names)} {c.dice:.4f} ({c.reference_voxels} ref / "
            f"{c.candidate_voxels} cand voxels)"
            for c in worst
        )
        or "no foreground class in either mask"
    )
    logit_text = (
        f"max |logit diff| {logits.max_abs:.3g}, mean {logits.mean_abs:.3g}; " if logits else ""
    )
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
    if not passed:
        message += (
            " Fix: the candidate no longer reproduces the reference: re-export the ONNX file from "
            "the current checkpoint and compare the two profiles in benchmarks.json; if the change "
            'is intended, lower the thresholds for this case under "cases" in benchmarks.json.'
        )
    return GateResult("dice", passed, message)


def speedup(reference_s: float, candidate_s: float) -> float:
    return reference_s / candidate_s if candidate_s > 0 else float("inf")


@dataclass(frozen=True)
class BaselineSpeedup:
    """A case's speed-up in a saved run of the same machine type, and where it came from."""

    speedup: float
    source: str


def check_speedup(
    case: str,
    reference_s: float,
    candidate_s: float,
    gates: Gates,
    estimator: str,
    baseline: BaselineSpeedup | None = None,
) -> GateResult:
    """Fail when reference latency / candidate latency < ``speedup_min``, or, given a baseline
    run, when it fell more than ``speedup_drop_max`` (a fraction) below the baseline's."""
    ratio = speedup(reference_s, candidate_s)
    absolute_ok = ratio >= gates.speedup_min
    message = (
        f"{case}: speed-up {ratio:.2f}x (reference {reference_s:.3f} s / candidate "
        f"{candidate_s:.3f} s, {estimator} of the interleaved timed rounds); gate speedup_min "
        f"{gates.speedup_min}x"
    )
    relative_ok = True
    if baseline is not None:
        floor = baseline.speedup * (1.0 - gates.speedup_drop_max)
        relative_ok = ratio >= floor
        drop = 1.0 - ratio / baseline.speedup if baseline.speedup > 0 else 0.0
        message += (
            f"; baseline {baseline.speedup:.2f}x ({baseline.source}), "
            f"{'a drop' if drop > 0 else 'a gain'} of {abs(drop):.0%} (gate speedup_drop_max "
            f"{gates.speedup_drop_max:.0%}, floor {floor:.2f}x)"
        )
    passed = absolute_ok and relative_ok
    message += "."
    if not passed:
        message += (
            " Fix: the candidate got slower relative to the reference: check its provider, "
            "threads and graph_level in benchmarks.json and profile the stage breakdown in the "
            "benchmark's extra_info; if the machine is noisy, raise timing.rounds; if the "
            "change is intended, save a new baseline run."
        )
    return GateResult("speedup", passed, message)


def check_suite_speedup(
    ratios: Mapping[str, tuple[float, float]], drop_max: float
) -> GateResult | None:
    """The whole suite against a baseline run: fail when the geometric mean over the cases of
    (speed-up / baseline speed-up) fell more than ``suite_speedup_drop_max`` below 1.

    ``ratios`` maps a case to ``(speed-up, baseline speed-up)``; cases without a baseline are
    left out, and ``None`` is returned when none has one. One case's speed-up can jump by a
    fifth between two processes on the same machine (seen on a 0.6 s case); a regression of the
    candidate moves every case, so the mean over cases separates the two.
    """
    usable = {c: (s, b) for c, (s, b) in ratios.items() if s > 0 and b > 0}
    if not usable:
        return None
    logs = {c: math.log(s / b) for c, (s, b) in usable.items()}
    mean = math.exp(sum(logs.values()) / len(logs))
    floor = 1.0 - drop_max
    passed = mean >= floor
    worst = sorted(logs, key=logs.__getitem__)[:3]
    message = (
        f"suite: speed-up {mean:.2f} x the baseline's (geometric mean over {len(usable)} cases; "
        f"gate suite_speedup_drop_max {drop_max:.0%}, floor {floor:.2f}); "
        "lowest: "
        + ", ".join(f"{c} {usable[c][0]:.2f}x vs {usable[c][1]:.2f}x" for c in worst)
        + "."
    )
    if not passed:
        message += (
            " Fix: the candidate got slower on the whole suite relative to the reference: "
            "profile it (stage breakdown in extra_info) against the baseline run; if the change "
            "is intended, save a new baseline run."
        )
    return GateResult("suite_speedup", passed, message)
