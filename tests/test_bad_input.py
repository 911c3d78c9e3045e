"""Bad input is a clear error (or a warning) that names the file, never a wrong number."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segbench.errors import InputError, SegbenchWarning
from segbench.inputs.volumes import load_volume


def _write(
    tmp_path: Path, data: np.ndarray, zooms: tuple[float, float, float], name: str = "v.nii.gz"
) -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.diag([*zooms, 1.0])), path)
    return path


def _ct(shape: tuple[int, int, int] = (20, 18, 16)) -> np.ndarray:
    data = np.full(shape, 40, dtype=np.int16)
    data[0] = -1000  # air
    return data


@pytest.mark.parametrize("zoom", [0.05, 50.0])
def test_extreme_spacing_is_refused(tmp_path: Path, zoom: float) -> None:
    path = _write(tmp_path, _ct(), (zoom, 1.0, 1.0))
    with pytest.raises(InputError) as err:
        load_volume(path)
    msg = str(err.value)
    assert str(path) in msg and "voxel size" in msg and "pixdim" in msg


def test_too_many_voxels_refused_before_reading(tmp_path: Path) -> None:
    path = _write(tmp_path, _ct(), (1.0, 1.0, 1.0))
    with pytest.raises(InputError) as err:
        load_volume(path, max_voxels=1000)
    msg = str(err.value)
    assert "5,760 voxels" in msg and "GB" in msg and "--segbench-max-voxels" in msg
    assert load_volume(path, max_voxels=None).shape == (20, 18, 16)


def test_mr_like_intensities_warn(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        np.random.default_rng(0).integers(0, 900, (20, 18, 16)).astype(np.int16),
        (1.0, 1.0, 1.0),
        "mr.nii.gz",
    )
    with pytest.warns(SegbenchWarning, match=r"mr\.nii\.gz: intensities .* do not look like CT"):
        load_volume(path)


def test_ct_intensities_do_not_warn(tmp_path: Path) -> None:
    path = _write(tmp_path, _ct(), (1.0, 1.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_volume(path)


def test_oblique_affine_uses_closest_canonical(tmp_path: Path) -> None:
    angle = np.deg2rad(10)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.5, 1.5, 3.0])
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(_ct(), affine), path)
    volume = load_volume(path)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert np.allclose(volume.spacing, (1.5, 1.5, 3.0))
