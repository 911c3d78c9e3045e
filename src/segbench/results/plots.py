"""PNG plots of a saved run: latency per case, speed-up against volume size, and the Dice per
class and case as a heatmap coloured by the gate thresholds. (One case's mask disagreement is
:mod:`segbench.results.disagreement`.)

matplotlib is optional (``pip install segbench[report]``): it is imported when a plot is drawn,
never when this module is imported (:mod:`segbench.results.canvas`). Every PNG is at most 4,000
px wide, whatever the number of cases and classes, with its legend outside the axes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segbench.results.canvas import (
    PlotError,
    class_grid_ticks,
    figure,
    prepare_target,
    require_matplotlib,
    save,
    short_name,
)
from segbench.results.disagreement import disagreement_slice, plot_disagreement
from segbench.results.runs import CaseRecord
from segbench.settings.config import Gates

__all__ = [
    "PlotError",
    "disagreement_slice",
    "plot_class_dice",
    "plot_disagreement",
    "plot_latency",
    "plot_speedup_vs_voxels",
    "prepare_target",
    "require_matplotlib",
    "short_name",
]

REFERENCE_COLOR = "#4C72B0"
CANDIDATE_COLOR = "#DD8452"
FAIL_COLOR = "#C44E52"
ABSENT_COLOR = "#e6e6e6"
CLASSES_AS_COLUMNS = 30  # more classes than this: classes go down the rows (names readable)


def _require_rows(rows: Sequence[CaseRecord], what: str) -> None:
    if not rows:
        raise PlotError(f"{what}: the run has no cases. Fix: pass a run with segbench cases")


def _role_label(rows: Sequence[CaseRecord], role: str) -> str:
    for r in rows:
        res = r.roles.get(role)
        if res is not None:
            return f"{res.backend} ({res.provider})"
    return "-"


def plot_latency(rows: Sequence[CaseRecord], path: str | Path) -> Path:
    """Grouped horizontal bars per case: the reference latency of the speed-up gate (its runs
    paired with the candidate's rounds) and the candidate's, the reference test's own rounds
    as a tick, the speed-up annotated; legend below the axes."""
    _require_rows(rows, "plot_latency")
    path = prepare_target(path)
    rows = list(rows)
    n = len(rows)
    fig = figure(9.0, 2.0 + 0.55 * n)
    ax = fig.add_subplot()
    y = np.arange(n)
    height = 0.38
    ref = [r.reference_s if r.reference_s is not None else np.nan for r in rows]
    cand = [r.candidate_s if r.candidate_s is not None else np.nan for r in rows]
    own = [r.reference_own_s if r.reference_own_s is not None else np.nan for r in rows]
    ax.barh(
        y - height / 2,
        ref,
        height,
        color=REFERENCE_COLOR,
        label=f"reference (paired, gate): {_role_label(rows, 'reference')}",
    )
    ax.barh(
        y + height / 2,
        cand,
        height,
        color=CANDIDATE_COLOR,
        label=f"candidate: {_role_label(rows, 'candidate')}",
    )
    if any(np.isfinite(own)):
        ax.scatter(
            own,
            y - height / 2,
            marker="|",
            s=260,
            linewidths=2.2,
            color="black",
            zorder=3,
            label="reference (own rounds)",
        )
    top = float(np.nanmax([*ref, *cand, *own, 0.0]))
    for yi, r, o in zip(y, rows, own, strict=True):
        speedup = r.speedup
        longest = np.nanmax([r.reference_s or 0.0, r.candidate_s or 0.0, o])
        if speedup is not None and math.isfinite(speedup):
            ax.text(
                longest + 0.015 * top,
                yi,
                f"{speedup:.2f}x",
                va="center",
                fontsize=9,
                color=FAIL_COLOR if "speedup" in r.failed_gates else "black",
            )
    ax.set_yticks(y, [short_name(r.case) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15 if top > 0 else 1.0)
    ax.set_xlabel(f"latency per volume (s, {rows[0].estimator} of the timed rounds)")
    ax.set_title("Latency per case (speed-up = reference (paired, gate) / candidate)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return save(fig, path)


def plot_speedup_vs_voxels(rows: Sequence[CaseRecord], path: str | Path) -> Path:
    """Speed-up against the number of voxels (log x), one labelled point per case; the
    no-gain line at 1.0; cases with a failed gate in red; legend below the axes."""
    _require_rows(rows, "plot_speedup_vs_voxels")
    path = prepare_target(path)
    points = sorted(
        (
            (r, float(r.voxels), r.speedup)
            for r in rows
            if r.voxels and r.speedup is not None and math.isfinite(r.speedup)
        ),
        key=lambda p: p[1],
    )
    fig = figure(7.5, 5.0)
    ax = fig.add_subplot()
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="no speed-up (1.0)")
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
    for i, (r, x, s) in enumerate(points):  # neighbours in x alternate above and below
        ax.annotate(
            short_name(r.case),
            (x, s),
            textcoords="offset points",
            xytext=(6, 5 if i % 2 == 0 else -11),
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
    ax.set_ylabel("speed-up (reference (paired, gate) / candidate)")
    ax.set_title("Speed-up against volume size")
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return save(fig, path)


def dice_bands(gates: Gates) -> tuple[list[float], list[str], list[str]]:
    """The heatmap's colour scale: band edges of Dice (ascending, 0 to 1), one colour and one
    name per band. Below ``class_dice_min`` red (a class gate fails, if the class is big
    enough), up to ``dice_min`` orange (below the mean Dice gate), above it greens."""
    bands = [
        (0.0, "#7f0000", "< 0.9"),
        (0.9, FAIL_COLOR, f"< class_dice_min {gates.class_dice_min:g} (fails if gated)"),
        (gates.class_dice_min, "#f2a541", f"< dice_min {gates.dice_min:g} (the mean's gate)"),
        (gates.dice_min, "#c7e9c0", f">= dice_min {gates.dice_min:g}"),
        (0.999, "#74c476", ">= 0.999"),
        (0.9999, "#238b45", ">= 0.9999"),
    ]
    edges: list[float] = []
    colors: list[str] = []
    names: list[str] = []
    for start, color, name in bands:
        if edges and start <= edges[-1]:  # a threshold at or below the previous band's start
            colors[-1], names[-1] = color, name
            continue
        if start >= 1.0:
            continue
        edges.append(start)
        colors.append(color)
        names.append(name)
    return [*edges, 1.0 + 1e-9], colors, names


def _edge_label(edge: float, gates: Gates) -> str:
    if edge > 1.0:
        return "1"
    text = f"{edge:g}"
    tags = [
        n
        for n, v in (("class_dice_min", gates.class_dice_min), ("dice_min", gates.dice_min))
        if v == edge
    ]
    return f"{text}\n{' = '.join(tags)}" if tags else text


def plot_class_dice(
    rows: Sequence[CaseRecord],
    path: str | Path,
    class_names: Mapping[str, str] | None = None,
    gates: Gates | None = None,
) -> Path:
    """Heatmap of the candidate-vs-reference Dice per class and case, coloured in bands whose
    edges are the gate thresholds (``class_dice_min``, ``dice_min`` of ``gates``; the colour
    bar names them). Up to 30 classes they are the columns and cells carry their Dice; more
    classes go down the rows, by name. A class absent from both masks of a case is grey."""
    _require_rows(rows, "plot_class_dice")
    path = prepare_target(path)
    gates = gates or Gates()
    rows = list(rows)
    labels = sorted(
        {label for r in rows for label in r.class_dice},
        key=lambda k: (int(k), "") if k.isdigit() else (1 << 30, k),
    )
    names = class_names or {}
    class_ticks = [names.get(k, f"label {k}") for k in labels] or ["-"]
    case_ticks = [short_name(r.case) for r in rows]
    grid = np.full((len(rows), max(len(labels), 1)), np.nan)
    for i, r in enumerate(rows):
        for j, label in enumerate(labels):
            if label in r.class_dice:
                grid[i, j] = r.class_dice[label]
    by_rows = len(labels) > CLASSES_AS_COLUMNS
    if by_rows:  # classes down the rows, cases across
        grid = grid.T
        x_ticks, y_ticks = case_ticks, class_ticks
        cell_w, cell_h = min(1.3, max(0.5, 9.0 / max(len(rows), 1))), 0.19
        width = 3.2 + cell_w * len(rows)
        height = 2.6 + cell_h * len(labels)
    else:
        x_ticks, y_ticks = class_ticks, case_ticks
        cell_w, cell_h = 0.85, 0.42
        width = 3.0 + cell_w * max(len(labels), 1)
        height = 2.8 + cell_h * len(rows)
    width = max(width, 6.5)
    fig = figure(width, height)
    ax = fig.add_subplot()

    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    edges, colors, band_names = dice_bands(gates)
    cmap = ListedColormap(colors).with_extremes(bad=ABSENT_COLOR)
    norm = BoundaryNorm(edges, cmap.N)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    annotate = cell_w >= 0.5 and grid.size <= 400
    if annotate:
        dark = {colors[0], colors[-1], FAIL_COLOR}
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                value = grid[i, j]
                if np.isfinite(value):
                    band = colors[int(np.searchsorted(edges, value, side="right")) - 1]
                    ax.text(
                        j,
                        i,
                        f"{value:.4f}" if by_rows or cell_w < 0.8 else f"{value:.5f}",
                        ha="center",
                        va="center",
                        fontsize=6.5 if by_rows else 7,
                        color="white" if band in dark else "black",
                    )
    if not np.isfinite(grid).any():
        ax.text(0, 0, "no Dice in this run", ha="center", va="center")
    class_grid_ticks(ax, x_ticks, y_ticks, by_rows)
    ax.set_title(
        f"Dice per class, candidate vs reference mask ({len(labels)} classes present, "
        f"{len(rows)} cases)\ngates: class_dice_min {gates.class_dice_min:g} (classes of >= "
        f"{gates.min_class_voxels} voxels), dice_min {gates.dice_min:g} (mean)",
        fontsize=9,
    )
    bar = fig.colorbar(
        image,
        ax=ax,
        location="bottom",
        shrink=min(1.0, 6.0 / fig.get_figwidth()),
        aspect=30,
        pad=0.02,
        spacing="uniform",
        ticks=edges,
    )
    bar.ax.set_xticklabels([_edge_label(e, gates) for e in edges], fontsize=7)
    bar.set_label("Dice (colour bands; edges at the gate thresholds)", fontsize=8)
    fig.legend(
        handles=[Patch(color=c, label=n) for c, n in zip(colors, band_names, strict=True)]
        + [Patch(color=ABSENT_COLOR, label="class absent from both masks")],
        loc="outside lower center",
        ncols=max(1, min(4, int(fig.get_figwidth() / 3.0))),  # columns of ~3 inches fit
        fontsize=7.5,
        frameon=False,
    )
    return save(fig, path)
