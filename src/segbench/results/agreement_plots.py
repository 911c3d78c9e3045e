"""The heatmap of normalised surface Dice per class and case (``segbench report``'s
``class_nsd.png``), coloured in bands whose lowest edge is the ``nsd_min`` gate. Up to 30
classes they are the columns; more go down the rows, by name, so 118 classes stay readable.
matplotlib is imported when the plot is drawn (:mod:`segbench.results.canvas`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segbench.results.canvas import (
    PlotError,
    class_grid_ticks,
    figure,
    prepare_target,
    save,
    short_name,
)
from segbench.results.record import CaseRecord
from segbench.settings.config import Gates

CLASSES_AS_COLUMNS = 30
ABSENT_COLOR = "#e6e6e6"


def nsd_bands(gates: Gates) -> tuple[list[float], list[str], list[str]]:
    """Band edges (ascending, 0 to 1), colours and names: below ``nsd_min`` red (the gate
    fails, if the class is big enough), then greens."""
    bands = [
        (0.0, "#7f0000", "0 (vanished or appeared)"),
        (1e-9, "#C44E52", f"< nsd_min {gates.nsd_min:g} (fails if gated)"),
        (gates.nsd_min, "#f2a541", f">= nsd_min {gates.nsd_min:g}"),
        (0.99, "#c7e9c0", ">= 0.99"),
        (0.999, "#74c476", ">= 0.999"),
        (1.0 - 1e-9, "#238b45", "1"),
    ]
    edges: list[float] = []
    colors: list[str] = []
    names: list[str] = []
    for start, color, name in bands:
        if edges and start <= edges[-1]:
            colors[-1], names[-1] = color, name
            continue
        edges.append(start)
        colors.append(color)
        names.append(name)
    return [*edges, 1.0 + 1e-9], colors, names


def plot_class_nsd(
    rows: Sequence[CaseRecord],
    path: str | Path,
    class_names: Mapping[str, str] | None = None,
    gates: Gates | None = None,
) -> Path:
    """Heatmap of the candidate-vs-reference NSD per class and case (grey: a class absent
    from both masks, or a case saved without the figures)."""
    scored = [r for r in rows if r.agreement is not None]
    if not scored:
        raise PlotError(
            "plot_class_nsd: no case of the run has NSD figures (a run saved before they "
            "existed). Fix: run the suite again with this version of segbench"
        )
    path = prepare_target(path)
    gates = gates or Gates()
    labels = sorted(
        {k for r in scored if r.agreement for k in r.agreement.classes},
        key=lambda k: (int(k), "") if k.isdigit() else (1 << 30, k),
    )
    names = class_names or {}
    class_ticks = [names.get(k, f"label {k}") for k in labels] or ["-"]
    case_ticks = [short_name(r.label) for r in scored]
    grid = np.full((len(scored), max(len(labels), 1)), np.nan)
    for i, r in enumerate(scored):
        assert r.agreement is not None
        for j, label in enumerate(labels):
            if label in r.agreement.classes:
                grid[i, j] = r.agreement.classes[label].nsd
    by_rows = len(labels) > CLASSES_AS_COLUMNS
    if by_rows:
        grid = grid.T
        x_ticks, y_ticks = case_ticks, class_ticks
        width = 3.2 + min(1.3, max(0.5, 9.0 / len(scored))) * len(scored)
        height = 2.6 + 0.19 * len(labels)
    else:
        x_ticks, y_ticks = class_ticks, case_ticks
        width = 3.0 + 0.85 * max(len(labels), 1)
        height = 2.8 + 0.42 * len(scored)
    fig = figure(max(width, 6.5), height)
    ax = fig.add_subplot()

    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    edges, colors, band_names = nsd_bands(gates)
    cmap = ListedColormap(colors).with_extremes(bad=ABSENT_COLOR)
    ax.imshow(
        np.ma.masked_invalid(grid), cmap=cmap, norm=BoundaryNorm(edges, cmap.N), aspect="auto"
    )
    if grid.size <= 400:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                value = grid[i, j]
                if np.isfinite(value):
                    dark = value < gates.nsd_min or value >= 1.0 - 1e-9
                    ax.text(
                        j,
                        i,
                        f"{value:.4f}",
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="white" if dark else "black",
                    )
    class_grid_ticks(ax, x_ticks, y_ticks, by_rows)
    ax.set_title(
        f"Normalised surface Dice per class, candidate vs reference mask ({len(labels)} "
        f"classes, {len(scored)} cases)\ngate: nsd_min {gates.nsd_min:g} at "
        f"nsd_tolerance_mm {gates.nsd_tolerance_mm:g} (classes of >= {gates.min_class_voxels} "
        "voxels)",
        fontsize=9,
    )
    fig.legend(
        handles=[Patch(color=c, label=n) for c, n in zip(colors, band_names, strict=True)]
        + [Patch(color=ABSENT_COLOR, label="class absent from both masks")],
        loc="outside lower center",
        ncols=max(1, min(4, int(fig.get_figwidth() / 3.0))),
        fontsize=7.5,
        frameon=False,
    )
    return save(fig, path)
