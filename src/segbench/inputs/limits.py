"""The size limit every reader checks before it decodes a voxel (NIfTI and DICOM alike)."""

from __future__ import annotations

import math
from pathlib import Path

from segbench.errors import InputError

DEFAULT_MAX_VOXELS = 512 * 512 * 1200  # ~1.3 GB as float32


def check_voxel_count(shape: tuple[int, ...], source: str | Path, max_voxels: int | None) -> None:
    """Refuse more than ``max_voxels`` voxels, before any voxel is read."""
    voxels = math.prod(shape)
    if max_voxels is not None and voxels > max_voxels:
        raise InputError(
            source,
            f"has {voxels:,} voxels {shape}, over the limit of {max_voxels:,}; the pipeline "
            f"would need at least {voxels * 4 * 3 / 1e9:.1f} GB for its float32 copies",
            "crop or downsample the volume, or raise the limit (--segbench-max-voxels)",
        )
