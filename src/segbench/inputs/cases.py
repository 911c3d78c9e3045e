"""Where the benchmark cases come from: generated phantoms, the shared real CT, a user folder.

A case is one CT volume; its id is the volume's file name, or the folder name of a DICOM series
(the pytest test id). Phantoms are generated lazily, at a case's first use, into the cache
folder, and reused afterwards. In a user folder, ``<case>_seg.nii.gz`` (or ``.nii``) beside a
case is that case's ground truth, not a case of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segbench.errors import ConfigError
from segbench.inputs.dicom import is_dicom_folder
from segbench.inputs.phantoms import LABELS, PhantomSpec, ensure_phantom, phantom_set
from segbench.inputs.volumes import NIFTI_SUFFIXES

SUITES = ("quick", "seed20", "none")
TRUTH_SUFFIX = "_seg"
SHARED_CT = Path("ct") / "example_ct_sm.nii.gz"


@dataclass(frozen=True)
class Case:
    """One volume: a NIfTI file or a DICOM series folder (``path``), or a phantom. Phantom
    cases carry ground-truth labels; file cases do when a ``<case>_seg.nii.gz`` lies beside
    them (``truth``)."""

    id: str
    path: Path | None = None
    phantom: PhantomSpec | None = None
    truth: Path | None = None

    def files(self, cache_dir: Path) -> tuple[Path, Path | None]:
        """(image path, ground-truth label path or None), generating a phantom if needed."""
        if self.phantom is not None:
            image, labels = ensure_phantom(self.phantom, cache_dir)
            return image, labels
        assert self.path is not None
        return self.path, self.truth

    @property
    def truth_names(self) -> dict[int, str] | None:
        """The ground truth's label names when segbench knows them (phantoms); for files they
        come from the label table in the file, if any."""
        return dict(LABELS) if self.phantom is not None else None


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """``scan`` for ``scan.nii.gz`` or ``scan.nii``."""
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def builtin_cases(suite: str, shared_data: Path | None) -> list[Case]:
    """The phantoms of ``suite`` plus the shared example CT when ``shared_data`` holds it."""
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    cases = (
        []
        if suite == "none"
        else [Case(id=f"{spec.case_id}.nii.gz", phantom=spec) for spec in phantom_set(suite)]
    )
    if shared_data is not None and (shared_data / SHARED_CT).is_file():
        cases.append(Case(id=SHARED_CT.name, path=shared_data / SHARED_CT))
    return cases


def folder_cases(folder: Path) -> list[Case]:
    """Every ``.nii`` / ``.nii.gz`` in ``folder`` and every subfolder directly holding DICOM
    files (not recursive), sorted by id; ``<case>_seg.nii(.gz)`` files are ground truths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"--segbench-data {folder}: not a folder. Fix: pass a folder of .nii/.nii.gz files "
            "(and/or of DICOM series folders)"
        )
    try:
        entries = sorted(folder.iterdir())
        niftis = [p for p in entries if p.is_file() and is_nifti(p)]
        series = [p for p in entries if p.is_dir() and is_dicom_folder(p)]
    except OSError as exc:
        raise ConfigError(
            f"--segbench-data {folder}: cannot be read ({exc}). Fix its permissions"
        ) from exc
    images = [(nifti_stem(p), p) for p in niftis] + [(p.name, p) for p in series]
    stems = {stem for stem, _ in images}
    truth_of: dict[str, Path] = {}  # case stem -> its ground truth file
    for stem, path in images:
        base = stem.removesuffix(TRUTH_SUFFIX)
        if is_nifti(path) and base != stem and base in stems:
            truth_of[base] = path
    cases = [
        Case(id=path.name, path=path, truth=truth_of.get(stem))
        for stem, path in images
        if path not in truth_of.values()
    ]
    if not cases:
        raise ConfigError(
            f"--segbench-data {folder}: holds no .nii or .nii.gz files and no folders of DICOM "
            "slices. Fix: point it at the folder with your CT volumes"
        )
    return sorted(cases, key=lambda c: c.id)
