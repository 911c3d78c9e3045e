"""The drawing surface shared by segbench's PNGs: matplotlib imported only when a plot is drawn
(``pip install segbench[report]``), figures on the Agg canvas through the object API (pyplot's
global backend and figure registry are left alone), no PNG wider than :data:`MAX_WIDTH_PX`, and
the target checked before anything is drawn."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segbench.cachefiles import write_atomic
from segbench.errors import SegbenchError

DPI = 110
MAX_WIDTH_PX = 4000  # a PNG wider than this is unreadable in a report or a job summary
MAX_HEIGHT_PX = 8000


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
