"""The one place a backend is built: a :class:`~segbench.settings.config.Profile` (torch, or
onnxruntime with its threads, graph level, arena and precision) and the network or its ONNX file
become a :class:`~segbench.pipeline.backends.Backend`. Used by the benchmark's runtime and by
:func:`segbench.pipeline.predict.predict`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segbench.pipeline.backends import Backend, OrtBackend, TorchBackend
from segbench.pipeline.export import to_float16
from segbench.settings.config import Profile
from segbench.settings.kinds import BackendKind


def build_backend(
    profile: Profile,
    net: nn.Module,
    onnx_path: Path | None,
    onnx_dir: Path,
    torch_device: str | None = None,
) -> Backend:
    """The backend ``profile`` describes. A torch profile runs ``net`` on ``torch_device``
    (default: CUDA when available, else the CPU); an onnx profile runs ``onnx_path`` (for
    ``precision`` fp16, its float16 copy, converted once into ``onnx_dir``; for bf16, the file
    itself with OpenVINO's bf16 precision hint)."""
    if profile.backend is BackendKind.TORCH:
        device = torch_device or ("cuda" if torch.cuda.is_available() else "cpu")
        return TorchBackend(net, threads=profile.threads, device=device)
    if onnx_path is None:
        raise ValueError("an onnx profile needs an ONNX file")
    path = to_float16(onnx_path, onnx_dir) if profile.precision == "fp16" else onnx_path
    return OrtBackend(
        path,
        threads=profile.threads,
        graph_level=profile.graph_level,
        mem_arena=profile.mem_arena,
        spinning=profile.spinning,
        provider=profile.provider,
        provider_options=profile.provider_options,
        precision=profile.precision,
    )
