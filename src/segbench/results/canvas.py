"""The drawing surface shared by segbench's PNGs: matplotlib imported only when a plot is drawn
(``pip install segbench[report]``), figures on the Agg canvas through the object API (pyplot's
global backend and figure registry are left alone), no PNG wider than :data:`MAX_WIDTH_PX`, and
the target checked before anything is drawn. The per-class, per-case heatmaps (Dice and NSD)
share their grid, layout, colour bands, cell labels and legend here (:func:`class_grid`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segbench.cachefiles import write_atomic
from segbench.errors import SegbenchError

DPI = 110
MAX_WIDTH_PX = 4000  # a PNG wider than this is unreadable in a report or a job summary
MAX_HEIGHT_PX = 8000
CLASSES_AS_COLUMNS = 30  # more classes than this: classes go down the rows (names readable)
ABSENT_COLOR = "#e6e6e6"  # a class absent from both masks of a case


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


def figure(width: float, height: float) -> Any:
    """A constrained-layout figure of ``width`` x ``height`` inches, capped so that the PNG is
    at most :data:`MAX_WIDTH_PX` wide and :data:`MAX_HEIGHT_PX` high."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = (min(width, MAX_WIDTH_PX / DPI), min(height, MAX_HEIGHT_PX / DPI))
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
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


def save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (white background) at its own size."""
    path = prepare_target(path)
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", facecolor="white"))
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    return path


def short_name(case: str) -> str:
    """A case id without its NIfTI extension, for axis labels."""
    for ext in (".nii.gz", ".nii"):
        if case.endswith(ext):
            return case[: -len(ext)]
    return case


def class_grid_ticks(
    ax: Any, x_ticks: Sequence[str], y_ticks: Sequence[str], by_rows: bool
) -> None:
    """Tick labels of a per-class, per-case grid: cases across and classes down the rows when
    ``by_rows`` (many classes), else classes across and cases down."""
    ax.set_xticks(range(len(x_ticks)), x_ticks, fontsize=7.5, rotation=45 if by_rows else 60)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")
    ax.set_yticks(range(len(y_ticks)), y_ticks, fontsize=7 if by_rows else 8)
    ax.set_xlabel("case" if by_rows else "class")
    ax.set_ylabel("class" if by_rows else "case")


def class_order(labels: Iterable[str]) -> list[str]:
    """Class labels in label order: label numbers ascending, then other names alphabetically."""
    return sorted(labels, key=lambda k: (int(k), "") if k.isdigit() else (1 << 30, k))


@dataclass(frozen=True)
class ClassGrid:
    """One figure per case and class, laid out for a heatmap. ``values`` is the grid as drawn:
    cases down the rows and classes across, transposed when ``by_rows`` (more than
    :data:`CLASSES_AS_COLUMNS` classes go down the rows, by name); NaN where a case has no
    figure for the class. ``cell_width`` and ``size`` (width, height) are in inches."""

    values: np.ndarray
    labels: list[str]
    x_ticks: list[str]
    y_ticks: list[str]
    by_rows: bool
    cell_width: float
    size: tuple[float, float]


def class_grid(
    per_case: Sequence[Mapping[str, float]],
    case_ticks: Sequence[str],
    class_names: Mapping[str, str] | None,
) -> ClassGrid:
    """The heatmap grid of ``per_case`` (one ``{label: value}`` per case, in ``case_ticks``'
    order) over every label of any case (:func:`class_order`), named by ``class_names``
    (``"label <n>"`` otherwise), and the figure size that keeps the cells readable."""
    labels = class_order({k for values in per_case for k in values})
    names = class_names or {}
    class_ticks = [names.get(k, f"label {k}") for k in labels] or ["-"]
    grid = np.full((len(per_case), max(len(labels), 1)), np.nan)
    for i, values in enumerate(per_case):
        for j, label in enumerate(labels):
            if label in values:
                grid[i, j] = values[label]
    n_cases = len(per_case)
    if len(labels) > CLASSES_AS_COLUMNS:  # classes down the rows, cases across
        cell_w = min(1.3, max(0.5, 9.0 / max(n_cases, 1)))
        width, height = 3.2 + cell_w * n_cases, 2.6 + 0.19 * len(labels)
        return ClassGrid(
            grid.T, labels, list(case_ticks), class_ticks, True, cell_w, (max(width, 6.5), height)
        )
    cell_w = 0.85
    width, height = 3.0 + cell_w * max(len(labels), 1), 2.8 + 0.42 * n_cases
    return ClassGrid(
        grid, labels, class_ticks, list(case_ticks), False, cell_w, (max(width, 6.5), height)
    )


def band_scale(
    bands: Sequence[tuple[float, str, str]], drop_from: float = math.inf
) -> tuple[list[float], list[str], list[str]]:
    """A heatmap's colour scale from ``bands`` (``(start, colour, name)``, ascending starts):
    the band edges (closed at 1 + 1e-9), one colour and one name per band. A band that starts
    at or below the previous band's start (a threshold set that low) takes its place; one that
    starts at ``drop_from`` or above is left out."""
    edges: list[float] = []
    colors: list[str] = []
    names: list[str] = []
    for start, color, name in bands:
        if edges and start <= edges[-1]:
            colors[-1], names[-1] = color, name
        elif start < drop_from:
            edges.append(start)
            colors.append(color)
            names.append(name)
    return [*edges, 1.0 + 1e-9], colors, names


def draw_bands(ax: Any, grid: np.ndarray, edges: Sequence[float], colors: Sequence[str]) -> Any:
    """Draw ``grid`` on ``ax`` in colour bands (``colors[i]`` from ``edges[i]`` up to
    ``edges[i + 1]``), NaN cells in :data:`ABSENT_COLOR`; returns the image (for a colour bar)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(colors).with_extremes(bad=ABSENT_COLOR)
    return ax.imshow(
        np.ma.masked_invalid(grid), cmap=cmap, norm=BoundaryNorm(edges, cmap.N), aspect="auto"
    )


def annotate_cells(
    ax: Any,
    grid: np.ndarray,
    text: Callable[[float], str],
    dark: Callable[[float], bool],
    fontsize: float,
) -> None:
    """Write ``text(value)`` in every finite cell of ``grid``, white on a ``dark`` cell."""
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            value = grid[i, j]
            if np.isfinite(value):
                ax.text(
                    j,
                    i,
                    text(value),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if dark(value) else "black",
                )


def band_legend(fig: Any, colors: Sequence[str], names: Sequence[str]) -> None:
    """The legend below a heatmap: one patch per colour band, and the absent class's grey."""
    from matplotlib.patches import Patch

    fig.legend(
        handles=[Patch(color=c, label=n) for c, n in zip(colors, names, strict=True)]
        + [Patch(color=ABSENT_COLOR, label="class absent from both masks")],
        loc="outside lower center",
        ncols=max(1, min(4, int(fig.get_figwidth() / 3.0))),  # columns of ~3 inches fit
        fontsize=7.5,
        frameon=False,
    )
