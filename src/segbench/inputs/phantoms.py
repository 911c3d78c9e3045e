"""Deterministic synthetic CT phantoms (HU volume + ground-truth labels) on the study's grids.

Each phantom is drawn from ``numpy.random.default_rng(seed)``: the anatomy parameters come
first (so one seed gives the same anatomy on every grid), the noise last.  Volumes are built on
an RAS-aligned voxel grid whose world origin (mm) is the volume centre, then reoriented to the
grid's storage axcodes, so the body lands at the same physical place whatever the orientation.

World convention (RAS+): +x towards the patient's right, +y anterior, +z superior, so the liver
sits at x > 0 and the spleen at x < 0.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornts
from scipy import ndimage

from segbench.cachefiles import clean_stale_temps, write_atomic

LABELS: dict[int, str] = {
    0: "background",
    1: "spleen",
    2: "kidney",
    3: "liver",
    4: "lung",
    5: "aorta",
    6: "spine",
}
STORAGES = ("int16_scaled", "int16", "float32")
log = logging.getLogger(__name__)
HU_MIN, HU_MAX = -1024.0, 3071.0
_SCALED_INTER = -1024.0

# Tissue codes of the rendering: (name, HU, label).  Painting order decides overlaps.
_TISSUES: tuple[tuple[str, float, int], ...] = (
    ("air", -1000.0, 0),
    ("fat", -100.0, 0),
    ("muscle", 40.0, 0),
    ("bowel", 25.0, 0),
    ("gas", -700.0, 0),
    ("lung", -850.0, 4),
    ("liver", 60.0, 3),
    ("spleen", 100.0, 1),
    ("kidney", 150.0, 2),
    ("aorta", 200.0, 5),
    ("cortex", 800.0, 6),
    ("marrow", 400.0, 6),
)
_CODE = {name: i for i, (name, _, _) in enumerate(_TISSUES)}
_LABEL_LUT = np.array([lab for _, _, lab in _TISSUES], dtype=np.uint8)


@dataclass(frozen=True)
class GridSpec:
    """A voxel grid as stored on disk: ``shape``/``spacing`` follow the stored axes."""

    name: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: str = "RAS"
    storage: str = "int16_scaled"

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"grid {self.name!r}: shape must be 3 positive ints, got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"grid {self.name!r}: spacing must be 3 positive mm values")
        if self.storage not in STORAGES:
            raise ValueError(f"grid {self.name!r}: storage must be one of {', '.join(STORAGES)}")
        codes = self.orientation
        if (
            len(codes) != 3
            or not set(codes) <= set("RLAPSI")
            or sorted(ornts.axcodes2ornt(tuple(codes))[:, 0]) != [0, 1, 2]
        ):
            raise ValueError(f"grid {self.name!r}: bad orientation {self.orientation!r}")


@dataclass(frozen=True)
class PhantomSpec:
    """One phantom: a grid and the seed of its anatomy and noise."""

    grid: GridSpec
    seed: int

    @property
    def case_id(self) -> str:
        return f"phantom_{self.grid.name}_{self.grid.orientation.lower()}_s{self.seed:03d}"


_STUDY_GRIDS: tuple[GridSpec, ...] = (
    # MSD-spleen-like: 512 x 512 in-plane, thick slices, z field of view 200-280 mm
    GridSpec("spleen512x40", (512, 512, 40), (0.79, 0.79, 5.0), "LPS"),
    GridSpec("spleen512x51", (512, 512, 51), (0.71, 0.71, 5.0), "RAS"),
    GridSpec("spleen512x56", (512, 512, 56), (0.86, 0.86, 5.0), "RAS", "int16"),
    GridSpec("spleen512x80", (512, 512, 80), (0.93, 0.93, 3.0), "LPS"),
    GridSpec("spleen512x93", (512, 512, 93), (0.79, 0.79, 2.5), "LPS"),
    GridSpec("spleen512x112", (512, 512, 112), (0.70, 0.70, 2.5), "RAS"),
    # Learn2Reg-lung-like thorax crop
    GridSpec("lung192x208", (192, 192, 208), (1.75, 1.25, 1.75), "LAS", "int16"),
    # abdomen crops
    GridSpec("abd185x232", (185, 232, 256), (2.0, 1.6, 1.5), "RAS"),
    GridSpec("abd255x178", (255, 178, 256), (1.5, 2.0, 1.5), "LAS"),
)
_TRAIN_GRIDS: tuple[GridSpec, ...] = (
    GridSpec("train3mm", (128, 112, 96), (3.0, 3.0, 3.0), "RAS", "float32"),
    GridSpec("train2p5mm", (152, 136, 112), (2.5, 2.5, 2.5), "LPS"),
    GridSpec("train3x4mm", (128, 112, 72), (3.0, 3.0, 4.0), "LAS", "int16"),
    # like the study's grids (thin in-plane + thick slices, thorax crop, abdomen crop), smaller
    GridSpec("trainthin", (320, 320, 48), (1.2, 1.2, 5.0), "LPS"),
    GridSpec("trainthorax", (112, 96, 128), (3.0, 2.5, 2.5), "LAS", "int16"),
    GridSpec("trainabd", (160, 192, 200), (2.0, 1.6, 1.5), "RAS"),
)
GRIDS: dict[str, GridSpec] = {g.name: g for g in _STUDY_GRIDS + _TRAIN_GRIDS}
STUDY_GRID_NAMES: tuple[str, ...] = tuple(g.name for g in _STUDY_GRIDS)

# Extra z shift (mm) of the anatomy per grid: moves the thorax into the lung crop.
_GRID_Z_SHIFT: dict[str, float] = {"lung192x208": -125.0, "trainthorax": -125.0}


def _specs(names: list[str], seeds: range) -> list[PhantomSpec]:
    return [PhantomSpec(GRIDS[names[i % len(names)]], s) for i, s in enumerate(seeds)]


def phantom_set(name: str) -> list[PhantomSpec]:
    """The named set of phantoms: "quick" (4), "seed20" (20), "train" (48) or "val" (6)."""
    train_cycle = ["train3mm", "train2p5mm", "trainthin", "trainthorax", "train3x4mm", "trainabd"]
    sets = {
        "quick": lambda: _specs(
            ["spleen512x40", "lung192x208", "abd185x232", "spleen512x56"], range(101, 105)
        ),
        "seed20": lambda: _specs(list(STUDY_GRID_NAMES), range(201, 221)),
        "train": lambda: _specs(train_cycle, range(1000, 1048)),
        "val": lambda: _specs(train_cycle, range(2000, 2006)),
    }
    if name not in sets:
        raise ValueError(f"unknown phantom set {name!r}; valid sets: {', '.join(sets)}")
    return sets[name]()


# ----------------------------------------------------------------------------- anatomy
# One organ: (tissue, centre mm, semi-axes mm, angle about z in rad, cylinder along z?)
_Organ = tuple[str, tuple[float, float, float], tuple[float, float, float], float, bool]


@dataclass(frozen=True)
class _Anatomy:
    body: tuple[float, float, float, float]  # semi-x, semi-y, centre y, fat thickness (mm)
    organs: tuple[_Organ, ...]
    hu: np.ndarray  # float32 HU per tissue code
    noise_std: float


def _draw_anatomy(rng: np.random.Generator, z_shift: float) -> _Anatomy:
    """Draw every random anatomy parameter, in a fixed order, from ``rng``."""

    def f() -> float:  # size factor +-15 %
        return float(rng.uniform(0.85, 1.15))

    def d(mm: float = 12.0) -> float:  # centre offset
        return float(rng.uniform(-mm, mm))

    def ellipsoid(
        t: str,
        c: tuple[float, float, float],
        s: tuple[float, float, float],
        ang: float = 0.0,
        spread: float = 10.0,
    ) -> _Organ:
        semi = (s[0] * f(), s[1] * f(), s[2] * f())
        angle = float(np.deg2rad(ang + rng.uniform(-spread, spread)))
        return (t, (c[0] + d(), c[1] + d(), c[2] + d()), semi, angle, False)

    a, b = float(rng.uniform(150, 170)), float(rng.uniform(100, 120))
    cy, fat = float(rng.uniform(-5, 5)), float(rng.uniform(8, 14))
    ai, bi = a - fat, b - fat
    dome = 50.0 + float(rng.uniform(-30, 30)) + z_shift  # z of the liver dome
    spine_y = cy - b + 45.0 + d(4)
    organs: list[_Organ] = [
        ("fat", (0.0, cy - 5.0, dome - 230.0), (0.8 * ai, 0.75 * bi, 210.0), 0.0, False),
    ]
    for _ in range(int(rng.integers(4, 9))):  # bowel loops, some with gas
        tissue = "gas" if rng.random() < 0.3 else "bowel"
        centre = (
            float(rng.uniform(-90, 90)),
            cy + float(rng.uniform(-0.1, 0.6)) * b,
            dome - float(rng.uniform(80, 220)),
        )
        semi = (float(rng.uniform(15, 30)), float(rng.uniform(15, 30)), float(rng.uniform(15, 30)))
        organs.append((tissue, centre, semi, 0.0, False))
    organs += [
        ellipsoid("lung", (75.0, cy - 5.0, dome + 85.0), (60.0, 75.0, 105.0)),
        ellipsoid("lung", (-80.0, cy - 5.0, dome + 85.0), (55.0, 75.0, 100.0)),
        ellipsoid("muscle", (-15.0, cy + 25.0, dome + 40.0), (55.0, 50.0, 55.0), 20.0),  # heart
        ellipsoid("liver", (60.0, cy - 5.0, dome - 70.0), (90.0, 80.0, 70.0), -10.0),
        ellipsoid("spleen", (-85.0, cy - 30.0, dome - 60.0), (45.0, 28.0, 50.0), -35.0),
        ellipsoid("kidney", (60.0, spine_y + 5.0, dome - 125.0), (22.0, 28.0, 50.0), 25.0),
        ellipsoid("kidney", (-60.0, spine_y + 5.0, dome - 115.0), (22.0, 28.0, 50.0), -25.0),
    ]
    r_aorta = float(rng.uniform(10, 12))
    organs.append(
        ("aorta", (-18.0 + d(4), spine_y + 30.0, 0.0), (r_aorta, r_aorta, 0.0), 0.0, True)
    )
    sx, sy = 20.0 * f(), 16.0 * f()
    organs.append(("cortex", (0.0, spine_y, 0.0), (sx, sy, 0.0), 0.0, True))
    organs.append(("marrow", (0.0, spine_y, 0.0), (sx - 3.0, sy - 3.0, 0.0), 0.0, True))
    hu = np.array([h for _, h, _ in _TISSUES], dtype=np.float32)
    hu[1:] += rng.uniform(-5, 5, size=len(hu) - 1).astype(np.float32)
    return _Anatomy((a, b, cy, fat), tuple(organs), hu, float(rng.uniform(15, 25)))


def _span(coord: np.ndarray, lo: float, hi: float) -> slice:
    return slice(int(np.searchsorted(coord, lo, "left")), int(np.searchsorted(coord, hi, "right")))


def _paint(
    tissue: np.ndarray, inner: np.ndarray, xyz: tuple[np.ndarray, ...], organ: _Organ
) -> None:
    """Overwrite the voxels of ``organ`` inside the body's muscle wall ``inner`` (2D x-y)."""
    name, (cx, cy, cz), (a, b, c), angle, cylinder = organ
    x, y, z = xyz
    r = max(a, b)
    sx, sy = _span(x, cx - r, cx + r), _span(y, cy - r, cy + r)
    sz = slice(None) if cylinder else _span(z, cz - c, cz + c)
    view = tissue[sx, sy, sz]
    if view.size == 0:
        return
    dx, dy = (x[sx] - cx)[:, None, None], (y[sy] - cy)[None, :, None]
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u, v = (cos * dx + sin * dy) / a, (cos * dy - sin * dx) / b
    q = u * u + v * v
    if not cylinder:
        w = ((z[sz] - cz) / c)[None, None, :]
        q = q + w * w
    mask = (q <= 1.0) & inner[sx, sy, None]
    view[np.broadcast_to(mask, view.shape)] = _CODE[name]


def _render_ras(
    anat: _Anatomy, shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> np.ndarray:
    """uint8 tissue codes on the RAS grid (world origin at the volume centre)."""
    xyz = tuple(
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * np.float32(s))
        for n, s in zip(shape, spacing, strict=True)
    )
    a, b, cy, fat = anat.body
    x2, y2 = xyz[0][:, None], xyz[1][None, :] - cy
    outer = (x2 / a) ** 2 + (y2 / b) ** 2 <= 1.0
    inner = (x2 / (a - fat)) ** 2 + (y2 / (b - fat)) ** 2 <= 1.0
    plane = np.where(inner, _CODE["muscle"], np.where(outer, _CODE["fat"], _CODE["air"]))
    tissue = np.empty(shape, dtype=np.uint8)
    tissue[...] = plane.astype(np.uint8)[:, :, None]
    for organ in anat.organs:
        _paint(tissue, inner, xyz, organ)
    return tissue


# ----------------------------------------------------------------------------- images
def _ras_geometry(
    grid: GridSpec,
) -> tuple[tuple[int, int, int], tuple[float, float, float], np.ndarray]:
    """RAS shape and spacing of ``grid`` and the RAS -> storage orientation transform."""
    storage = ornts.axcodes2ornt(tuple(grid.orientation))
    shape, spacing = [0, 0, 0], [0.0, 0.0, 0.0]
    for i, (axis, _) in enumerate(storage):
        shape[int(axis)], spacing[int(axis)] = grid.shape[i], grid.spacing[i]
    transform = ornts.ornt_transform(ornts.axcodes2ornt(("R", "A", "S")), storage)
    return (shape[0], shape[1], shape[2]), (spacing[0], spacing[1], spacing[2]), transform


def _nifti_bytes(array: np.ndarray, affine: np.ndarray, scaled: bool, descrip: str) -> bytes:
    img = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    hdr = img.header
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = descrip.encode()[:79]
    if scaled:  # stored value = HU + 1024 (written unscaled, read back through slope/inter)
        hdr.set_slope_inter(1.0, _SCALED_INTER)
    return bytes(img.to_bytes())


def _phantom_bytes(spec: PhantomSpec) -> tuple[bytes, bytes]:
    grid = spec.grid
    rng = np.random.default_rng(spec.seed)
    anat = _draw_anatomy(rng, _GRID_Z_SHIFT.get(grid.name, 0.0))
    shape, spacing, transform = _ras_geometry(grid)
    tissue = _render_ras(anat, shape, spacing)
    hu = ndimage.gaussian_filter(anat.hu[tissue], sigma=0.7, truncate=3.0, output=np.float32)
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(anat.noise_std)
    hu += noise
    del noise
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    labels = _LABEL_LUT[tissue]
    del tissue
    ras_affine = np.diag([*spacing, 1.0])
    ras_affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(shape, spacing, strict=True)]
    affine = ras_affine @ ornts.inv_ornt_aff(transform, shape)
    if grid.storage == "float32":
        stored: np.ndarray = hu
    else:
        np.rint(hu, out=hu)  # round in HU, so both int16 schemes hold the same values
        if grid.storage == "int16_scaled":
            hu -= np.float32(_SCALED_INTER)
        stored = hu.astype(np.int16)
    del hu
    ct = _nifti_bytes(
        ornts.apply_orientation(stored, transform),
        affine,
        grid.storage == "int16_scaled",
        f"segbench phantom {spec.case_id}",
    )
    seg = _nifti_bytes(
        ornts.apply_orientation(labels, transform), affine, False, f"segbench labels {spec.case_id}"
    )
    return ct, seg


def generate_phantom(spec: PhantomSpec) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """(CT image in HU through the grid's storage scheme, uint8 label image), same affine."""
    ct, seg = _phantom_bytes(spec)
    return nib.Nifti1Image.from_bytes(ct), nib.Nifti1Image.from_bytes(seg)


def default_cache_dir() -> Path:
    """``$SEGBENCH_CACHE_DIR`` if set, else ``~/.cache/segbench``."""
    env = os.environ.get("SEGBENCH_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "segbench"


def _write_gz_atomic(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        with (
            tmp.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as gz,
        ):
            gz.write(data)

    write_atomic(path, write)


def ensure_phantom(
    spec: PhantomSpec,
    cache_dir: Path | None = None,
    announce: Callable[[str], None] | None = None,
) -> tuple[Path, Path]:
    """Paths of ``<cache>/phantoms/<case_id>.nii.gz`` and ``..._seg.nii.gz``, written once.
    A generation (not a cache hit) is announced first: logged on ``segbench.phantoms`` (INFO)
    and passed to ``announce`` when given."""
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "phantoms"
    image, labels = folder / f"{spec.case_id}.nii.gz", folder / f"{spec.case_id}_seg.nii.gz"
    if not (image.is_file() and labels.is_file()):
        message = f"generating phantom {spec.case_id} into {folder}..."
        log.info(message)
        if announce is not None:
            announce(message)
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(folder)
        ct, seg = _phantom_bytes(spec)
        for path, data in ((labels, seg), (image, ct)):
            if not path.is_file():
                _write_gz_atomic(path, data)
    return image, labels
