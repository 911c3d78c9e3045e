"""The agreement gates in millimetres (nsd, hd95, volume, vanished): each fails on its injected
mask edit (segbench.bench.inject.edit_mask) and passes on an unchanged mask; their settings in
benchmarks.json; the saved figures."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from segbench.bench.inject import edit_mask, resolve_class
from segbench.bench.runtime import check_tolerance_classes
from segbench.errors import ConfigError, SegbenchError
from segbench.results.agreement import AgreementRecord, agreement_info, noise_floor
from segbench.results.record import CaseRecord, GateFigures
from segbench.scoring.gates import check_agreement, check_hd95, check_nsd, check_vanished
from segbench.scoring.metrics import compute_dice
from segbench.scoring.surface import agreement
from segbench.settings.config import BenchConfig, Gates, parse_config
from segbench.settings.injection import Injection, MaskEdit, parse_injection

NAMES = ("background", "spleen", "kidney", "liver", "adrenal")
SPACING = (1.5, 1.5, 2.0)


def ellipsoid(shape: tuple[int, int, int], centre, semi) -> np.ndarray:
    grid = np.indices(shape)
    return sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, semi, strict=True)) <= 1.0


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """A big liver, a spleen, a kidney and a small adrenal (below min_class_voxels)."""
    shape = (90, 80, 60)
    out = np.zeros(shape, dtype=np.uint8)
    out[ellipsoid(shape, (30, 40, 30), (24, 26, 22))] = 3
    out[ellipsoid(shape, (70, 30, 30), (12, 10, 14))] = 1
    out[ellipsoid(shape, (70, 62, 28), (9, 8, 12))] = 2
    out[ellipsoid(shape, (60, 50, 48), (3, 3, 3))] = 4
    return out


def gates_of(ref: np.ndarray, cand: np.ndarray, gates: Gates | None = None) -> dict[str, bool]:
    found = agreement(ref, cand, SPACING)
    return {g.name: g.passed for g in check_agreement("case", found, gates or Gates(), NAMES)}


def test_unchanged_mask_passes_every_gate(labels: np.ndarray) -> None:
    assert gates_of(labels, labels.copy()) == dict.fromkeys(
        ("nsd", "hd95", "volume", "vanished"), True
    )


def test_eroded_organ_fails_nsd_while_mean_dice_is_high(labels: np.ndarray) -> None:
    eroded = edit_mask(labels, MaskEdit("erode", "liver"), NAMES, SPACING)
    found = agreement(labels, eroded, SPACING)
    result = check_nsd("case", found, Gates(), NAMES)
    assert not result.passed
    assert "liver" in result.message and "nsd_min 0.99" in result.message
    assert "Fix:" in result.message and "nsd_tolerance_mm" in result.message
    liver = found.of(3)
    assert liver is not None and liver.nsd < 0.5 and liver.hd95_mm == pytest.approx(2.0)
    assert compute_dice(labels, eroded).mean > 0.97
    # a wider tolerance for the liver alone (3 mm: one voxel along every axis at once) passes it
    wide = replace(Gates(), class_nsd_tolerance_mm={"liver": 3.0})
    tol = {k: wide.nsd_tolerance(n, k) for k, n in enumerate(NAMES) if k}
    assert check_nsd("case", agreement(labels, eroded, SPACING, tol), wide, NAMES).passed


def test_removed_small_class_fails_vanished_whatever_its_size(labels: np.ndarray) -> None:
    dropped = edit_mask(labels, MaskEdit("drop", "adrenal"), NAMES, SPACING)
    assert int((labels == 4).sum()) < Gates().min_class_voxels  # too small for the other gates
    verdicts = gates_of(labels, dropped)
    assert verdicts == {"nsd": True, "hd95": True, "volume": True, "vanished": False}
    result = check_vanished("case", agreement(labels, dropped, SPACING), Gates(), NAMES)
    assert "adrenal" in result.message and "vanished_max 0" in result.message
    assert "Fix:" in result.message
    assert gates_of(labels, dropped, replace(Gates(), vanished_max=1))["vanished"]


def test_grown_organ_fails_volume(labels: np.ndarray) -> None:
    grown = edit_mask(labels, MaskEdit("grow", "liver", 5.0), NAMES, SPACING)
    liver = agreement(labels, grown, SPACING).of(3)
    assert liver is not None and liver.volume_diff_pct == pytest.approx(5.0, abs=0.01)
    assert np.array_equal(grown[labels != 0], labels[labels != 0])  # only background grew
    verdicts = gates_of(labels, grown)
    assert not verdicts["volume"]
    assert gates_of(labels, grown, replace(Gates(), volume_diff_max_pct=6.0))["volume"]


def test_far_off_piece_fails_hd95(labels: np.ndarray) -> None:
    far = labels.copy()
    far[0:14, 0:14, 0:14] = 1  # a piece of spleen 60+ mm away from the spleen
    found = agreement(labels, far, SPACING)
    result = check_hd95("case", found, Gates(), NAMES)
    assert not result.passed and "spleen" in result.message and "hd95_max_mm 5" in result.message
    assert found.of(1) is not None and found.of(1).components_change == 1  # type: ignore[union-attr]
    assert check_hd95("case", found, replace(Gates(), hd95_max_mm=1000.0), NAMES).passed


def test_appeared_class_is_named_not_counted(labels: np.ndarray) -> None:
    new = labels.copy()
    new[labels == 4] = 0
    result = check_vanished("case", agreement(new, labels, SPACING), Gates(), NAMES)
    assert result.passed and "appeared: adrenal" in result.message


def test_mask_edit_parsing_and_classes() -> None:
    inj = parse_injection(["erode=liver", "drop=2", "grow=liver:7.5", "grow=spleen"])
    assert inj.mask_edits == (
        MaskEdit("erode", "liver"),
        MaskEdit("drop", "2"),
        MaskEdit("grow", "liver", 7.5),
        MaskEdit("grow", "spleen", 5.0),
    )
    assert inj.active and inj.describe() == "erode=liver, drop=2, grow=liver:7.5, grow=spleen:5"
    assert not Injection().mask_edits
    assert resolve_class(MaskEdit("drop", "2"), NAMES) == 2
    assert resolve_class(MaskEdit("drop", "liver"), NAMES) == 3
    with pytest.raises(SegbenchError, match=r"'lung' is not a class of the model.*Fix"):
        resolve_class(MaskEdit("erode", "lung"), NAMES)
    with pytest.raises(SegbenchError, match="not a class"):
        resolve_class(MaskEdit("drop", "0"), NAMES)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("erode=", "erode needs a class name"),
        ("drop=a:b", "drop needs a class name"),
        ("grow=liver:x", "percentage must be a number"),
        ("grow=liver:-5", r"must be in \(0, 1000\]"),
    ],
)
def test_bad_mask_edit_quotes_the_item(item: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_injection([item])


def test_edit_mask_leaves_an_absent_class_and_the_input_alone(labels: np.ndarray) -> None:
    before = labels.copy()
    none = np.zeros_like(labels)
    assert np.array_equal(edit_mask(none, MaskEdit("erode", "liver"), NAMES, SPACING), none)
    edit_mask(labels, MaskEdit("drop", "liver"), NAMES, SPACING)
    assert np.array_equal(labels, before)


def test_gates_in_benchmarks_json() -> None:
    cfg = parse_config(
        {
            "gates": {
                "nsd_min": 0.95,
                "nsd_tolerance_mm": 2.0,
                "class_nsd_tolerance_mm": {"liver": 3.0, "2": 1.5},
                "hd95_max_mm": 5.0,
                "volume_diff_max_pct": 2.0,
                "vanished_max": 1,
            },
            "cases": {"a.nii.gz": {"nsd_min": 0.5, "vanished_max": 0}},
        },
        "b.json",
    )
    g = cfg.gates
    assert (g.nsd_min, g.hd95_max_mm, g.volume_diff_max_pct, g.vanished_max) == (
        0.95,
        5.0,
        2.0,
        1,
    )
    assert g.nsd_tolerance("liver", 3) == 3.0 and g.nsd_tolerance("kidney", 2) == 1.5
    assert g.nsd_tolerance("spleen", 1) == 2.0
    case = cfg.gates_for("a.nii.gz")
    assert case.nsd_min == 0.5 and case.vanished_max == 0 and case.hd95_max_mm == 5.0
    assert cfg.settings()["gates"]["class_nsd_tolerance_mm"] == {"liver": 3.0, "2": 1.5}
    check_tolerance_classes(cfg, NAMES)


@pytest.mark.parametrize(
    ("gates", "expected"),
    [
        ({"nsd_min": 1.5}, r"gates.nsd_min' must be a number in \[0.0, 1.0\]"),
        ({"vanished_max": 0.5}, "gates.vanished_max' must be an integer"),
        ({"class_nsd_tolerance_mm": 2}, "must be an object of class name: mm"),
        ({"class_nsd_tolerance_mm": {"liver": -1}}, "class_nsd_tolerance_mm.liver' must be"),
    ],
)
def test_bad_agreement_gates_name_key_and_file(gates: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config({"gates": gates}, "b.json")


def test_tolerance_for_an_unknown_class_is_refused() -> None:
    cfg = parse_config({"cases": {"a": {"class_nsd_tolerance_mm": {"livr": 2.0}}}}, "b.json")
    with pytest.raises(ConfigError, match=r"cases.a.class_nsd_tolerance_mm.livr' names no class"):
        check_tolerance_classes(cfg, NAMES)
    check_tolerance_classes(BenchConfig(), NAMES)


def test_saved_figures_round_trip_and_old_runs_load(labels: np.ndarray) -> None:
    dropped = edit_mask(labels, MaskEdit("drop", "adrenal"), NAMES, SPACING)
    found = agreement(labels, dropped, SPACING)
    floors = {
        "reference": noise_floor(labels, labels, None),
        "candidate": noise_floor(labels, dropped, found),
    }
    saved = agreement_info(found, floors, 0.25)
    assert saved["classes"]["4"]["hd95_mm"] is None and saved["vanished"] == ["4"]
    info = GateFigures(
        dice=compute_dice(labels, dropped),
        min_class_voxels=1000,
        logits=None,
        reference_s=1.0,
        candidate_s=0.5,
        speedup=2.0,
        baseline_speedup=None,
        injected="drop=adrenal",
        gates={"dice": False, "vanished": False},
        agreement=saved,
    ).to_info()
    record = CaseRecord.from_extra_info("c", {"candidate": info})
    ag = record.agreement
    assert ag is not None and ag.vanished == ["4"] and ag.seconds == 0.25
    assert ag.classes["3"].nsd == 1.0 and ag.classes["4"].hd95_mm is None
    assert ag.noise_floor["reference"]["changed_voxels"] == 0
    assert ag.noise_floor["candidate"]["vanished"] == 1
    assert ag.min_nsd(1000) == 1.0 and ag.min_nsd() == 0.0
    assert ag.worst_nsd() == ("4", 0.0)
    old = {k: v for k, v in info.items() if k != "agreement"}
    assert CaseRecord.from_extra_info("c", {"candidate": old}).agreement is None
    assert AgreementRecord.from_info({"classes": {"1": {"nsd": "x"}}}) == AgreementRecord({})
    assert math.isclose(ag.max_volume_diff_pct() or 0.0, 0.0)
