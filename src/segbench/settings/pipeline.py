"""The pipeline settings a profile may change (resampling order, tile step, Gaussian weighting,
batch size, fitting the window to a small volume)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineSettings:
    """Settings a profile may change. ``tile_step=None`` takes the model card's value."""

    resample_order: int = 1
    tile_step: float | None = None
    use_gaussian: bool = True
    batch_size: int = 1
    fit_patch: bool = False  # shrink the window to a volume smaller than the patch

    def __post_init__(self) -> None:
        if self.resample_order not in (0, 1, 2, 3):
            raise ValueError(f"resample_order must be 0-3, got {self.resample_order!r}")
        if self.tile_step is not None and not 0 < self.tile_step <= 1:
            raise ValueError(f"tile_step must be in (0, 1], got {self.tile_step!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
