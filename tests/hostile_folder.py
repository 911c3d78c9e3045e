"""A data folder of one good phantom and ten hostile volumes, for runs of the whole suite."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
from helpers import TINY_GRID, write_nifti

from segbench.inputs.phantoms import PhantomSpec, default_cache_dir, ensure_phantom

GOOD = "phantom_tiny3mm_ras_s007.nii.gz"


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    nib.save(nib.Nifti1Image(data, np.eye(4) * 2.0 if affine is None else affine), path)


def _set_dims(path: Path, dims: tuple[int, int, int]) -> None:
    raw = bytearray(path.read_bytes())
    for offset, value in zip((42, 44, 46), dims, strict=True):
        struct.pack_into("<h", raw, offset, value)
    path.write_bytes(bytes(raw))


def hostile_folder(folder: Path) -> dict[str, str]:
    """Fill ``folder`` with the good phantom and ten hostile volumes; return the hostile file
    names, each with a phrase of the message that refuses it."""
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = ensure_phantom(PhantomSpec(TINY_GRID, 7), default_cache_dir())
    shutil.copy(image, folder / GOOD)
    good = (folder / GOOD).read_bytes()
    (folder / "truncated.nii.gz").write_bytes(good[: len(good) // 3])
    rng = np.random.default_rng(0)
    (folder / "garbage.nii.gz").write_bytes(rng.integers(0, 256, 4000, np.uint8).tobytes())
    (folder / "text.nii.gz").write_text("this is not a volume\n")
    rgb = np.zeros((6, 6, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    _save(folder / "rgb.nii.gz", rgb)
    _save(folder / "flat2d.nii.gz", np.full((16, 16), -1000.0, np.float32))
    _save(folder / "series4d.nii.gz", np.full((8, 8, 8, 3), -1000.0, np.float32))
    zero = write_nifti(folder / "zerodim.nii", shape=(8, 8, 8))
    _set_dims(zero, (8, 0, 8))
    nan_affine = write_nifti(folder / "nan_affine.nii", shape=(8, 8, 8))
    raw = bytearray(nan_affine.read_bytes())
    struct.pack_into("<f", raw, 280, float("nan"))  # srow_x[0] of the sform (code 1)
    nan_affine.write_bytes(bytes(raw))
    huge = write_nifti(folder / "huge.nii", shape=(8, 8, 8))
    _set_dims(huge, (30000, 30000, 30000))
    _save(folder / "complex.nii.gz", (np.full((6, 6, 6), -1000.0) + 5j).astype(np.complex64))
    return {
        "truncated.nii.gz": "truncated",
        "garbage.nii.gz": "not a readable NIfTI file",
        "text.nii.gz": "not a readable NIfTI file",
        "rgb.nii.gz": "RGB/structured voxels",
        "flat2d.nii.gz": "2D image",
        "series4d.nii.gz": "4D image",
        "zerodim.nii": "zero-length axis",
        "nan_affine.nii": "non-finite affine",
        "huge.nii": "voxels",
        "complex.nii.gz": "complex voxels",
    }
