"""PNG plots of a saved run and of one case's mask disagreement.

matplotlib is optional (``pip install segbench[report]``): it is imported when a plot is drawn,
never when this module is imported, and only through its object API on the Agg canvas, so
pyplot's global backend and figure registry are left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segbench.errors import SegbenchError
from segbench.results.runs import CaseRecord

REFERENCE_COLOR = "#4C72B0"
CANDIDATE_COLOR = "#DD8452"
FAIL_COLOR = "#C44E52"
DICE_ERROR_FLOOR = 1e-5  # 1 - Dice below this (identical masks included) gets the lightest colour
CT_WINDOW = (-200.0, 300.0)  # HU: soft tissue, as in the disagreement panels


class PlotError(SegbenchError):
    """A plot that cannot be drawn (matplotlib missing, arrays of the wrong shape)."""


def require_matplotlib() -> Any:
    """The ``matplotlib`` module, or a :class:`PlotError` that says how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotError(
            f"the plots need matplotlib, which is not installed ({exc}). "
            "Fix: pip install 'segbench[report]' (or pass --no-plots to `segbench report`)"
        ) from exc
    return matplotlib


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _unwritable(path: Path, exc: OSError) -> PlotError:
    return PlotError(
        f"{path}: cannot write the plot ({type(exc).__name__}: {exc}). Fix: choose a writable "
        "report folder (--segbench-report-dir, or --out of `segbench report`)"
    )


def prepare_target(path: str | Path) -> Path:
    """Check that matplotlib is there and that ``path``'s folder exists (created if needed) and
    is writable, before anything is drawn: both problems become a :class:`PlotError`."""
    require_matplotlib()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only file system, a file where a folder should be
        raise _unwritable(path, exc) from exc
    if path.is_dir():
        raise PlotError(f"{path}: is a folder. Fix: pass a .png file name")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise _unwritable(path, PermissionError(f"{path.parent} is not writable"))
    return path


def _save(fig: Any, path: str | Path) -> Path:
    path = prepare_target(path)
    try:
        fig.savefig(path, format="png", facecolor="white")
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    return path


def short_name(case: str) -> str:
    """A case id without its NIfTI extension, for axis labels."""
    for ext in (".nii.gz", ".nii"):
        if case.endswith(ext):
            return case[: -len(ext)]
    return case


def _require_rows(rows: Sequence[CaseRecord], what: str) -> None:
    if not rows:
        raise PlotError(f"{what}: the run has no cases. Fix: pass a run with segbench cases")


def plot_latency(rows: Sequence[CaseRecord], path: str | Path) -> Path:
    """Grouped horizontal bars: reference and candidate latency per case, speed-up annotated."""
    _require_rows(rows, "plot_latency")
    path = prepare_target(path)
    rows = list(rows)
    n = len(rows)
    fig = _figure(8.0, 1.2 + 0.55 * n)
    ax = fig.add_subplot()
    y = np.arange(n)
    height = 0.38
    ref = [r.reference_s if r.reference_s is not None else np.nan for r in rows]
    cand = [r.candidate_s if r.candidate_s is not None else np.nan for r in rows]
    ref_label = _role_label(rows, "reference")
    cand_label = _role_label(rows, "candidate")
    ax.barh(y - height / 2, ref, height, color=REFERENCE_COLOR, label=ref_label)
    ax.barh(y + height / 2, cand, height, color=CANDIDATE_COLOR, label=cand_label)
    top = np.nanmax([*ref, *cand, 0.0])
    for yi, r in zip(y, rows, strict=True):
        speedup = r.speedup
        longest = np.nanmax([r.reference_s or 0.0, r.candidate_s or 0.0])
        if speedup is not None and math.isfinite(speedup):
            ax.text(
                longest + 0.01 * top,
                yi,
                f"{speedup:.2f}x",
                va="center",
                fontsize=9,
                color=FAIL_COLOR if "speedup" in r.failed_gates else "black",
            )
    ax.set_yticks(y, [short_name(r.case) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.12 if top > 0 else 1.0)
    ax.set_xlabel(f"latency per volume (s, {rows[0].estimator} of the timed rounds)")
    ax.set_title("End-to-end latency per case (speed-up = reference / candidate)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _role_label(rows: Sequence[CaseRecord], role: str) -> str:
    for r in rows:
        res = r.roles.get(role)
        if res is not None:
            return f"{role}: {res.backend} ({res.provider})"
    return role


def plot_speedup_vs_voxels(rows: Sequence[CaseRecord], path: str | Path) -> Path:
    """Speed-up against the number of voxels (log x), one labelled point per case; the
    no-gain line at 1.0; cases with a failed gate in red."""
    _require_rows(rows, "plot_speedup_vs_voxels")
    path = prepare_target(path)
    points = [
        (r, float(r.voxels), r.speedup)
        for r in rows
        if r.voxels and r.speedup is not None and math.isfinite(r.speedup)
    ]
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="no speed-up")
    for passed in (True, False):
        pts = [(x, s) for r, x, s in points if r.passed == passed]
        if pts:
            xs, ss = zip(*pts, strict=True)
            ax.scatter(
                xs,
                ss,
                s=45,
                color=CANDIDATE_COLOR if passed else FAIL_COLOR,
                edgecolor="black",
                linewidth=0.5,
                zorder=3,
                label="gates passed" if passed else "a gate failed",
            )
    for r, x, s in points:
        ax.annotate(
            short_name(r.case),
            (x, s),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7.5,
        )
    ax.set_xscale("log")
    if points:
        xs_all = [x for _, x, _ in points]
        ss_all = [s for _, _, s in points]
        ax.set_xlim(min(xs_all) / 1.6, max(xs_all) * 2.5)
        low, high = min([*ss_all, 1.0]), max([*ss_all, 1.0])
        pad = max(0.05, 0.15 * (high - low))
        ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("voxels of the input volume (log scale)")
    ax.set_ylabel("speed-up (reference / candidate)")
    ax.set_title("Speed-up against volume size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_class_dice(
    rows: Sequence[CaseRecord],
    path: str | Path,
    class_names: Mapping[str, str] | None = None,
) -> Path:
    """Heatmap of the candidate-vs-reference Dice per class (columns) and case (rows), each
    cell annotated with the Dice and coloured by 1 - Dice on a log scale (floor 1e-5); a class
    absent from both masks of a case is left grey."""
    _require_rows(rows, "plot_class_dice")
    path = prepare_target(path)
    labels = sorted(
        {label for r in rows for label in r.class_dice},
        key=lambda k: (int(k), "") if k.isdigit() else (1 << 30, k),
    )
    fig = _figure(max(5.0, 1.6 + 0.9 * max(len(labels), 1)), 1.4 + 0.5 * len(rows))
    ax = fig.add_subplot()
    grid = np.full((len(rows), max(len(labels), 1)), np.nan)
    for i, r in enumerate(rows):
        for j, label in enumerate(labels):
            if label in r.class_dice:
                grid[i, j] = r.class_dice[label]
    # Colour = 1 - Dice on a log scale: near-identical masks (Dice 0.9999 vs 0.999) stay apart.
    finite = grid[np.isfinite(grid)]
    error = np.clip(1.0 - grid, DICE_ERROR_FLOOR, 1.0)
    top = float(max(error[np.isfinite(error)].max(initial=0.0), 1e-2))
    import matplotlib
    from matplotlib.colors import LogNorm

    cmap = matplotlib.colormaps["YlOrRd"].with_extremes(bad="#eeeeee")
    norm = LogNorm(vmin=DICE_ERROR_FLOOR, vmax=top)
    image = ax.imshow(np.ma.masked_invalid(error), cmap=cmap, norm=norm, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(len(labels)):
            value = grid[i, j]
            if np.isfinite(value):
                dark = float(norm(error[i, j])) > 0.6
                ax.text(
                    j,
                    i,
                    f"{value:.5f}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if dark else "black",
                )
    if not finite.size:
        ax.text(0, 0, "no Dice in this run", ha="center", va="center")
    names = class_names or {}
    ax.set_xticks(range(len(labels)), [names.get(k, f"label {k}") for k in labels], fontsize=8)
    ax.set_yticks(range(len(rows)), [short_name(r.case) for r in rows], fontsize=8)
    ax.set_title("Dice per class, candidate vs reference mask (colour: 1 - Dice, log)")
    fig.colorbar(image, ax=ax, label="1 - Dice", shrink=0.9)
    return _save(fig, path)


def disagreement_slice(reference: np.ndarray, candidate: np.ndarray) -> int:
    """The axial slice (index along the last axis, Z of an (X, Y, Z) RAS array) where the two
    label maps differ in the most voxels; the lowest such index on ties. Without any
    disagreement: the slice with the most reference foreground."""
    counts = np.count_nonzero(reference != candidate, axis=(0, 1))
    if counts.max(initial=0) > 0:
        return int(np.argmax(counts))
    return int(np.argmax(np.count_nonzero(reference, axis=(0, 1))))


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Slice ``z`` of an (X, Y, Z) RAS volume as an image in radiological view: anterior up,
    the patient's right on the viewer's left (rows = Y descending, columns = X descending)."""
    return volume[::-1, ::-1, z].T


def plot_disagreement(
    ct: np.ndarray,
    reference: np.ndarray,
    candidate: np.ndarray,
    path: str | Path,
    title: str,
    *,
    spacing: Sequence[float] | None = None,
) -> int:
    """Save one PNG with four panels of the axial slice where the two label maps disagree most:
    the CT (window -200..300 HU), the reference mask over it, the candidate mask over it, and
    the voxels whose labels differ. Arrays are (X, Y, Z) in RAS, all of one shape; ``spacing``
    (mm, optional) sets the pixel aspect. Returns the slice index along Z."""
    arrays = {"ct": ct, "reference": reference, "candidate": candidate}
    for name, array in arrays.items():
        if np.ndim(array) != 3:
            raise PlotError(
                f"plot_disagreement: {name} has shape {np.shape(array)}, not 3D. Fix: pass the "
                "(X, Y, Z) volumes of one case"
            )
    if not ct.shape == reference.shape == candidate.shape:
        raise PlotError(
            f"plot_disagreement: shapes differ (ct {ct.shape}, reference {reference.shape}, "
            f"candidate {candidate.shape}). Fix: resample the masks to the CT grid first"
        )
    path = prepare_target(path)
    z = disagreement_slice(reference, candidate)
    ct_img = _axial(np.asarray(ct, dtype=np.float32), z)
    ref_img = _axial(reference, z)
    cand_img = _axial(candidate, z)
    diff = ref_img != cand_img
    n_diff = int(diff.sum())

    import matplotlib
    from matplotlib.colors import ListedColormap

    n_labels = int(max(reference.max(initial=0), candidate.max(initial=0), 1))
    tab10 = matplotlib.colormaps["tab10"]
    label_cmap = ListedColormap([tab10(i % 10) for i in range(n_labels)])
    aspect = 1.0
    if spacing is not None and len(spacing) >= 2 and spacing[0] > 0:
        aspect = float(spacing[1]) / float(spacing[0])  # rows are Y, columns are X

    panel = 3.2  # inches per panel; the height follows the slice's shape and pixel aspect
    rows_, cols_ = ct_img.shape
    fig = _figure(4 * panel + 0.4, min(max(panel * rows_ * aspect / cols_, 1.5), 8.0) + 0.9)
    axes = fig.subplots(1, 4)
    window = {"cmap": "gray", "vmin": CT_WINDOW[0], "vmax": CT_WINDOW[1], "aspect": aspect}
    overlay = {
        "cmap": label_cmap,
        "vmin": 0.5,
        "vmax": n_labels + 0.5,
        "alpha": 0.55,
        "interpolation": "nearest",
        "aspect": aspect,
    }
    axes[0].imshow(ct_img, **window)
    axes[0].set_title(f"CT, window {CT_WINDOW[0]:g}..{CT_WINDOW[1]:g} HU", fontsize=9)
    for ax, mask, name in ((axes[1], ref_img, "reference"), (axes[2], cand_img, "candidate")):
        ax.imshow(ct_img, **window)
        ax.imshow(np.ma.masked_equal(mask, 0), **overlay)
        ax.set_title(f"{name} mask ({int(np.count_nonzero(mask))} fg voxels)", fontsize=9)
    axes[3].imshow(ct_img, **{**window, "alpha": 0.5})
    axes[3].imshow(
        np.ma.masked_equal(diff.astype(np.uint8), 0),
        cmap=ListedColormap([FAIL_COLOR]),
        vmin=0.5,
        vmax=1.5,
        interpolation="nearest",
        aspect=aspect,
    )
    axes[3].set_title(f"labels differ ({n_diff} voxels)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} - axial slice z={z} of {ct.shape[2]} (radiological view)", fontsize=10)
    _save(fig, path)
    return z
