"""Tests of the synthetic CT phantom generator (fast: small grids only)."""

from __future__ import annotations

import dataclasses
import gzip
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from segbench.inputs.phantoms import (
    GRIDS,
    LABELS,
    GridSpec,
    PhantomSpec,
    default_cache_dir,
    ensure_phantom,
    generate_phantom,
    phantom_set,
)

TRAIN = GRIDS["train3mm"]
TINY = GridSpec("tiny8mm", (48, 40, 36), (8.0, 8.0, 8.0), "RAS", "int16_scaled")
STUDY = {n for n in GRIDS if not n.startswith("train")}


def arrays(spec: PhantomSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ct, seg = generate_phantom(spec)
    return ct.get_fdata(dtype=np.float32), np.asarray(seg.dataobj), ct.affine


def test_case_id() -> None:
    spec = PhantomSpec(GRIDS["spleen512x40"], 7)
    assert spec.case_id == "phantom_spleen512x40_lps_s007"


def test_deterministic() -> None:
    spec = PhantomSpec(TRAIN, 1000)
    ct1, seg1, aff1 = arrays(spec)
    ct2, seg2, aff2 = arrays(spec)
    assert ct1.dtype == np.float32 and seg1.dtype == np.uint8
    np.testing.assert_array_equal(ct1, ct2)
    np.testing.assert_array_equal(seg1, seg2)
    np.testing.assert_array_equal(aff1, aff2)


def test_seeds_differ() -> None:
    ct1, seg1, _ = arrays(PhantomSpec(TRAIN, 1000))
    ct2, seg2, _ = arrays(PhantomSpec(TRAIN, 1001))
    assert not np.array_equal(ct1, ct2)
    assert (seg1 != seg2).mean() > 0.005


@pytest.mark.parametrize("seed", [1000, 1001, 2000, 42])
def test_labels_all_present_on_train_grid(seed: int) -> None:
    ct, seg, _ = arrays(PhantomSpec(TRAIN, seed))
    assert ct.shape == seg.shape == TRAIN.shape
    present = set(np.unique(seg).tolist())
    assert present <= set(LABELS)
    assert present == set(range(7))


def test_labels_inside_body() -> None:
    ct, seg, _ = arrays(PhantomSpec(TRAIN, 1002))
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    body = ndimage.binary_fill_holes(ct > -500, structure=in_plane)
    assert body.any() and not body[0, 0, :].any()
    assert np.all(body[seg > 0])


@pytest.mark.parametrize(
    ("label", "lo", "hi"),
    [(1, 85, 115), (2, 125, 175), (3, 45, 75), (4, -890, -810), (5, 160, 240), (6, 380, 650)],
)
def test_hu_per_label(label: int, lo: float, hi: float) -> None:
    ct, seg, _ = arrays(PhantomSpec(TRAIN, 1003))
    mean = float(ct[seg == label].mean())
    assert lo <= mean <= hi, f"{LABELS[label]}: mean HU {mean:.1f} not in [{lo}, {hi}]"


def test_air_outside_body() -> None:
    ct, _, _ = arrays(PhantomSpec(TRAIN, 1003))
    corner = ct[:5, :5, :]
    assert -1024 <= corner.min() and abs(float(corner.mean()) + 1000) < 10


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS", "PSL"])
def test_orientation_and_spacing(orientation: str) -> None:
    grid = dataclasses.replace(TINY, orientation=orientation, spacing=(8.0, 7.0, 9.0))
    ct, seg = generate_phantom(PhantomSpec(grid, 3))
    assert nib.aff2axcodes(ct.affine) == tuple(orientation)
    assert ct.shape == seg.shape == grid.shape
    np.testing.assert_allclose(ct.header.get_zooms(), grid.spacing, rtol=1e-6)
    np.testing.assert_array_equal(ct.affine, seg.affine)
    for img in (ct, seg):
        assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
        np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4)
    assert seg.get_data_dtype() == np.uint8


def test_same_physical_grid_any_orientation() -> None:
    ras = dataclasses.replace(TINY, spacing=(8.0, 7.0, 9.0))
    reference = nib.as_closest_canonical(generate_phantom(PhantomSpec(ras, 11))[0])
    variants = [
        dataclasses.replace(ras, orientation="LPS"),
        dataclasses.replace(ras, orientation="LAS", storage="int16"),
        dataclasses.replace(ras, orientation="SRA", shape=(36, 48, 40), spacing=(9.0, 8.0, 7.0)),
    ]
    for grid in variants:
        ct, seg = (nib.as_closest_canonical(i) for i in generate_phantom(PhantomSpec(grid, 11)))
        np.testing.assert_allclose(ct.affine, reference.affine, atol=1e-5)
        np.testing.assert_array_equal(ct.get_fdata(), reference.get_fdata())
        assert seg.shape == reference.shape


def test_storage_schemes() -> None:
    scaled, _ = generate_phantom(PhantomSpec(TINY, 5))
    raw, _ = generate_phantom(PhantomSpec(dataclasses.replace(TINY, storage="int16"), 5))
    flt, _ = generate_phantom(PhantomSpec(dataclasses.replace(TINY, storage="float32"), 5))
    assert scaled.get_data_dtype() == np.int16 and raw.get_data_dtype() == np.int16
    assert flt.get_data_dtype() == np.float32
    assert scaled.dataobj.slope == 1.0 and scaled.dataobj.inter == -1024.0
    hu = scaled.get_fdata()
    assert hu.min() >= -1024 and hu.max() <= 3071 and hu.min() < -900
    assert np.asarray(scaled.dataobj.get_unscaled()).min() >= 0  # stored = HU + 1024
    np.testing.assert_array_equal(raw.get_fdata(), hu)
    np.testing.assert_allclose(flt.get_fdata(), hu, atol=0.51)


def test_ensure_phantom_writes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGBENCH_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    spec = PhantomSpec(TINY, 9)
    image, labels = ensure_phantom(spec, tmp_path)
    assert image == tmp_path / "phantoms" / f"{spec.case_id}.nii.gz"
    assert labels == tmp_path / "phantoms" / f"{spec.case_id}_seg.nii.gz"
    stamps = (image.stat().st_mtime_ns, labels.stat().st_mtime_ns)
    assert ensure_phantom(spec, tmp_path) == (image, labels)
    assert (image.stat().st_mtime_ns, labels.stat().st_mtime_ns) == stamps
    assert sorted(p.name for p in image.parent.iterdir()) == sorted([image.name, labels.name])

    with gzip.open(image, "rb") as fh:
        header = nib.Nifti1Header.from_fileobj(fh)
    assert header.get_slope_inter() == (1.0, -1024.0)
    assert header.get_data_dtype() == np.int16
    ct_mem, seg_mem = generate_phantom(spec)
    ct_disk, seg_disk = nib.load(image), nib.load(labels)
    assert isinstance(ct_disk, nib.Nifti1Image) and isinstance(seg_disk, nib.Nifti1Image)
    np.testing.assert_array_equal(ct_disk.get_fdata(), ct_mem.get_fdata())
    np.testing.assert_array_equal(np.asarray(seg_disk.dataobj), np.asarray(seg_mem.dataobj))
    np.testing.assert_array_equal(ct_disk.affine, ct_mem.affine)


def test_default_cache_dir_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGBENCH_CACHE_DIR", raising=False)
    assert default_cache_dir().parts[-2:] == (".cache", "segbench")


def test_grid_table() -> None:
    assert len(STUDY) == 9
    for name, grid in GRIDS.items():
        assert grid.name == name
        if name.startswith("spleen512"):
            assert grid.shape[:2] == (512, 512)
            assert 200 <= grid.shape[2] * grid.spacing[2] <= 300
    assert GRIDS["train3mm"] == GridSpec(
        "train3mm", (128, 112, 96), (3.0, 3.0, 3.0), "RAS", "float32"
    )


def test_phantom_sets() -> None:
    quick, seed20 = phantom_set("quick"), phantom_set("seed20")
    train, val = phantom_set("train"), phantom_set("val")
    assert [len(quick), len(seed20), len(train), len(val)] == [4, 20, 48, 6]
    assert len({s.grid.name for s in quick}) == 4 and len({s.grid.orientation for s in quick}) >= 2
    assert {s.grid.name for s in seed20} == STUDY
    assert len({s.grid.orientation for s in seed20}) >= 3
    assert [s.seed for s in seed20] == list(range(201, 221))
    assert [s.seed for s in train] == list(range(1000, 1048))
    assert [s.seed for s in val] == list(range(2000, 2006))
    assert {s.grid.name for s in val} <= {s.grid.name for s in train}
    assert all(not s.grid.name.startswith("spleen512") for s in train + val)
    assert len({s.grid.name for s in train}) == 6 and len({s.grid.name for s in val}) == 6
    ids = [s.case_id for s in quick + seed20 + train + val]
    assert len(ids) == len(set(ids))


def test_unknown_set() -> None:
    with pytest.raises(ValueError, match="unknown phantom set") as info:
        phantom_set("nope")
    for name in ("quick", "seed20", "train", "val"):
        assert name in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"orientation": "RAX"},
        {"orientation": "RRS"},
        {"orientation": "ras"},
        {"storage": "uint8"},
        {"shape": (0, 4, 4)},
        {"spacing": (1.0, -1.0, 1.0)},
    ],
)
def test_gridspec_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, **kwargs)


def test_seed20_fov_reasonable() -> None:
    for grid in (GRIDS[n] for n in STUDY):
        fov = [n * s for n, s in zip(grid.shape, grid.spacing, strict=True)]
        assert min(fov[:2]) >= 230 and 200 <= fov[2] <= 400, grid.name
        assert math.prod(grid.shape) > 0
