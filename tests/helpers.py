"""Small shared helpers for segbench's unit tests: a tiny model card and synthetic NIfTI files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from segbench.inputs.phantoms import GridSpec, PhantomSpec, default_cache_dir, ensure_phantom
from segbench.models.card import ModelCard
from segbench.models.normalization import CTNormalization
from segbench.models.unet import PlainConvUNet
from segbench.plugin.progress import Terminal

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "test_regression.py"
PYTEST_LINE = "tests/test_regression.py ."  # pytest's text on the line when a test runs

TINY_FEATURES = (4, 8, 16)
TINY_STRIDES = ((1, 1, 1), (2, 2, 2), (2, 2, 2))
TINY_PATCH = (32, 32, 32)
TINY_TOTAL_STRIDE = (4, 4, 4)
TINY_NORMALIZATION = CTNormalization(-1000.0, 1000.0, 0.0, 300.0)
# a phantom grid the demo model covers with one 64^3 window: the cheapest whole-suite case
TINY_GRID = GridSpec("tiny3mm", (60, 56, 48), (3.0, 3.0, 3.0), "RAS")


def build_tiny_net(num_classes: int = 3, seed: int = 0) -> PlainConvUNet:
    """A PlainConvUNet with seeded random weights; the global torch RNG is left untouched."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = PlainConvUNet(1, TINY_FEATURES, TINY_STRIDES, num_classes)
    finally:
        torch.random.set_rng_state(state)
    return net.eval()


def tiny_card(
    num_classes: int = 3,
    seed: int = 0,
    *,
    name: str = "tiny",
    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0),
    patch_size: tuple[int, int, int] = TINY_PATCH,
    tile_step: float = 0.5,
    weights: Path | None = None,
    weights_sha256: str | None = None,
) -> ModelCard:
    """A ModelCard for the tiny U-Net (built fresh, deterministically, on each ``build()``)."""
    return ModelCard(
        name=name,
        build=lambda: build_tiny_net(num_classes, seed),
        spacing=spacing,
        patch_size=patch_size,
        total_stride=TINY_TOTAL_STRIDE,
        normalization=TINY_NORMALIZATION,
        class_names=("background", *(f"class_{i}" for i in range(1, num_classes))),
        tile_step=tile_step,
        weights=weights,
        weights_sha256=weights_sha256,
    )


def synthetic_ct(shape: Sequence[int] = (40, 36, 20), seed: int = 0) -> np.ndarray:
    """A float32 CT-like volume in HU: air around a soft-tissue body with a bright "bone"."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in shape), indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    data = np.full(shape, -1000.0, dtype=np.float32)
    data[radius < 0.8] = 40.0
    data[radius < 0.3] = 700.0
    data += rng.normal(0.0, 20.0, size=tuple(shape)).astype(np.float32)
    return data


def affine_for(codes: str, zooms: Sequence[float] = (2.5, 2.5, 2.5)) -> np.ndarray:
    """A voxel-to-world affine whose voxel axes point along ``codes`` (e.g. "LPS", "PSR")."""
    world = {
        "R": (0, 1.0),
        "L": (0, -1.0),
        "A": (1, 1.0),
        "P": (1, -1.0),
        "S": (2, 1.0),
        "I": (2, -1.0),
    }
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (code, zoom) in enumerate(zip(codes, zooms, strict=True)):
        row, sign = world[code]
        affine[row, axis] = sign * zoom
    affine[:3, 3] = (-40.0, 25.0, 10.0)
    return affine


def write_nifti(
    path: Path,
    data: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    *,
    shape: Sequence[int] = (40, 36, 20),
    codes: str = "LPS",
    zooms: Sequence[float] = (2.5, 2.5, 2.5),
    dtype: np.dtype | type | None = None,
) -> Path:
    """Write ``data`` (default :func:`synthetic_ct`) as NIfTI-1 with qform and sform set."""
    if data is None:
        data = synthetic_ct(shape)
    if affine is None:
        affine = affine_for(codes, zooms)
    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)
    return path


def shared_data_root() -> Path:
    """``$SEGBENCH_SHARED_DATA`` or ``<repo>/../shared/data`` (which may not exist)."""
    env = os.environ.get("SEGBENCH_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_ct_path() -> Path:
    """The real example CT (``$SEGBENCH_SHARED_DATA/ct/...`` or ``<repo>/../shared/data``),
    or skip the calling test when it is absent."""
    path = shared_data_root() / "ct" / "example_ct_sm.nii.gz"
    if not path.is_file():
        pytest.skip(f"shared CT data not found at {path}; set SEGBENCH_SHARED_DATA")
    return path


def shared_dicom_paths() -> tuple[Path, Path]:
    """The shared DICOM series folder and its segmentation (``dicom/example_ct_dicom/`` and
    ``dicom/example_ct_dicom_seg.nii.gz``), or skip the calling test when they are absent."""
    folder = shared_data_root() / "dicom" / "example_ct_dicom"
    seg = folder.parent / "example_ct_dicom_seg.nii.gz"
    if not folder.is_dir() or not seg.is_file():
        pytest.skip(f"shared DICOM data not found at {folder}; set SEGBENCH_SHARED_DATA")
    return folder, seg


def write_dicom_series(
    folder: Path,
    stored: np.ndarray | None = None,
    *,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-10.0, -20.0, -30.0),
    step: float = 2.0,
    positions: Sequence[Sequence[float]] | None = None,
    modality: str = "CT",
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> list[Path]:
    """Write a small uncompressed CT series with pydicom, one file per slice (skip the test
    when pydicom is absent). ``stored`` is ``(slices, rows, columns)`` uint16 (default: air
    around a soft-tissue block); slice k lies at ``origin + k * step * normal`` unless
    ``positions`` are given. ``pixel_spacing`` is DICOM's (row spacing, column spacing)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    if stored is None:
        stored = np.full((6, 12, 16), 24, dtype=np.uint16)  # -1000 HU
        stored[1:5, 3:9, 4:12] = 1064  # +40 HU
    iop = np.asarray(orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    if positions is None:
        positions = [np.asarray(origin) + k * step * normal for k in range(stored.shape[0])]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (pixels, position) in enumerate(zip(stored, positions, strict=True)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.0"
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = 3.0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.set_pixel_data(np.ascontiguousarray(pixels, dtype=np.uint16), "MONOCHROME2", 16)
        path = folder / f"slice{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    assert pydicom.dcmread(paths[0]).Rows == stored.shape[1]
    return paths


def session_args(
    cwd: Path,
    *args: str,
    suite: Path | None = SUITE,
    settings: bool = True,
    cache_dir: Path | None = None,
) -> list[str]:
    """The arguments of a plugin session: the regression suite (``suite``; ``None``: only
    ``args``) with the segbench plugin, the project's pytest settings (``settings`` false:
    pytest chooses its rootdir and ini file from ``cwd`` and ``args``, as in a user's project),
    the shared cache of phantoms and ONNX exports (``cache_dir``, default
    :func:`default_cache_dir`), and failure PNGs under ``cwd/reports``."""
    loaded = any(ep.value == "segbench.plugin" for ep in entry_points(group="pytest11"))
    return [
        *([str(suite)] if suite is not None else []),
        *([] if loaded else ["-p", "segbench.plugin"]),
        "-p",
        "no:cacheprovider",
        *(["--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")] if settings else []),
        f"--segbench-cache-dir={cache_dir or default_cache_dir()}",
        f"--segbench-report-dir={cwd / 'reports'}",
        *args,
    ]


def run_pytest(
    cwd: Path,
    *args: str,
    suite: Path | None = SUITE,
    timeout: float = 600,
    settings: bool = True,
) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess on this checkout's sources, run in ``cwd`` with
    :func:`session_args`. (The ``plugin_session`` fixture runs the same session through
    pytest's ``pytester``.)"""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *session_args(cwd, *args, suite=suite, settings=settings),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False
    )


def load_script(path: Path) -> ModuleType:
    """A Python file outside the import path (a data folder's ``generate.py``) as a module."""
    spec = importlib.util.spec_from_file_location(f"script_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeWriter:
    def __init__(self, width: int) -> None:
        self.fullwidth = width
        self._current_line = PYTEST_LINE

    @property
    def width_of_current_line(self) -> int:
        return len(self._current_line)


class FakeReporter:
    """What segbench's progress writes through of pytest's terminal reporter (its output kept
    in ``out``)."""

    hasmarkup = True

    def __init__(self, tty: bool, width: int = 100) -> None:
        self._tw = FakeWriter(width)
        self.tty = tty
        self.out: list[str] = []
        self.currentfspath: Any = Path("tests/test_regression.py")

    def isatty(self) -> bool:
        return self.tty

    def write_raw(self, text: str, flush: bool = False) -> None:
        self.out.append(text)

    def write(self, text: str, flush: bool = False) -> None:
        self.out.append(text)

    def write_line(self, text: str) -> None:  # as pytest's: ends pytest's line first
        if self.currentfspath:
            self.out.append("\n")
            self.currentfspath = None
        self.out.append(text + "\n")


def attached_terminal(
    reporter: FakeReporter | None, mode: str = "auto", verbosity: int = 0
) -> Terminal:
    """A progress :class:`Terminal` in ``mode`` attached to ``reporter``."""
    terminal = Terminal(None, mode)
    terminal.attach(reporter, None, verbosity)
    return terminal


def phantom_folder(spec: PhantomSpec, factory: pytest.TempPathFactory) -> Path:
    """The cached phantom of ``spec`` copied alone into a new temporary folder (a user's data
    folder)."""
    image, _ = ensure_phantom(spec, default_cache_dir())
    folder = factory.mktemp("scans")
    shutil.copy(image, folder / image.name)
    return folder


def run_suite(data_dir: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The main job on ``data_dir`` (two timed rounds unless ``extra`` says otherwise)."""
    return run_pytest(
        tmp_path,
        "--benchmark-only",
        "--segbench-data",
        str(data_dir),
        "--segbench-rounds",
        "2",
        *extra,
    )


class ScriptedClock:
    """A clock for timing tests: ``clock()`` reads the time (seconds), :meth:`sleep` moves it on;
    nothing else does, so measured durations are exactly what the test scripted, whatever the
    machine's load."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
