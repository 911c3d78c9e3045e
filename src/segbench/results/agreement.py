"""A case's agreement in millimetres as a saved run holds it: :class:`AgreementRecord`, written
into the candidate's ``extra_info`` under ``"agreement"`` (:func:`agreement_info`) and read back
(:meth:`AgreementRecord.from_info`). Runs saved before it have no ``"agreement"`` key and load
with ``None``. Nothing here imports torch.

Layout (labels as strings, distances in mm, volumes in mL)::

    "agreement": {
      "classes": {"3": {"nsd": 0.998, "tolerance_mm": 1.0, "hd95_mm": 0.0 | null,
                        "reference_ml": 1523.1, "candidate_ml": 1523.4,
                        "volume_diff_pct": 0.02 | null, "components_change": 0,
                        "presence": "present" | "vanished" | "appeared", "voxels": 402113}},
      "vanished": ["5"], "appeared": [],
      "noise_floor": {"reference": FLOOR, "candidate": FLOOR},
      "truth": {"reference": TRUTH, "candidate": TRUTH},
      "seconds": 0.41}

    FLOOR = {"changed_voxels": 0, "min_nsd": 1.0, "max_hd95_mm": 0.0,
             "max_volume_diff_pct": 0.0, "vanished": 0}

    TRUTH = {"3": {"nsd": 0.91, "hd95_mm": 4.24 | null, "volume_diff_pct": -1.2 | null,
                   "presence": "present", "voxels": 401200}}

``hd95_mm`` is null for a class on one side only (infinite), ``volume_diff_pct`` for a class
that appeared. A noise floor compares two runs of one role on the same volume (the runtime's
own non-determinism); it is absent where the role ran once. ``truth`` (informational, no gate
reads it) holds each role's mask against the case's ground truth, per class in the model's
numbering (the truth is the first side: ``vanished`` means in the truth and not in the role's
mask, the volume difference is in % of the truth's); it is absent for a case without a usable
ground truth and in runs saved before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segbench.scoring.surface import PRESENT, Agreement

FLOOR_KEYS = ("changed_voxels", "min_nsd", "max_hd95_mm", "max_volume_diff_pct", "vanished")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _finite(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


@dataclass(frozen=True)
class ClassFigures:
    """One class's saved agreement figures (see the module's layout)."""

    nsd: float
    tolerance_mm: float
    hd95_mm: float | None  # None: present on one side only
    reference_ml: float
    candidate_ml: float
    volume_diff_pct: float | None  # None: appeared
    components_change: int
    presence: str
    voxels: int

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ClassFigures | None:
        nsd = _num(info.get("nsd"))
        if nsd is None:
            return None
        voxels = info.get("voxels")
        change = info.get("components_change")
        return cls(
            nsd=nsd,
            tolerance_mm=_num(info.get("tolerance_mm")) or 0.0,
            hd95_mm=_num(info.get("hd95_mm")),
            reference_ml=_num(info.get("reference_ml")) or 0.0,
            candidate_ml=_num(info.get("candidate_ml")) or 0.0,
            volume_diff_pct=_num(info.get("volume_diff_pct")),
            components_change=change if isinstance(change, int) else 0,
            presence=str(info.get("presence") or PRESENT),
            voxels=voxels if isinstance(voxels, int) else 0,
        )


@dataclass(frozen=True)
class TruthFigures:
    """One class's saved figures of a role's mask against the ground truth (``TRUTH``)."""

    nsd: float
    hd95_mm: float | None  # None: on one side only
    volume_diff_pct: float | None  # None: not in the truth
    presence: str
    voxels: int

    @classmethod
    def from_info(cls, info: Any) -> TruthFigures | None:
        nsd = _num(info.get("nsd")) if isinstance(info, Mapping) else None
        if nsd is None:
            return None
        voxels = info.get("voxels")
        return cls(
            nsd=nsd,
            hd95_mm=_num(info.get("hd95_mm")),
            volume_diff_pct=_num(info.get("volume_diff_pct")),
            presence=str(info.get("presence") or PRESENT),
            voxels=voxels if isinstance(voxels, int) and not isinstance(voxels, bool) else 0,
        )


def _truth_figures(value: Any) -> dict[str, dict[str, TruthFigures]]:
    if not isinstance(value, Mapping):
        return {}
    return {
        str(role): {
            str(k): f for k, v in classes.items() if (f := TruthFigures.from_info(v)) is not None
        }
        for role, classes in value.items()
        if isinstance(classes, Mapping)
    }


@dataclass(frozen=True)
class AgreementRecord:
    """A case's per-class agreement in mm (by label string), its noise floors (by role) and
    the seconds the figures took."""

    classes: Mapping[str, ClassFigures]
    noise_floor: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    seconds: float | None = None
    truth: Mapping[str, Mapping[str, TruthFigures]] = field(default_factory=dict)  # by role

    @property
    def vanished(self) -> list[str]:
        return [k for k, c in self.classes.items() if c.presence == "vanished"]

    @property
    def appeared(self) -> list[str]:
        return [k for k, c in self.classes.items() if c.presence == "appeared"]

    def min_nsd(self, min_voxels: int = 0) -> float | None:
        """Lowest NSD over the classes of at least ``min_voxels`` voxels (None: none)."""
        values = [c.nsd for c in self.classes.values() if c.voxels >= min_voxels]
        return min(values) if values else None

    def worst_nsd(self, min_voxels: int = 0) -> tuple[str, float] | None:
        """The label with the lowest NSD (ties: the lower label) and its NSD."""
        sized = {k: c for k, c in self.classes.items() if c.voxels >= min_voxels}
        if not sized:
            return None
        label = min(sized, key=lambda k: (sized[k].nsd, int(k) if k.isdigit() else 1 << 30))
        return label, sized[label].nsd

    def max_hd95_mm(self, min_voxels: int = 0) -> float | None:
        values = [c.hd95_mm for c in self.classes.values() if c.voxels >= min_voxels and c.hd95_mm]
        return max(values) if values else (0.0 if self.classes else None)

    def max_volume_diff_pct(self, min_voxels: int = 0) -> float | None:
        values = [
            abs(c.volume_diff_pct)
            for c in self.classes.values()
            if c.voxels >= min_voxels and c.volume_diff_pct is not None and c.presence == PRESENT
        ]
        return max(values) if values else (0.0 if self.classes else None)

    @classmethod
    def from_info(cls, info: Any) -> AgreementRecord | None:
        """The record of a saved ``"agreement"`` value (None when absent or not an object)."""
        if not isinstance(info, Mapping) or not isinstance(info.get("classes"), Mapping):
            return None
        classes = {
            str(k): figures
            for k, v in info["classes"].items()
            if isinstance(v, Mapping) and (figures := ClassFigures.from_info(v)) is not None
        }
        return cls(
            classes=classes,
            noise_floor=_nested_numbers(info.get("noise_floor")),
            seconds=_num(info.get("seconds")),
            truth=_truth_figures(info.get("truth")),
        )

    def truth_worst(self, role: str, min_voxels: int = 0) -> tuple[str, float, float | None] | None:
        """``role``'s mask against the ground truth over the classes of at least ``min_voxels``
        voxels: the label with the lowest NSD (ties: the lower label), that NSD and the largest
        finite HD95 (mm) of those classes; None without truth figures for the role."""
        sized = {k: c for k, c in self.truth.get(role, {}).items() if c.voxels >= min_voxels}
        if not sized:
            return None
        label = min(sized, key=lambda k: (sized[k].nsd, int(k) if k.isdigit() else 1 << 30))
        hd = [c.hd95_mm for c in sized.values() if c.hd95_mm is not None]
        return label, sized[label].nsd, max(hd) if hd else None


def _nested_numbers(value: Any) -> dict[str, dict[str, float]]:
    if not isinstance(value, Mapping):
        return {}
    return {
        str(role): {str(k): n for k, v in figures.items() if (n := _num(v)) is not None}
        for role, figures in value.items()
        if isinstance(figures, Mapping)
    }


def noise_floor(
    first: np.ndarray, second: np.ndarray, agreement: Agreement | None
) -> dict[str, float]:
    """The saved noise floor of two masks of one role (``agreement`` between them, ``None``
    when the masks are equal voxel for voxel)."""
    changed = int(np.count_nonzero(first != second))
    if agreement is None:
        return {
            "changed_voxels": changed,
            "min_nsd": 1.0,
            "max_hd95_mm": 0.0,
            "max_volume_diff_pct": 0.0,
            "vanished": 0,
        }
    return {
        "changed_voxels": changed,
        "min_nsd": round(agreement.min_nsd(), 6),
        "max_hd95_mm": round(agreement.max_hd95_mm(), 4),
        "max_volume_diff_pct": round(agreement.max_volume_diff_pct(), 4),
        "vanished": len(agreement.vanished),
    }


def truth_info(found: Agreement) -> dict[str, dict[str, Any]]:
    """A role's saved figures against the ground truth (``TRUTH`` in the module's layout) from
    ``agreement(truth, role's mask, ...)``."""
    return {
        str(c.label): {
            "nsd": round(c.nsd, 6),
            "hd95_mm": _finite(c.hd95_mm, 4),
            "volume_diff_pct": _finite(c.volume_diff_pct, 4),
            "presence": c.presence,
            "voxels": c.voxels,
        }
        for c in found.per_class
    }


def agreement_info(
    agreement: Agreement,
    floors: Mapping[str, Mapping[str, float]] | None = None,
    seconds: float | None = None,
    truth: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``"agreement"`` value of the candidate's ``extra_info`` (the module's layout);
    ``truth``: each role's :func:`truth_info`, saved only when there is any."""
    classes = {
        str(c.label): {
            "nsd": round(c.nsd, 6),
            "tolerance_mm": c.tolerance_mm,
            "hd95_mm": _finite(c.hd95_mm, 4),
            "reference_ml": round(c.reference_ml, 4),
            "candidate_ml": round(c.candidate_ml, 4),
            "volume_diff_pct": _finite(c.volume_diff_pct, 4),
            "components_change": c.components_change,
            "presence": c.presence,
            "voxels": c.voxels,
        }
        for c in agreement.per_class
    }
    saved = {
        "classes": classes,
        "vanished": [str(k) for k in agreement.vanished],
        "appeared": [str(k) for k in agreement.appeared],
        "noise_floor": {role: dict(f) for role, f in (floors or {}).items()},
        "seconds": round(seconds, 4) if seconds is not None else None,
    }
    if truth:
        saved["truth"] = {role: dict(f) for role, f in truth.items()}
    return saved


MAX_NSD_DROP = 0.01  # segbench compare's default --max-nsd-drop


def agreement_changes(
    old: AgreementRecord | None, new: AgreementRecord | None, max_nsd_drop: float = MAX_NSD_DROP
) -> list[str]:
    """What ``segbench compare`` reports between two runs' figures of a case, one sentence
    each: a class that vanished from the candidate's mask in the new run and not in the old,
    and a class whose NSD fell by more than ``max_nsd_drop`` (both runs at the same
    tolerance). Empty when either run has no figures."""
    if old is None or new is None:
        return []
    out = []
    gone = [k for k in new.vanished if k not in old.vanished]
    if gone:
        out.append(f"newly vanished from the candidate's mask: label(s) {', '.join(gone)}")
    drops = [
        (k, o.nsd, n.nsd, n.tolerance_mm)
        for k, n in new.classes.items()
        if (o := old.classes.get(k)) is not None
        and k not in gone
        and o.tolerance_mm == n.tolerance_mm
        and o.nsd - n.nsd > max_nsd_drop
    ]
    if drops:
        shown = ", ".join(f"label {k} {o:.4f} -> {n:.4f} at {t:g} mm" for k, o, n, t in drops[:5])
        more = f" (+{len(drops) - 5} more)" if len(drops) > 5 else ""
        out.append(f"NSD drops more than --max-nsd-drop {max_nsd_drop:g}: {shown}{more}")
    return out
