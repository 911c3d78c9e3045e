"""The closed sets of names a setting may take: backends, ONNX graph levels, precisions, timing
estimators, allocator modes. Plain Python, so every layer may import it."""

from __future__ import annotations

import enum


class BackendKind(str, enum.Enum):
    TORCH = "torch"
    ONNX = "onnx"


GRAPH_LEVELS = ("disable", "basic", "extended", "all")  # onnxruntime's graph optimisation levels
PRECISIONS = ("fp32", "fp16")  # of an onnx profile's network; see segbench.pipeline.export
ESTIMATORS = ("min", "median")  # of the timed rounds
MALLOC_MODES = ("steady", "system")  # see segbench.bench.allocator
ROLES = ("reference", "candidate")  # the two sides of a paired run
