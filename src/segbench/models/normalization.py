"""The CT intensity normalisation a model card carries (nnU-Net's CTNormalization)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CTNormalization:
    """nnU-Net's CTNormalization: clip to ``[lower, upper]`` then ``(x - mean) / std``."""

    lower: float
    upper: float
    mean: float
    std: float

    def __post_init__(self) -> None:
        values = (self.lower, self.upper, self.mean, self.std)
        finite = all(math.isfinite(v) for v in values)
        if not finite or not self.lower < self.upper or self.std <= 0:
            raise ValueError(f"bad CT normalisation constants: {self}")

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Normalise a float32 array in place and return it."""
        np.clip(array, self.lower, self.upper, out=array)
        array -= np.float32(self.mean)
        array /= np.float32(self.std)
        return array
