"""Loading volumes and moving them to and from the closest canonical (RAS+) orientation.

A volume is a NIfTI file, an in-memory NIfTI image, or a folder holding one DICOM series
(read by :mod:`segbench.inputs.dicom` into an in-memory NIfTI image, extra ``segbench[dicom]``).
Arrays are indexed ``[x, y, z]`` as nibabel stores them (no transpose to z-first): after
:func:`load_volume` axis 0 runs towards R, axis 1 towards A and axis 2 towards S.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornts
from nibabel.filebasedimages import ImageFileError

from segbench.errors import InputError, SegbenchWarning
from segbench.inputs.limits import DEFAULT_MAX_VOXELS, check_voxel_count

ImageLike = str | Path | nib.Nifti1Image
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SPACING_RANGE_MM = (0.1, 20.0)
GRID_TOL_MM = 1e-3  # two grids are the same when their RAS affines agree to this


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


def read_image(image: ImageLike, max_voxels: int | None = None) -> tuple[nib.Nifti1Image, str]:
    """Open a NIfTI file (header only, data stays lazy), read a DICOM series folder into memory
    (``max_voxels`` checked before decoding), or pass an in-memory image through."""
    if isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        name = image.get_filename() or "<in-memory image>"
        return image, name
    path = Path(image)
    if path.is_dir():
        from segbench.inputs.dicom import read_dicom_series

        return read_dicom_series(path, max_voxels), str(path)
    if not path.is_file():
        raise InputError(
            path,
            "no such file",
            "check the path (a .nii or .nii.gz file, or a folder of DICOM slices)",
        )
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
        what = "a zero-length" if min(shape) == 0 else "a negative-length"
        raise InputError(source, f"has {what} axis, shape {shape}", "re-export the volume")
    return shape


def check_voxel_dtype(img: nib.Nifti1Image, source: str) -> None:
    """Refuse voxel types that are not one real number per voxel (RGB, complex, structured):
    numpy cannot cast RGB to float, and a complex cast silently drops the imaginary part."""
    dtype = np.dtype(img.get_data_dtype())
    if dtype.kind in "biuf":
        return
    kind = {"c": "complex", "V": "RGB/structured"}.get(dtype.kind, "non-numeric")
    raise InputError(
        source,
        f"stores {kind} voxels ({dtype}), not one intensity per voxel",
        "convert it to a grey-level CT (int16 or float32 HU) before benchmarking",
    )


GridCheck = Callable[[tuple[int, int, int], tuple[float, float, float], str], object]


def canonical_grid(
    shape: tuple[int, int, int], affine: np.ndarray
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """(shape, spacing in mm) of a volume of ``shape`` and ``affine`` once reoriented to RAS
    (as :func:`load_volume` does), from the header alone."""
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    axes = ornts.ornt_transform(ornts.io_orientation(affine), ornts.axcodes2ornt("RAS"))[:, 0]
    out_shape, out_spacing = [0, 0, 0], [0.0, 0.0, 0.0]
    for source, target in enumerate(int(a) for a in axes):
        out_shape[target], out_spacing[target] = shape[source], float(zooms[source])
    return (
        (out_shape[0], out_shape[1], out_shape[2]),
        (out_spacing[0], out_spacing[1], out_spacing[2]),
    )


def load_volume(
    image: ImageLike,
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
    expect_ct: bool = True,
    check_grid: GridCheck | None = None,
) -> Volume:
    """Load ``image`` (a NIfTI file or image, or a DICOM series folder) as float32 HU, validated
    and reoriented to the closest canonical (RAS+).

    Raises :class:`InputError` naming the file for unreadable files, bad DICOM series, non-3D
    data, a zero-length axis, more than ``max_voxels`` voxels (checked from the header, before
    reading the data), a singular affine, a voxel size outside ``SPACING_RANGE_MM`` and NaN/inf
    voxels. Warns (:class:`SegbenchWarning`) when ``expect_ct`` and the intensities do not look
    like CT HU (``expect_ct=False`` for label maps). ``check_grid(shape, spacing, source)``, when
    given, sees the RAS grid (:func:`canonical_grid`) before any voxel is decoded and may refuse
    it (e.g. :func:`segbench.pipeline.footprint.check_case_memory`).
    """
    img, source = read_image(image, max_voxels)
    shape = _checked_shape(img, source)
    check_voxel_count(shape, source, max_voxels)
    check_voxel_dtype(img, source)
    affine = _checked_affine(img, source)
    if check_grid is not None:
        check_grid(*canonical_grid(shape, affine), source)
    data = _voxels(img, shape, source)
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


def _checked_affine(img: nib.Nifti1Image, source: str) -> np.ndarray:
    """The image's affine (float64), refused when singular or non-finite, or when its voxel
    size is outside :data:`SPACING_RANGE_MM`."""
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
    return affine


def _voxels(img: nib.Nifti1Image, shape: tuple[int, int, int], source: str) -> np.ndarray:
    """The voxels as float32 of ``shape``, refused when the data cannot be read (a truncated
    file) or holds NaN/inf."""
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
    return data


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


def check_same_grid(labels: Volume, volume: Volume, atol_mm: float = GRID_TOL_MM) -> None:
    """Raise :class:`InputError` naming ``labels`` unless it lies on ``volume``'s voxel grid.

    Both are compared in RAS order (shape and affine), so a segmentation stored in another
    voxel order of the same grid is accepted."""
    if labels.shape == volume.shape and np.allclose(labels.affine, volume.affine, atol=atol_mm):
        return
    diff = (
        f", largest affine difference {np.abs(labels.affine - volume.affine).max():.4g} mm"
        if labels.shape == volume.shape
        else ""
    )
    raise InputError(
        labels.source,
        f"is not on the grid of its case {volume.source}: RAS shape {labels.shape} vs "
        f"{volume.shape}, spacing {tuple(round(s, 4) for s in labels.spacing)} vs "
        f"{tuple(round(s, 4) for s in volume.spacing)} mm{diff}",
        "write the segmentation on the case's grid (resample it with nearest neighbour), or "
        "rename it so it is not taken as the case's ground truth",
    )


def label_names(img: nib.Nifti1Image) -> dict[int, str] | None:
    """The label table a segmentation carries in a NIfTI extension (the Caret XML label table
    TotalSegmentator writes), as {value: name}; None when there is none."""
    header = getattr(img, "header", None)
    for ext in getattr(header, "extensions", ()):
        content = ext.get_content()
        if not isinstance(content, bytes) or b"<LabelTable>" not in content:
            continue
        try:
            root = ET.fromstring(content.decode("utf-8", errors="replace").strip())
        except ET.ParseError:
            return None
        names = {}
        for label in root.iter("Label"):
            key = label.get("Key")
            if key is not None and key.strip().lstrip("-").isdigit() and label.text:
                names[int(key)] = label.text.strip()
        return names or None
    return None


def check_truth_labels(
    array: np.ndarray, source: str | Path | None, num_classes: int | None
) -> None:
    """Refuse a ground-truth label map that cannot be scored: non-finite, non-integral (an
    intensity image or an interpolated mask), negative, or a label >= ``num_classes`` (``None``,
    for a truth with its own label table: a label over 255, which a uint8 map cannot hold).
    Integral floats (1.0, 2.0) are accepted."""
    data = np.asarray(array)
    limit = num_classes if num_classes is not None else 256
    fix = (
        f"pass a label map with integer labels 0..{limit - 1} on the case's grid (resample "
        "masks with nearest neighbour), or choose the model it was made for"
    )
    if data.dtype.kind not in "biuf":
        raise InputError(source, f"has {data.dtype} labels, not integers", fix)
    if data.size == 0:
        return
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            raise InputError(source, f"has {bad} NaN/inf labels", fix)
        frac = data != np.round(data)
        if frac.any():
            example = float(data[frac].flat[0])
            raise InputError(
                source,
                f"has {int(np.count_nonzero(frac))} non-integral labels (e.g. {example:g}); it "
                "looks like an intensity image or a mask resampled with interpolation",
                fix,
            )
    lo, hi = float(data.min()), float(data.max())
    if lo < 0:
        raise InputError(source, f"has negative labels (min {lo:g})", fix)
    if hi >= limit:
        what = (
            f"out of range for a model of {num_classes} classes (0..{num_classes - 1})"
            if num_classes is not None
            else "over 255, more than a uint8 label map holds"
        )
        raise InputError(source, f"has label {hi:g}, {what}", fix)
