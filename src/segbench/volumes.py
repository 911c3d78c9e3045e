"""Loading NIfTI volumes and moving them to and from the closest canonical (RAS+) orientation.

Arrays are indexed ``[x, y, z]`` as nibabel stores them (no transpose to z-first): after
:func:`load_volume` axis 0 runs towards R, axis 1 towards A and axis 2 towards S.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornts
from nibabel.filebasedimages import ImageFileError

from segbench.errors import InputError, SegbenchWarning

ImageLike = str | Path | nib.Nifti1Image
SPACING_RANGE_MM = (0.1, 20.0)
DEFAULT_MAX_VOXELS = 512 * 512 * 1200  # ~1.3 GB as float32


@dataclass(frozen=True)
class Volume:
    """A CT volume in RAS+ voxel order.

    ``array`` is float32 ``(X, Y, Z)`` in HU, ``spacing`` the voxel size in mm per axis of
    ``array``, ``affine`` the canonical voxel-to-world matrix, ``original`` the image as loaded
    (its shape and affine are what the output mask gets back), ``source`` a name for messages.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    original: nib.Nifti1Image
    to_canonical: np.ndarray  # nibabel orientation transform original -> RAS
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]), int(self.array.shape[2]))


def read_image(image: ImageLike) -> tuple[nib.Nifti1Image, str]:
    """Open a NIfTI file (header only, data stays lazy) or pass an in-memory image through."""
    if isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        name = image.get_filename() or "<in-memory image>"
        return image, name
    path = Path(image)
    if not path.is_file():
        raise InputError(path, "no such file", "check the path (a .nii or .nii.gz file)")
    try:
        img = nib.load(path)
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(
            path,
            f"not a readable NIfTI file ({type(exc).__name__}: {exc})",
            "re-export the volume as .nii/.nii.gz (the file may be truncated or not NIfTI)",
        ) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"is a {type(img).__name__}, not NIfTI", "convert it to NIfTI")
    return img, str(path)


def _checked_shape(img: nib.Nifti1Image, source: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        kind = {2: "a 2D image", 4: "a 4D image (time series or multi-channel)"}.get(
            len(shape), f"a {len(shape)}D image"
        )
        raise InputError(
            source,
            f"is {kind} of shape {tuple(img.shape)}; segbench needs one 3D CT volume",
            "pass a single 3D volume (split 4D series into 3D files)",
        )
    if min(shape) < 1:
        raise InputError(source, f"has a zero-length axis, shape {shape}", "re-export the volume")
    return shape


def load_volume(
    image: ImageLike, max_voxels: int | None = DEFAULT_MAX_VOXELS, expect_ct: bool = True
) -> Volume:
    """Load ``image`` as float32 HU, validated and reoriented to the closest canonical (RAS+).

    Raises :class:`InputError` naming the file for unreadable files, non-3D data, a zero-length
    axis, more than ``max_voxels`` voxels (checked from the header, before reading the data), a
    singular affine, a voxel size outside ``SPACING_RANGE_MM`` and NaN/inf voxels. Warns
    (:class:`SegbenchWarning`) when ``expect_ct`` and the intensities do not look like CT HU
    (``expect_ct=False`` for label maps).
    """
    img, source = read_image(image)
    shape = _checked_shape(img, source)
    voxels = math.prod(shape)
    if max_voxels is not None and voxels > max_voxels:
        raise InputError(
            source,
            f"has {voxels:,} voxels {shape}, over the limit of {max_voxels:,}; the pipeline "
            f"would need at least {voxels * 4 * 3 / 1e9:.1f} GB for its float32 copies",
            "crop or downsample the volume, or raise the limit (--segbench-max-voxels)",
        )
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(
            source,
            f"has a singular or non-finite affine:\n{affine}",
            "fix the qform/sform of the file",
        )
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    lo_mm, hi_mm = SPACING_RANGE_MM
    if not np.all((zooms >= lo_mm) & (zooms <= hi_mm)):
        raise InputError(
            source,
            f"has voxel size {tuple(round(float(z), 4) for z in zooms)} mm, outside the "
            f"{lo_mm}-{hi_mm} mm a CT segmentation model can use",
            "check the header's pixdim and units (a file written in m or um instead of mm is "
            "the usual cause) and fix the affine",
        )
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(
            source,
            f"voxel data cannot be read ({type(exc).__name__}: {exc})",
            "the file is probably truncated; re-export or re-download it",
        ) from exc
    if not np.isfinite(data).all():
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise InputError(
            source,
            f"contains {bad} NaN/inf voxels",
            "replace them (e.g. with -1024 HU) before benchmarking",
        )
    if expect_ct and float(data.min()) > -500.0:
        warnings.warn(
            SegbenchWarning(
                f"{source}: intensities {float(data.min()):.0f}..{float(data.max()):.0f} do not "
                "look like CT Hounsfield units (no air below -500 HU); the model expects CT, so "
                "an MR or rescaled image gives meaningless masks"
            ),
            stacklevel=2,
        )
    transform = ornts.ornt_transform(ornts.io_orientation(affine), ornts.axcodes2ornt("RAS"))
    array = np.ascontiguousarray(ornts.apply_orientation(data, transform))
    canonical_affine = affine @ ornts.inv_ornt_aff(transform, shape)
    spacing = np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0))
    return Volume(
        array=array,
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        affine=canonical_affine,
        original=img,
        to_canonical=transform,
        source=source,
    )


def to_original_orientation(array: np.ndarray, volume: Volume) -> np.ndarray:
    """Undo :func:`load_volume`'s reorientation: a RAS array back to the stored voxel order."""
    back = ornts.ornt_transform(
        ornts.axcodes2ornt("RAS"), ornts.io_orientation(volume.original.affine)
    )
    return np.ascontiguousarray(ornts.apply_orientation(array, back))


def mask_image(labels: np.ndarray, volume: Volume) -> nib.Nifti1Image:
    """Wrap RAS ``labels`` as a NIfTI mask with exactly the original image's shape and affine."""
    data = to_original_orientation(labels, volume).reshape(volume.original.shape)
    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    out = nib.Nifti1Image(data, volume.original.affine, header)
    out.set_qform(volume.original.affine, code=1)
    out.set_sform(volume.original.affine, code=1)
    return out
