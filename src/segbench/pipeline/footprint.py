"""How much memory one run of a case needs, estimated from the volume's header before any voxel
is read, and the refusal of a case that cannot fit.

The model (float32 throughout, bytes = 4 per value; ``V`` the volume's voxels, ``G`` the grid
resampled to the model's spacing, ``P`` that grid padded to at least the window, ``W`` the
window's voxels, ``B`` the batch of windows, ``C`` the input channels, ``K`` the classes)::

    4 * (V                    the loaded volume
         + G                  the resampled, normalised network input
         + P * (K + 2)        the padded input, the summed weights and the K logits accumulated
         + B * (C + K) * W)   one batch of windows in and their logits out
    + G + V                   the uint8 labels on the network grid and back on the volume's

The other role's logits of a paired run wait on disk while this one runs
(:func:`segbench.bench.memory.park`), so one run is the peak. It is a lower bound of what
the process holds (the network, onnxruntime's arena and Python come on top): a case over it
cannot run, and is refused before it allocates tens of GiB and fails, or is killed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segbench.errors import InputError
from segbench.models.card import ModelCard, Shape3
from segbench.pipeline.inference import fit_patch
from segbench.pipeline.preprocess import resampled_shape
from segbench.settings.pipeline import PipelineSettings

GIB = 2**30


@dataclass(frozen=True)
class Footprint:
    """The estimated bytes of one run, and the grids that make them (see the module)."""

    grid: Shape3  # resampled to the model's spacing
    padded: Shape3  # the grid padded to at least the window
    window: Shape3
    bytes: int

    @property
    def gib(self) -> float:
        return self.bytes / GIB


def run_footprint(
    shape: Shape3, spacing: Sequence[float], card: ModelCard, settings: PipelineSettings
) -> Footprint:
    """The memory one run of ``card`` needs on a ``shape`` volume of ``spacing`` mm (RAS order,
    as :class:`~segbench.inputs.volumes.Volume`) under ``settings``."""
    grid = resampled_shape(shape, spacing, card.spacing)
    window = (
        fit_patch(grid, card.patch_size, card.total_stride)
        if settings.fit_patch
        else card.patch_size
    )
    padded: Shape3 = (max(grid[0], window[0]), max(grid[1], window[1]), max(grid[2], window[2]))
    v, g, p, w = math.prod(shape), math.prod(grid), math.prod(padded), math.prod(window)
    k, c, b = card.num_classes, card.in_channels, settings.batch_size
    floats = v + g + p * (k + 2) + b * (c + k) * w
    return Footprint(grid, padded, window, 4 * floats + g + v)


def case_footprint(
    shape: Shape3,
    spacing: Sequence[float],
    card: ModelCard,
    settings: Sequence[PipelineSettings],
) -> Footprint:
    """The largest :func:`run_footprint` over the profiles' ``settings``."""
    runs = [run_footprint(shape, spacing, card, s) for s in settings or [PipelineSettings()]]
    return max(runs, key=lambda f: f.bytes)


def available_bytes() -> int | None:
    """Memory the system can give without swapping: ``MemAvailable`` of ``/proc/meminfo``
    (Linux), else free pages (``sysconf``); None when neither is known."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_case_memory(
    source: str | Path,
    shape: Shape3,
    spacing: Sequence[float],
    card: ModelCard,
    settings: Sequence[PipelineSettings],
    available: int | None = None,
) -> Footprint:
    """Refuse a case whose :func:`case_footprint` is over ``available`` bytes (default:
    :func:`available_bytes`), with the figure and the fix; the footprint otherwise."""
    need = case_footprint(shape, spacing, card, settings)
    free = available_bytes() if available is None else available
    if free is None or need.bytes <= free:
        return need
    spacing_mm = "x".join(f"{s:g}" for s in spacing)
    target = "x".join(f"{s:g}" for s in card.spacing)
    by_patch = math.prod(need.padded) > 2 * math.prod(need.grid)
    what = (
        f"the window {need.window} of model {card.name!r} pads its grid {need.grid} to "
        f"{need.padded}"
        if by_patch
        else f"{shape} voxels at {spacing_mm} mm resample to {need.grid} at the model's {target} mm"
    )
    fix = (
        f"use a model whose patch size fits the machine (the plan's patch_size {card.patch_size} "
        "is far larger than the volume), or a machine with more memory"
        if by_patch
        else "check the voxel size in the header (a wrong unit is the usual cause), crop or "
        "downsample the volume, or run it on a machine with more memory"
    )
    raise InputError(
        source,
        f"needs about {need.gib:,.1f} GiB for one run ({what}; x {card.num_classes} classes "
        f"as float32 logits), only {free / GIB:,.1f} GiB is available",
        fix,
    )
