"""The agreement figures in the saved run's readers: the report's section and plot (readable at
118 classes), ``segbench compare`` (an NSD drop, a newly vanished class) and export-gab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segbench.cli import agreement_entries
from segbench.results.agreement import agreement_changes
from segbench.results.agreement_report import agreement_section
from segbench.results.compare import compare_case
from segbench.results.record import CaseRecord
from segbench.settings.config import Gates


def saved(nsd: dict[str, float], vanished: tuple[str, ...] = ()) -> dict[str, Any]:
    classes = {
        k: {
            "nsd": 0.0 if k in vanished else v,
            "tolerance_mm": 1.0,
            "hd95_mm": None if k in vanished else 1.5,
            "reference_ml": 100.0 + int(k),
            "candidate_ml": 0.0 if k in vanished else 100.5 + int(k),
            "volume_diff_pct": -100.0 if k in vanished else 0.5,
            "components_change": 0,
            "presence": "vanished" if k in vanished else "present",
            "voxels": 5000,
        }
        for k, v in nsd.items()
    }
    return {
        "classes": classes,
        "vanished": list(vanished),
        "appeared": [],
        "noise_floor": {
            "reference": {"changed_voxels": 0, "min_nsd": 1.0},
            "candidate": {"changed_voxels": 12, "min_nsd": 0.9991},
        },
        "seconds": 0.3,
    }


def record(case: str, agreement: dict[str, Any] | None, gates: dict[str, bool]) -> CaseRecord:
    info: dict[str, Any] = {
        "case": case,
        "model": "demo",
        "mean_dice": 0.999,
        "class_dice": {"1": 0.999},
        "gates": gates,
        "candidate_s": 1.0,
        "reference_s": 2.0,
    }
    if agreement is not None:
        info["agreement"] = agreement
    return CaseRecord.from_extra_info(case, {"candidate": info, "reference": {"case": case}})


def test_report_section_lists_cases_classes_and_noise_floors() -> None:
    rows = [
        record("a.nii.gz", saved({"1": 0.999, "2": 0.95}), {"nsd": True}),
        record("b.nii.gz", saved({"1": 0.97, "2": 0.99}, vanished=("2",)), {"vanished": False}),
        record("old.nii.gz", None, {"dice": True}),  # saved before the figures: left out
    ]
    text = "\n".join(agreement_section(rows, {"1": "spleen", "2": "kidney"}, Gates()))
    assert "## Agreement in millimetres" in text and "old.nii.gz" not in text
    assert "| a.nii.gz | kidney 0.9500 | 1.50 mm | 0.50 % | - | - | identical |" in text
    assert "| b.nii.gz | kidney 0.0000 |" in text and "| kidney | 2 | 0.0000 (b.nii.gz)" in text
    assert "12 vox, NSD 0.9991" in text and "1 of 2" in text
    assert agreement_section([rows[2]], None, Gates()) == []


def test_compare_reports_an_nsd_drop_and_a_newly_vanished_class() -> None:
    old = record("a", saved({"1": 0.999, "2": 0.998, "3": 0.99}), {"nsd": True})
    new = record("a", saved({"1": 0.95, "2": 0.997, "3": 0.99}, vanished=("3",)), {"nsd": True})
    change = compare_case(old, new, 1.15, 0.002)
    text = "; ".join(change.exceeded)
    assert change.regressed
    assert "newly vanished from the candidate's mask: label(s) 3" in text
    assert "label 1 0.9990 -> 0.9500 at 1 mm" in text and "label 2" not in text
    assert not compare_case(old, old, 1.15, 0.002).regressed
    assert "label 1" not in "; ".join(compare_case(old, new, 1.15, 0.002, 0.1).exceeded)
    assert agreement_changes(None, new.agreement) == []  # an old run without the figures


def test_export_gab_carries_the_lowest_nsd() -> None:
    r = record("a", saved({"1": 0.999, "2": 0.95}, vanished=()), {"nsd": True, "vanished": True})
    (entry,) = agreement_entries(r, "a", "")
    assert entry["name"] == "a - lowest NSD" and entry["value"] == 0.95
    assert "label 2 at 1 mm" in entry["extra"] and "gate passed" in entry["extra"]
    assert agreement_entries(record("a", None, {}), "a", "") == []


def test_nsd_plot_is_readable_at_118_classes(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    from segbench.results.agreement_plots import plot_class_nsd

    nsd = {str(k): 1.0 - (k % 7) * 0.01 for k in range(1, 119)}
    rows = [record(f"case{i}.nii.gz", saved(nsd, vanished=("5",)), {}) for i in range(3)]
    names = {str(k): f"class_{k}" for k in range(1, 119)}
    path = plot_class_nsd(rows, tmp_path / "nsd.png", class_names=names, gates=Gates())
    width, height = Image.open(path).size
    assert width <= 4000 and height <= 4000 and height > width  # classes down the rows


def test_nsd_plot_without_figures_says_why(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from segbench.results.agreement_plots import plot_class_nsd
    from segbench.results.canvas import PlotError

    with pytest.raises(PlotError, match=r"no case of the run has NSD figures.*Fix"):
        plot_class_nsd([record("a", None, {})], tmp_path / "x.png")
