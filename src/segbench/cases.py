"""Where the benchmark cases come from: generated phantoms, the shared real CT, a user folder.

A case is one CT volume; its id is the volume's file name (the pytest test id). Phantoms are
generated lazily, at a case's first use, into the cache folder, and reused afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segbench.errors import ConfigError
from segbench.phantoms import PhantomSpec, ensure_phantom, phantom_set

SUITES = ("quick", "seed20", "none")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SHARED_CT = Path("ct") / "example_ct_sm.nii.gz"


@dataclass(frozen=True)
class Case:
    """One volume. ``phantom`` cases carry ground-truth labels; file cases may not."""

    id: str
    path: Path | None = None
    phantom: PhantomSpec | None = None

    def files(self, cache_dir: Path) -> tuple[Path, Path | None]:
        """(image path, ground-truth label path or None), generating a phantom if needed."""
        if self.phantom is not None:
            image, labels = ensure_phantom(self.phantom, cache_dir)
            return image, labels
        assert self.path is not None
        return self.path, None


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


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
    """Every ``.nii`` / ``.nii.gz`` in ``folder`` (not recursive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"--segbench-data {folder}: not a folder. Fix: pass a folder of .nii/.nii.gz files"
        )
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p))
    except OSError as exc:
        raise ConfigError(
            f"--segbench-data {folder}: cannot be read ({exc}). Fix its permissions"
        ) from exc
    if not files:
        raise ConfigError(
            f"--segbench-data {folder}: holds no .nii or .nii.gz files. Fix: point it at the "
            "folder with your CT volumes"
        )
    return [Case(id=p.name, path=p) for p in files]
