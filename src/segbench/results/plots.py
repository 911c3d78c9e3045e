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
from typing import Any

import numpy as np

from segbench.results.canvas import (
    ClassGrid,
    PlotError,
    annotate_cells,
    band_legend,
    band_scale,
    class_grid,
    class_grid_ticks,
    draw_bands,
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
    _annotate_speedups(ax, rows, own, top)
    ax.set_yticks(y, [short_name(r.case) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15 if top > 0 else 1.0)
    ax.set_xlabel(f"latency per volume (s, {rows[0].estimator} of the timed rounds)")
    ax.set_title("Latency per case (speed-up = reference (paired, gate) / candidate)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return save(fig, path)


def _annotate_speedups(
    ax: Any, rows: Sequence[CaseRecord], own: Sequence[float], top: float
) -> None:
    """Each case's speed-up right of its longest bar (red when the speed-up gate failed);
    ``own`` is the reference's own-rounds latency per case (NaN: none), ``top`` the longest bar
    of the plot."""
    for yi, r, o in zip(range(len(rows)), rows, own, strict=True):
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
    return band_scale(bands, drop_from=1.0)


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
    layout = class_grid(
        [r.class_dice for r in rows], [short_name(r.case) for r in rows], class_names
    )
    grid = layout.values
    fig = figure(*layout.size)
    ax = fig.add_subplot()
    edges, colors, band_names = dice_bands(gates)
    image = draw_bands(ax, grid, edges, colors)
    if layout.cell_width >= 0.5 and grid.size <= 400:
        _annotate_dice(ax, layout, edges, colors)
    if not np.isfinite(grid).any():
        ax.text(0, 0, "no Dice in this run", ha="center", va="center")
    class_grid_ticks(ax, layout.x_ticks, layout.y_ticks, layout.by_rows)
    ax.set_title(
        f"Dice per class, candidate vs reference mask ({len(layout.labels)} classes present, "
        f"{len(rows)} cases)\ngates: class_dice_min {gates.class_dice_min:g} (classes of >= "
        f"{gates.min_class_voxels} voxels), dice_min {gates.dice_min:g} (mean)",
        fontsize=9,
    )
    _dice_colorbar(fig, ax, image, edges, gates)
    band_legend(fig, colors, band_names)
    return save(fig, path)


def _annotate_dice(ax: Any, layout: ClassGrid, edges: list[float], colors: list[str]) -> None:
    """Each cell's Dice (5 decimals where the cell is wide enough), white on the darkest and
    the failing bands."""
    dark = {colors[0], colors[-1], FAIL_COLOR}
    short = layout.by_rows or layout.cell_width < 0.8
    annotate_cells(
        ax,
        layout.values,
        lambda value: f"{value:.4f}" if short else f"{value:.5f}",
        lambda value: colors[int(np.searchsorted(edges, value, side="right")) - 1] in dark,
        6.5 if layout.by_rows else 7,
    )


def _dice_colorbar(fig: Any, ax: Any, image: Any, edges: list[float], gates: Gates) -> None:
    """The colour bar below the heatmap, its ticks at the band edges named by the gates."""
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
