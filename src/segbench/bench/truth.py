"""A case's ground truth: read on the volume's grid, its labels checked against the model's
classes, and each role's mask scored against it (mean Dice; agreement in mm), once per mask.

The figures against the truth are informational (no gate reads them): they say how far each
side is from the annotation, beside how far the candidate is from the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segbench.bench.segmenters import relabel
from segbench.inputs.limits import DEFAULT_MAX_VOXELS
from segbench.inputs.volumes import (
    Volume,
    check_same_grid,
    check_truth_labels,
    label_names,
    load_volume,
)
from segbench.pipeline.predict import Prediction
from segbench.results.agreement import truth_info
from segbench.scoring.metrics import compute_dice
from segbench.scoring.surface import agreement
from segbench.settings.config import Gates
from segbench.settings.labels import pair_classes

LABELS_DIFFER = "differ"


def truth_label_check(
    truth: np.ndarray, names: Mapping[int, str] | None, class_names: Sequence[str]
) -> str:
    """Whether a ground truth's labels mean the model's classes: ``"match"`` (every label
    present has the model's class name), ``"unnamed"`` (no label table: taken as the model's
    numbering) or ``"differ: ..."`` (then Dice against it would be meaningless)."""
    if names is None:
        return "unnamed"
    present = [int(v) for v in np.unique(truth) if v != 0]
    wrong = [
        f"{v} is {names.get(v, '?')!r} in the truth, "
        + (f"{class_names[v]!r} for the model" if v < len(class_names) else "not a model class")
        for v in present
        if v >= len(class_names) or names.get(v) != class_names[v]
    ]
    if wrong:
        more = f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""
        return f"{LABELS_DIFFER}: label " + "; ".join(wrong[:3]) + more
    return "match"


@dataclass(frozen=True)
class Truth:
    """A case's ground truth on the volume's grid, and whether its labels mean the model's."""

    labels: np.ndarray
    source: str
    label_check: str  # see truth_label_check

    def info(self) -> dict[str, str]:
        """Its saved form (the extra_info's ``ground_truth``)."""
        return {"file": self.source, "grid": "matches", "labels": self.label_check}


def load_truth(
    path: Path,
    volume: Volume,
    class_names: Sequence[str],
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
    names: Mapping[int, str] | None = None,
) -> Truth:
    """Read a label map, refuse it off ``volume``'s grid or with labels that are not classes
    (:func:`check_truth_labels`), and check its label names (``names``, else the file's own
    label table) against the model's classes."""
    labels = load_volume(path, max_voxels, expect_ct=False)
    check_same_grid(labels, volume)
    names = names if names is not None else label_names(labels.original)
    # before the uint8 cast, which would wrap a negative or fractional label into a class; a
    # truth with its own label table is held to 0..255 (its names are checked just below)
    check_truth_labels(labels.array, labels.source, None if names is not None else len(class_names))
    array = labels.array.astype(np.uint8)
    return Truth(array, labels.source, truth_label_check(array, names, class_names))


class TruthScores:
    """Each slot's last mask scored against a usable ground truth, once per mask.
    ``class_map(slot)`` is the slot's class numbering; ``class_names`` the model's."""

    def __init__(
        self,
        truth: Truth | None,
        class_names: Sequence[str],
        class_map: Callable[[str], Mapping[int, str]],
        gates: Gates,
        spacing: tuple[float, float, float],
    ) -> None:
        usable = (
            truth is not None
            and len(class_names) > 1
            and not truth.label_check.startswith(LABELS_DIFFER)
        )
        self.truth = truth if usable else None
        self.card_names = dict(enumerate(class_names))
        self.class_map = class_map
        self.gates = gates
        self.spacing = spacing
        self._dice: dict[str, tuple[Prediction, float]] = {}  # slot -> (prediction, Dice)
        # slot -> (the mask scored, its saved figures against the truth)
        self._agreement: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def _paired(self, slot: str, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The truth and ``labels`` in one numbering (classes paired by name)."""
        assert self.truth is not None
        pairing = pair_classes(self.card_names, self.class_map(slot))
        truth_labels, paired = relabel(self.truth.labels, labels, pairing)
        return truth_labels, paired, list(pairing.names)

    def dice(self, slot: str, pred: Prediction | None) -> float | None:
        """Mean Dice of ``pred`` (``slot``'s last mask) against the truth, or ``None`` without
        a usable truth."""
        if pred is None or self.truth is None:
            return None
        cached = self._dice.get(slot)
        if cached is None or cached[0] is not pred:
            truth_labels, labels, _ = self._paired(slot, pred.labels)
            cached = (pred, compute_dice(truth_labels, labels).mean)
            self._dice[slot] = cached
        return cached[1]

    def agreement(self, slot: str, pred: Prediction | None) -> dict[str, Any] | None:
        """``pred`` (``slot``'s last mask as the runtime gave it, without injected mask edits)
        against the truth in mm, per class in the model's numbering, in its saved form
        (:func:`~segbench.results.agreement.truth_info`), or ``None`` without a usable truth.
        Computed once per mask: a mask equal voxel for voxel to one already scored in the same
        numbering (the reference's next run, or a candidate's mask equal to the reference's)
        reuses its figures."""
        if pred is None or self.truth is None:
            return None
        numbering = self.class_map(slot)
        for other in (slot, *self._agreement):
            cached = self._agreement.get(other)
            if (
                cached is not None
                and (other == slot or self.class_map(other) == numbering)
                and (cached[0] is pred.labels or np.array_equal(cached[0], pred.labels))
            ):
                self._agreement[slot] = cached
                return cached[1]
        truth_labels, labels, names = self._paired(slot, pred.labels)
        tolerances = {k: self.gates.nsd_tolerance(n, k) for k, n in enumerate(names) if k}
        found = agreement(truth_labels, labels, self.spacing, tolerances, count_components=False)
        saved = truth_info(found)  # the saved truth figures hold no component counts
        self._agreement[slot] = (pred.labels, saved)
        return saved
