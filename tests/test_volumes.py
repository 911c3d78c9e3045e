"""segbench.inputs.volumes: loading, RAS reorientation and its exact inverse, and refusals."""

from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import affine_for, shared_ct_path, synthetic_ct, write_nifti

from segbench.errors import InputError
from segbench.inputs.volumes import load_volume, mask_image, to_original_orientation


def _oblique_affine() -> np.ndarray:
    """Rotated 25 deg about S and 10 deg about R, anisotropic zooms: closest to L, A, S."""
    a, b = np.deg2rad(25.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rx @ rz @ np.diag([-2.0, 2.5, 3.0])
    affine[:3, 3] = (30.0, -20.0, 5.0)
    return affine


ORIENTATIONS = {
    "LPS": affine_for("LPS", (2.0, 2.5, 3.0)),
    "LAS": affine_for("LAS", (2.0, 2.5, 3.0)),
    "PSR": affine_for("PSR", (2.0, 2.5, 3.0)),
    "ILA": affine_for("ILA", (2.0, 2.5, 3.0)),
    "oblique": _oblique_affine(),
}


def _check_consistent(volume, data: np.ndarray, affine: np.ndarray) -> None:
    """Every stored voxel sits at the same world position in the RAS array."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        ijk = np.array([rng.integers(0, n) for n in data.shape], dtype=float)
        world = affine @ np.append(ijk, 1.0)
        ras = np.linalg.solve(volume.affine, world)[:3]
        ras_idx = tuple(round(float(v)) for v in ras)
        np.testing.assert_allclose(ras, ras_idx, atol=1e-4)
        assert volume.array[ras_idx] == np.float32(data[tuple(ijk.astype(int))])


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_orientation_round_trip_synthetic(tmp_path: Path, name: str) -> None:
    affine = ORIENTATIONS[name]
    data = np.random.default_rng(0).normal(0, 300, size=(11, 9, 7)).astype(np.float32)
    path = write_nifti(tmp_path / f"{name}.nii.gz", data, affine)
    volume = load_volume(path)

    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.array.dtype == np.float32
    assert volume.source == str(path)
    zooms = nib.load(path).header.get_zooms()[:3]
    expected = [0.0, 0.0, 0.0]
    for axis, (target, _flip) in enumerate(volume.to_canonical):
        expected[int(target)] = float(zooms[axis])
    np.testing.assert_allclose(volume.spacing, expected, rtol=1e-5)
    assert sorted(volume.shape) == sorted(data.shape)
    _check_consistent(volume, data, nib.load(path).affine)

    back = to_original_orientation(volume.array, volume)
    assert back.shape == data.shape
    np.testing.assert_array_equal(back, data)


def test_orientation_is_really_changed_for_lps(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    volume = load_volume(write_nifti(tmp_path / "lps.nii.gz", data, affine_for("LPS")))
    np.testing.assert_array_equal(volume.array, data[::-1, ::-1, :])


def test_orientation_round_trip_real_ct() -> None:
    path = shared_ct_path()
    original = nib.load(path)
    stored = np.asarray(original.dataobj)
    volume = load_volume(path)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.array.dtype == np.float32
    assert volume.shape == (122, 101, 30)
    np.testing.assert_allclose(volume.spacing, (3.0, 3.0, 3.0), rtol=1e-6)
    np.testing.assert_array_equal(to_original_orientation(volume.array, volume), stored)

    labels = (volume.array > 0).astype(np.uint8)
    mask = mask_image(labels, volume)
    assert mask.shape == original.shape
    np.testing.assert_array_equal(mask.affine, original.affine)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), (stored > 0).astype(np.uint8))


@pytest.mark.parametrize("name", ["LPS", "PSR", "oblique"])
def test_mask_image_matches_original_grid(tmp_path: Path, name: str) -> None:
    affine = ORIENTATIONS[name]
    data = synthetic_ct((12, 10, 8))
    path = write_nifti(tmp_path / "in.nii.gz", data, affine)
    volume = load_volume(path)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[volume.array > 0] = 2
    mask = mask_image(labels, volume)
    original = nib.load(path)
    assert mask.shape == original.shape
    assert mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(mask.affine, original.affine)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), np.where(data > 0, 2, 0))
    # and it survives a save / load
    nib.save(mask, tmp_path / "mask.nii.gz")
    reloaded = nib.load(tmp_path / "mask.nii.gz")
    assert reloaded.shape == original.shape
    np.testing.assert_allclose(reloaded.affine, original.affine, atol=1e-5)
    assert nib.aff2axcodes(reloaded.affine) == nib.aff2axcodes(original.affine)


def test_mask_image_keeps_4d_singleton_shape(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "f.nii.gz", synthetic_ct((8, 9, 10))[..., None])
    volume = load_volume(path)
    mask = mask_image(np.zeros(volume.shape, np.uint8), volume)
    assert mask.shape == nib.load(path).shape


def test_4d_with_one_frame_is_accepted(tmp_path: Path) -> None:
    data = synthetic_ct((8, 9, 10))
    volume = load_volume(write_nifti(tmp_path / "f.nii.gz", data[..., None], affine_for("RAS")))
    assert volume.shape == (8, 9, 10)
    np.testing.assert_array_equal(volume.array, data)


def test_int16_scaling_gives_hu(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(-500, 1500, size=(6, 5, 4)).astype(np.int16)
    path = tmp_path / "scaled.nii"
    nib.save(nib.Nifti1Image(raw, affine_for("RAS")), path)
    # scl_slope / scl_inter are float32 at bytes 112 and 116 of the NIfTI-1 header
    blob = bytearray(path.read_bytes())
    blob[112:120] = struct.pack("<ff", 2.0, -1024.0)
    path.write_bytes(bytes(blob))
    proxy = nib.load(path).dataobj  # nibabel moves the header's scaling into the array proxy
    assert proxy.dtype == np.int16
    assert float(proxy.slope) == 2.0 and float(proxy.inter) == -1024.0

    volume = load_volume(path)
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, raw.astype(np.float32) * 2.0 - 1024.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float64])
def test_storage_dtypes_load_as_float32(tmp_path: Path, dtype: type) -> None:
    data = np.random.default_rng(0).integers(0, 200, size=(6, 5, 4)).astype(dtype)
    path = tmp_path / "d.nii.gz"
    img = nib.Nifti1Image(data, affine_for("RAS"))
    img.set_data_dtype(dtype)
    nib.save(img, path)
    assert nib.load(path).get_data_dtype() == dtype
    volume = load_volume(path)
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, data.astype(np.float32))


def test_in_memory_image(tmp_path: Path) -> None:
    data = synthetic_ct((6, 7, 8))
    volume = load_volume(nib.Nifti1Image(data, affine_for("LAS")))
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(volume.array, data[::-1])


# ---- refusals -------------------------------------------------------------------------------


def _assert_input_error(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_volume(path)
    assert path.name in str(info.value)
    return info.value


def test_2d_image_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat2d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 12), np.float32), np.eye(4)), path)
    err = _assert_input_error(path)
    assert "2D" in str(err)


def test_4d_image_with_three_frames_refused(tmp_path: Path) -> None:
    path = tmp_path / "series4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 3), np.float32), np.eye(4)), path)
    err = _assert_input_error(path)
    assert "4D" in str(err)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxel_refused(tmp_path: Path, bad: float) -> None:
    data = synthetic_ct((6, 5, 4))
    data[2, 3, 1] = bad
    path = write_nifti(tmp_path / "nonfinite.nii.gz", data)
    err = _assert_input_error(path)
    assert "NaN/inf" in str(err)
    assert "1 NaN/inf" in str(err)


def test_zero_length_axis_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty_axis.nii.gz"
    try:
        nib.save(nib.Nifti1Image(np.zeros((4, 0, 4), np.float32), np.eye(4)), path)
        stored = nib.load(path).shape
    except Exception as exc:  # pragma: no cover - depends on the nibabel version
        pytest.skip(f"nibabel cannot write a zero-length axis: {exc}")
    if 0 not in stored:  # pragma: no cover
        pytest.skip(f"nibabel stored shape {stored} instead of a zero-length axis")
    err = _assert_input_error(path)
    assert "zero-length" in str(err)


def test_singular_affine_refused(tmp_path: Path) -> None:
    path = tmp_path / "singular.nii"
    affine = np.eye(4)
    affine[2, 2] = 0.0
    img = nib.Nifti1Image(synthetic_ct((6, 5, 4)), None)  # no qform: it cannot be singular
    img.set_sform(affine, code=1)
    nib.save(img, path)
    err = _assert_input_error(path)
    assert "affine" in str(err)


def test_truncated_gzip_refused(tmp_path: Path) -> None:
    good = write_nifti(tmp_path / "good.nii.gz")
    blob = good.read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(blob[: len(blob) // 2])
    _assert_input_error(path)


def test_text_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    path.write_text("this is not a NIfTI file\n")
    _assert_input_error(path)


def test_missing_path_refused(tmp_path: Path) -> None:
    err = _assert_input_error(tmp_path / "nowhere.nii.gz")
    assert "no such file" in str(err)
