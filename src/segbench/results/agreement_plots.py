"""The heatmap of normalised surface Dice per class and case (``segbench report``'s
``class_nsd.png``), coloured in bands whose lowest edge is the ``nsd_min`` gate. Up to 30
classes they are the columns; more go down the rows, by name, so 118 classes stay readable.
matplotlib is imported when the plot is drawn (:mod:`segbench.results.canvas`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from segbench.results import canvas
from segbench.results.record import CaseRecord
from segbench.settings.config import Gates


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
    return canvas.band_scale(bands)


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
        raise canvas.PlotError(
            "plot_class_nsd: no case of the run has NSD figures (a run saved before they "
            "existed). Fix: run the suite again with this version of segbench"
        )
    path = canvas.prepare_target(path)
    gates = gates or Gates()
    per_case = [{k: c.nsd for k, c in r.agreement.classes.items()} for r in scored if r.agreement]
    layout = canvas.class_grid(per_case, [canvas.short_name(r.label) for r in scored], class_names)
    fig = canvas.figure(*layout.size)
    ax = fig.add_subplot()
    edges, colors, band_names = nsd_bands(gates)
    canvas.draw_bands(ax, layout.values, edges, colors)
    if layout.values.size <= 400:
        canvas.annotate_cells(
            ax,
            layout.values,
            lambda value: f"{value:.4f}",
            lambda value: value < gates.nsd_min or value >= 1.0 - 1e-9,
            6.5,
        )
    canvas.class_grid_ticks(ax, layout.x_ticks, layout.y_ticks, layout.by_rows)
    ax.set_title(
        f"Normalised surface Dice per class, candidate vs reference mask ({len(layout.labels)} "
        f"classes, {len(scored)} cases)\ngate: nsd_min {gates.nsd_min:g} at "
        f"nsd_tolerance_mm {gates.nsd_tolerance_mm:g} (classes of >= {gates.min_class_voxels} "
        "voxels)",
        fontsize=9,
    )
    canvas.band_legend(fig, colors, band_names)
    return canvas.save(fig, path)
