"""The GPU policy: a candidate that silently fell back to the CPU is a warning, or with
``--segbench-require-gpu`` an error."""

from __future__ import annotations

import warnings

import torch

from segbench.bench.runtime import Runtime
from segbench.errors import SegbenchError, SegbenchWarning


def check_providers(runtime: Runtime, require_gpu: bool) -> None:
    """Warn (or, with ``require_gpu``, fail) when the candidate runs on the CPU although a GPU
    is wanted or present: onnxruntime-gpu falls back to the CPU with only a C++ log line."""
    for slot, backend in runtime.backends.items():
        if slot != "reference":
            _check_provider(backend.provider, require_gpu)


def _check_provider(provider: str, require_gpu: bool) -> None:
    on_cpu = provider in ("cpu", "CPUExecutionProvider")
    if on_cpu and require_gpu:
        raise SegbenchError(
            f"the candidate runs on {provider}, but --segbench-require-gpu asks for a GPU. Fix: "
            "install onnxruntime-gpu (segbench[gpu]) with the CUDA/cuDNN versions it was built "
            "for, and check that torch.cuda.is_available() is True"
        )
    if on_cpu and torch.cuda.is_available():
        warnings.warn(
            SegbenchWarning(
                f"a CUDA GPU is present but the candidate runs on {provider}: onnxruntime fell "
                "back to the CPU (install onnxruntime-gpu matching this CUDA), so the speed-up "
                "compares unlike devices"
            ),
            stacklevel=2,
        )
