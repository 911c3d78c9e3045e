"""The closed sets of names a setting may take: backends, ONNX graph levels, precisions, timing
estimators, allocator modes. Plain Python, so every layer may import it."""

from __future__ import annotations

import enum


class BackendKind(str, enum.Enum):
    TORCH = "torch"
    ONNX = "onnx"


GRAPH_LEVELS = ("disable", "basic", "extended", "all")  # onnxruntime's graph optimisation levels
# of an onnx profile's network: fp16, a float16 copy (segbench.pipeline.export); bf16, OpenVINO's
# inference precision (segbench.settings.providers.precision_options)
PRECISIONS = ("fp32", "fp16", "bf16")
ESTIMATORS = ("min", "median")  # of the timed rounds
MALLOC_MODES = ("steady", "system")  # see segbench.bench.allocator
ROLES = ("reference", "candidate")  # the two sides of a paired run


def candidate_slot(name: str | None) -> str:
    """The key of a candidate among a session's backends and runs: ``"candidate"`` for the one
    unnamed candidate, ``"candidate:<name>"`` for a named one (``"reference"`` is the other)."""
    return "candidate" if name is None else f"candidate:{name}"


def candidate_of_slot(slot: str) -> str | None:
    """The candidate's name of a slot: ``None`` for ``"reference"`` and the unnamed
    ``"candidate"`` (the inverse of :func:`candidate_slot`)."""
    role, _, name = slot.partition(":")
    return name if role == "candidate" and name else None


def slot_label(slot: str) -> str:
    """How progress lines and benchmark names call a slot: the candidate's name, else its
    role."""
    return candidate_of_slot(slot) or slot


def role_of_slot(slot: str) -> str:
    """``"reference"`` or ``"candidate"``: the role of a backend's key."""
    return "reference" if slot == "reference" else "candidate"
