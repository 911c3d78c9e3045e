"""TotalSegmentator's ground truth: a folder of binary masks ``<class name>.nii.gz`` made into
one label map whose labels are a model's class indices, where the names match."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segbench.cachefiles import fit_name, write_atomic
from segbench.errors import InputError
from segbench.inputs.volumes import NIFTI_SUFFIXES

MAX_LABEL = 255  # the label map is uint8 (the runner reads ground truths as uint8)


def mask_files(folder: Path) -> dict[str, Path]:
    """{class name: mask file} of the ``.nii`` / ``.nii.gz`` files in ``folder``."""
    out: dict[str, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
            if path.name.endswith(suffix) and path.is_file():
                out.setdefault(path.name[: -len(suffix)], path)
                break
    return out


def _cache_key(masks: dict[str, Path], class_names: Sequence[str]) -> str:
    digest = hashlib.sha256("\0".join(class_names).encode())
    for name, path in sorted(masks.items()):
        st = path.stat()
        digest.update(f"\0{name}\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def label_map_from_masks(
    folder: Path, class_names: Sequence[str], cache_dir: Path
) -> tuple[Path | None, dict[int, str] | None]:
    """(label map file, {label: name}) built from the masks in ``folder`` whose names are in
    ``class_names`` (label = the class's index); (None, None) when no name matches. The map
    is written once into ``cache_dir/truth/`` and reused while the masks are unchanged."""
    import nibabel as nib

    masks = mask_files(folder)
    matched = {name: masks[name] for name in class_names[1:] if name in masks}
    if not matched:
        return None, None
    index = {name: i for i, name in enumerate(class_names)}
    names = {index[name]: name for name in matched}
    too_big = [n for n in matched if index[n] > MAX_LABEL]
    if too_big:
        raise InputError(
            folder,
            f"classes {', '.join(too_big)} have indices above {MAX_LABEL}",
            "use a model with at most 256 classes for a ground truth of masks",
        )
    stem = f"{folder.parent.name}-{_cache_key(matched, class_names)}"
    out = Path(cache_dir) / "truth" / fit_name(stem, ".nii.gz")
    if out.is_file():
        return out, names
    first: Any = None
    labels: np.ndarray | None = None
    for name, path in matched.items():
        try:
            img: Any = nib.load(path)
            mask = np.asanyarray(img.dataobj)
        except Exception as exc:  # nibabel raises many kinds on a damaged file
            raise InputError(path, f"cannot be read as a mask ({exc})", "restore the file") from exc
        if first is None or labels is None:
            first, labels = img, np.zeros(mask.shape, np.uint8)
        elif mask.shape != labels.shape or not np.allclose(img.affine, first.affine, atol=1e-3):
            raise InputError(
                path,
                f"is not on the grid of the other masks in {folder} ({mask.shape} vs "
                f"{labels.shape})",
                "export all masks of a case on the CT's grid",
            )
        labels[mask > 0] = index[name]
    assert first is not None and labels is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(labels, first.affine)
    write_atomic(out, lambda tmp: nib.save(image, tmp), ext=".nii.gz")
    return out, names
