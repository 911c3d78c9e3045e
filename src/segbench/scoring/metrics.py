"""Agreement between two label maps and between two logit volumes.

Label maps are integer arrays of the same shape (any layout); class 0 is the background and is
not scored. Rule for empty classes: a class absent from both maps has no Dice (it is left out,
not scored 1.0); a class present in only one map scores 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassDice:
    label: int
    dice: float
    reference_voxels: int
    candidate_voxels: int

    @property
    def voxels(self) -> int:
        """The class's size, the larger of its two voxel counts."""
        return max(self.reference_voxels, self.candidate_voxels)


@dataclass(frozen=True)
class DiceResult:
    """Per-class Dice (classes present in either map) and their unweighted mean."""

    per_class: tuple[ClassDice, ...]
    flipped_fraction: float  # voxels whose label differs / all voxels

    @property
    def mean(self) -> float:
        """Mean over scored classes; 1.0 when no foreground class is present in either map."""
        if not self.per_class:
            return 1.0
        return float(np.mean([c.dice for c in self.per_class]))

    def worst(self, n: int = 3, min_voxels: int = 0) -> list[ClassDice]:
        eligible = [c for c in self.per_class if c.voxels >= min_voxels]
        return sorted(eligible, key=lambda c: (c.dice, -c.voxels))[:n]


def compute_dice(
    reference: np.ndarray, candidate: np.ndarray, labels: Iterable[int] | None = None
) -> DiceResult:
    """Dice per foreground class between two label maps of equal shape.

    ``labels`` restricts the classes considered (default: every non-zero label in either map).
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"label maps differ in shape: {reference.shape} vs {candidate.shape}")
    ref = reference.ravel()
    cand = candidate.ravel()
    n = int(max(ref.max(initial=0), cand.max(initial=0))) + 1
    # one pass: joint histogram of (reference, candidate) labels
    joint = np.bincount(ref.astype(np.int64) * n + cand, minlength=n * n).reshape(n, n)
    ref_count = joint.sum(axis=1)
    cand_count = joint.sum(axis=0)
    wanted = range(1, n) if labels is None else [int(k) for k in labels if 0 < int(k) < n]
    per_class = []
    for k in wanted:
        r, c = int(ref_count[k]), int(cand_count[k])
        if r == 0 and c == 0:
            continue
        per_class.append(ClassDice(k, 2.0 * float(joint[k, k]) / (r + c), r, c))
    flipped = 1.0 - float(np.trace(joint)) / max(1, ref.size)
    return DiceResult(tuple(per_class), flipped)


@dataclass(frozen=True)
class LogitDiff:
    """Max and mean absolute logit difference over the values finite in both arrays, and how
    many values of each are NaN or infinite (a non-finite logit is no difference of 0)."""

    max_abs: float
    mean_abs: float
    reference_non_finite: int = 0
    candidate_non_finite: int = 0

    @property
    def non_finite(self) -> int:
        return self.reference_non_finite + self.candidate_non_finite


def slabs(shape: tuple[int, ...], elements: int = 1 << 22) -> list[slice]:
    """Slices along axis 1 of a ``(K, X, ...)`` array, each holding about ``elements`` values
    (at least one row), so work on a K x grid array needs no K x grid temporary."""
    per_row = int(np.prod(shape[:1] + shape[2:], dtype=np.int64))
    step = max(1, elements // max(1, per_row))
    return [slice(i, i + step) for i in range(0, shape[1], step)] if len(shape) > 1 else []


def logit_diff(reference: np.ndarray, candidate: np.ndarray) -> LogitDiff:
    """Max and mean absolute difference between two float logit arrays of equal shape
    ``(K, X, Y, Z)`` (any array of two or more axes), computed slab by slab along axis 1, over
    the values finite in both; NaN and infinite values are counted per array instead."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logits differ in shape: {reference.shape} vs {candidate.shape}")
    if reference.size == 0:
        return LogitDiff(0.0, 0.0)
    if reference.ndim < 2:
        reference, candidate = reference[np.newaxis], candidate[np.newaxis]
    peak, total, count, bad_ref, bad_cand = 0.0, 0.0, 0, 0, 0
    for s in slabs(reference.shape):
        ref, cand = reference[:, s], candidate[:, s]
        ok_ref, ok_cand = np.isfinite(ref), np.isfinite(cand)
        bad_ref += int(ok_ref.size - np.count_nonzero(ok_ref))
        bad_cand += int(ok_cand.size - np.count_nonzero(ok_cand))
        both = ok_ref & ok_cand
        diff = np.abs(ref[both] - cand[both]) if not both.all() else np.abs(ref - cand)
        peak = max(peak, float(diff.max(initial=0.0)))
        total += float(diff.sum(dtype=np.float64))
        count += int(diff.size)
    return LogitDiff(peak, total / count if count else 0.0, bad_ref, bad_cand)
