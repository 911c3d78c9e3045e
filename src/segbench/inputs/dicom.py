"""A folder of DICOM slices (one CT series) as an in-memory NIfTI image.

Optional extra ``segbench[dicom]``: pydicom reads the headers, SimpleITK (ITK's GDCM reader)
decodes the pixels, compressed transfer syntaxes included (JPEG, JPEG-LS, JPEG 2000, RLE), and
applies each slice's RescaleSlope / RescaleIntercept.

Before any pixel is decoded the headers are checked, and each problem is an
:class:`~segbench.errors.InputError` naming the folder: no DICOM image in it, two series mixed
(two SeriesInstanceUIDs, or slices of different orientation, size or pixel spacing), a
modality other than CT, multi-frame files, fewer than two slices, two slices at one position,
uneven slice spacing (missing slices) and gantry tilt. A decoding failure (a transfer syntax
GDCM has no decoder for, such as MPEG video, or a damaged stream) is one too.

Geometry. Slices are sorted by their ImagePositionPatient along the slice normal (the cross
product of the two ImageOrientationPatient directions), and ITK derives the slice spacing from
those positions, never from SliceThickness. ITK's image (LPS world) becomes a NIfTI affine in
nibabel's RAS world by negating x and y. The voxel order is the one dcm2niix writes, and so
the one of TotalSegmentator's masks of a DICOM series: DICOM columns, rows reversed, slices in
ascending order along the normal (an axial head-first series comes out LAS). The rest of the
pipeline reorients to RAS and writes the mask back on exactly this grid and affine.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations as ornts

from segbench.errors import InputError
from segbench.inputs.limits import check_voxel_count

EXTRA = "segbench[dicom]"
PREAMBLE = 128  # a DICOM Part 10 file: 128-byte preamble, then b"DICM"
GEOMETRY_TOL_MM = 1e-3  # orientation cosines and pixel spacings that differ by more differ
SPACING_TOL = 0.01  # slice gaps may differ from the median by 1 % (at least 0.01 mm)
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
ROWS_REVERSED = np.array([[0, 1], [1, -1], [2, 1]])  # nibabel orientation: flip the row axis
_FIX_EXPORT = "export the complete series from the PACS into a folder of its own"


def looks_like_dicom(path: Path) -> bool:
    """True when ``path`` starts like a DICOM Part 10 file (no optional dependency needed)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(PREAMBLE + 4)[PREAMBLE:] == b"DICM"
    except OSError:
        return False


def is_dicom_folder(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one DICOM file."""
    try:
        return any(p.is_file() and looks_like_dicom(p) for p in sorted(Path(folder).iterdir()))
    except OSError:
        return False


def _readers(folder: Path) -> tuple[Any, Any]:
    try:
        import pydicom
        import SimpleITK as sitk
    except ImportError as exc:
        raise InputError(
            folder,
            f"is a folder, read as a DICOM series, but the DICOM reader is not installed ({exc})",
            f"pip install {EXTRA} (pydicom and SimpleITK)",
        ) from exc
    return pydicom, sitk


def _image_headers(folder: Path, pydicom: Any) -> list[tuple[Path, Any]]:
    """(path, header) of every DICOM image file directly in ``folder``, by file name."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(folder, f"cannot be listed ({exc})", "fix its permissions") from exc
    images = []
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except RecursionError:
            raise InputError(
                folder,
                f"file {path.name} nests DICOM sequences too deeply to be read (Python's "
                "recursion limit); no scanner writes such a header",
                f"remove {path.name} from the folder, or re-export the series from the PACS",
            ) from None
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
            continue  # not DICOM (a README, a thumbnail...)
        if "Rows" in header:  # an image, not a DICOMDIR or a structured report
            _check_image_size(folder, path, header)
            images.append((path, header))
    if not images:
        raise InputError(
            folder,
            f"holds no DICOM image files ({len(files)} files, none a DICOM image; subfolders "
            "are not searched)",
            "pass a .nii/.nii.gz file, or the folder that directly holds the slices of one "
            "DICOM series",
        )
    return images


def _header_int(folder: Path, path: Path, header: Any, keyword: str, default: int | None) -> int:
    """``keyword`` of ``header`` as a positive integer (``default`` when absent and one is
    given); anything else (absent without a default, not a number, zero or negative) is an
    :class:`InputError` naming the file and the tag."""
    pydicom_log = logging.getLogger("pydicom")
    level = pydicom_log.level
    try:  # pydicom warns of (and logs) an invalid IS, then keeps the text: said below instead
        pydicom_log.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = header.get(keyword)  # converted (IS, US) on first access
    except (ValueError, TypeError, OverflowError) as exc:
        value = f"unreadable: {exc}"
    finally:
        pydicom_log.setLevel(level)
    if value is None or value == "":
        if default is not None:
            return default
        raise InputError(
            folder,
            f"file {path.name} has no {keyword} tag; the image's size is unknown",
            "re-export the series with complete image headers (Rows and Columns)",
        )
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise InputError(
            folder,
            f"file {path.name} has {keyword} {str(value)[:40]!r}, not a positive whole number",
            "re-export the series; a damaged header cannot be read as a CT slice",
        )
    return number


def _check_image_size(folder: Path, path: Path, header: Any) -> None:
    """Rows, Columns and NumberOfFrames (when present) are positive whole numbers."""
    _header_int(folder, path, header, "Rows", None)
    _header_int(folder, path, header, "Columns", None)
    _header_int(folder, path, header, "NumberOfFrames", 1)


def _uid_label(uid: str) -> str:
    return uid or "(empty SeriesInstanceUID)"


def _check_one_ct_series(folder: Path, images: Sequence[tuple[Path, Any]]) -> None:
    series = Counter(str(h.get("SeriesInstanceUID", "")) for _, h in images)
    if len(series) > 1:
        listed = ", ".join(f"{_uid_label(uid)}: {n} files" for uid, n in series.most_common())
        raise InputError(
            folder,
            f"mixes {len(series)} DICOM series ({listed})",
            "put each series in a folder of its own (one folder is one case)",
        )
    modalities = Counter(str(h.get("Modality", "")) for _, h in images)
    other = {m: n for m, n in modalities.items() if m and m != "CT"}
    if other:
        listed = ", ".join(f"{m} ({n} files)" for m, n in other.items())
        raise InputError(
            folder,
            f"holds a series of modality {listed}, not CT; segbench's models segment CT in "
            "Hounsfield units",
            "pass a CT series (MR or PET intensities give meaningless masks)",
        )
    frames = [p.name for p, h in images if _header_int(folder, p, h, "NumberOfFrames", 1) > 1]
    if frames:
        raise InputError(
            folder,
            f"holds multi-frame (enhanced) DICOM files ({', '.join(frames[:3])}); segbench reads "
            "series of single-frame slices",
            "convert the series to NIfTI (e.g. with dcm2niix) and pass the .nii.gz",
        )
    if len(images) < 2:
        raise InputError(
            folder,
            f"holds one DICOM slice ({images[0][0].name}); a 3D volume and its slice spacing "
            "need at least two",
            _FIX_EXPORT,
        )


def _vector(header: Any, keyword: str, path: Path, folder: Path, size: int) -> np.ndarray:
    value = header.get(keyword)
    try:
        vec = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        vec = np.empty(0)
    if vec.shape != (size,) or not np.all(np.isfinite(vec)):
        raise InputError(
            folder,
            f"slice {path.name} has no usable {keyword} ({value!r}); without it the volume's "
            "geometry is unknown",
            "re-export the series with its geometry tags (ImagePositionPatient, "
            "ImageOrientationPatient, PixelSpacing)",
        )
    return vec


def _check_orientation(iop: np.ndarray, path: Path, folder: Path) -> None:
    """ImageOrientationPatient must be two orthogonal unit vectors (the row and column
    directions); all zeros, or any other pair, leaves no slice normal to sort along."""
    row, col = iop[:3], iop[3:]
    tol = 1e-2  # scanners round the cosines to a few digits
    unit = abs(np.linalg.norm(row) - 1) < tol and abs(np.linalg.norm(col) - 1) < tol
    if unit and abs(float(row @ col)) < tol:
        return
    raise InputError(
        folder,
        f"slice {path.name} has ImageOrientationPatient {[round(float(v), 4) for v in iop]}, "
        "not two orthogonal unit vectors (row and column directions); the slice normal, and "
        "so the slice order and spacing, are unknown",
        "re-export the series with its geometry tags (an anonymiser may have blanked them)",
    )


def _sorted_slices(folder: Path, images: Sequence[tuple[Path, Any]]) -> list[Path]:
    """The slice files in ascending order along the slice normal, after checking that they
    form one regular grid: same orientation, size and pixel spacing, distinct positions,
    even spacing, and positions along the normal (no gantry tilt)."""
    first_path, first = images[0]
    iop = _vector(first, "ImageOrientationPatient", first_path, folder, 6)
    _check_orientation(iop, first_path, folder)
    pixel = _vector(first, "PixelSpacing", first_path, folder, 2)
    size = (int(first.Rows), int(first.Columns))
    for path, header in images[1:]:
        differs = []
        if not np.allclose(
            _vector(header, "ImageOrientationPatient", path, folder, 6), iop, atol=GEOMETRY_TOL_MM
        ):
            differs.append("orientation")
        if (int(header.Rows), int(header.Columns)) != size:
            differs.append("size")
        if not np.allclose(
            _vector(header, "PixelSpacing", path, folder, 2), pixel, atol=GEOMETRY_TOL_MM
        ):
            differs.append("pixel spacing")
        if differs:
            raise InputError(
                folder,
                f"slice {path.name} differs from {first_path.name} in {' and '.join(differs)}: "
                "two series (or a localizer) are mixed in one folder",
                "keep only the slices of one reconstruction in the folder",
            )
    normal = np.cross(iop[:3], iop[3:])
    positions = np.array([_vector(h, "ImagePositionPatient", p, folder, 3) for p, h in images])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    paths = [images[i][0] for i in order]
    gaps = np.diff(along[order])
    same = np.flatnonzero(gaps < GEOMETRY_TOL_MM)
    if same.size:
        pairs = ", ".join(f"{paths[i].name} and {paths[i + 1].name}" for i in same[:3])
        raise InputError(
            folder,
            f"{same.size} pairs of slices share a position along the slice normal ({pairs}): "
            "two series or duplicated files are mixed in the folder",
            "keep one copy of each slice of one series",
        )
    spacing = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - spacing)))
    if abs(gaps[worst] - spacing) > max(SPACING_TOL * spacing, 0.01):
        found = ", ".join(f"{g:g}" for g in sorted({round(float(g), 3) for g in gaps}))
        raise InputError(
            folder,
            f"slice spacing is uneven: gaps of {found} mm along the slice normal (median "
            f"{spacing:g} mm), {gaps[worst]:g} mm between {paths[worst].name} and "
            f"{paths[worst + 1].name}; slices are missing or two series are mixed",
            f"{_FIX_EXPORT}, with every slice",
        )
    steps = np.diff(positions[order], axis=0)
    sideways = np.linalg.norm(steps - np.outer(steps @ normal, normal), axis=1)
    if float(sideways.max()) > max(SPACING_TOL * spacing, 0.01):
        tilt = math.degrees(math.atan2(float(sideways.max()), spacing))
        raise InputError(
            folder,
            f"slices are not stacked along their normal (gantry tilt of about {tilt:.1f} "
            "degrees); the voxel grid would be sheared",
            "resample the series to a regular grid (dcm2niix corrects gantry tilt) and pass "
            "the NIfTI",
        )
    return paths


def _transfer_syntaxes(images: Sequence[tuple[Path, Any]], pydicom: Any) -> str:
    names: Counter[str] = Counter()
    for _, header in images:
        uid = getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)
        names[pydicom.uid.UID(str(uid)).name if uid else "unknown"] += 1
    return ", ".join(f"{name} ({count} files)" for name, count in names.items())


def read_dicom_series(folder: str | Path, max_voxels: int | None = None) -> nib.Nifti1Image:
    """Read the DICOM series in ``folder`` as a float32 (HU) NIfTI image held in memory.

    The headers are checked first (see the module docstring), then ``max_voxels`` (rows x
    columns x slices, before decoding), then SimpleITK decodes the slices in order.
    """
    folder = Path(folder)
    pydicom, sitk = _readers(folder)
    images = _image_headers(folder, pydicom)
    _check_one_ct_series(folder, images)
    paths = _sorted_slices(folder, images)
    rows, columns = int(images[0][1].Rows), int(images[0][1].Columns)
    check_voxel_count((columns, rows, len(paths)), folder, max_voxels)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    reader.SetOutputPixelType(sitk.sitkFloat32)  # every slice's own slope and intercept kept
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else repr(exc)
        raise InputError(
            folder,
            f"pixel data could not be decoded (transfer syntax "
            f"{_transfer_syntaxes(images, pydicom)}; GDCM: {detail})",
            "decompress the series (e.g. gdcmconv --raw, or dcmdjpeg) or re-export it "
            "uncompressed from the PACS; when it is already uncompressed, the files are damaged",
        ) from exc
    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # ITK (z, y, x) -> (x, y, z)
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    del image
    affine = RAS_FROM_LPS @ lps
    data = np.ascontiguousarray(ornts.apply_orientation(data, ROWS_REVERSED))
    affine = affine @ ornts.inv_ornt_aff(ROWS_REVERSED, data.shape)
    out = nib.Nifti1Image(data, affine)
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=1)
    return out
