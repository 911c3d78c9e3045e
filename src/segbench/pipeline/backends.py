"""The two runners: PyTorch (reference) and ONNX Runtime (candidate), behind one interface.

A backend is a predictor for :func:`segbench.pipeline.inference.sliding_window`: it maps a
float32 batch ``(B, C, X, Y, Z)`` to float32 logits ``(B, K, X, Y, Z)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from segbench.errors import ModelError
from segbench.settings.kinds import GRAPH_LEVELS, BackendKind
from segbench.settings.providers import check_ran_on, device_of, plan_providers

log = logging.getLogger("segbench")


class Backend(Protocol):
    kind: BackendKind

    @property
    def provider(self) -> str:
        """Where it actually runs, e.g. ``cpu``, ``cuda:0``, ``CPUExecutionProvider``."""
        ...

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """Eval-mode PyTorch in ``torch.inference_mode``, float32, optional thread count."""

    kind = BackendKind.TORCH

    def __init__(self, net: nn.Module, threads: int | None = None, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).float().eval()
        self.threads = threads

    @property
    def provider(self) -> str:
        return str(self.device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            out = self.net(torch.from_numpy(batch).to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return out.float().cpu().numpy()


class OrtBackend:
    """An onnxruntime ``InferenceSession`` over an ONNX file.

    ``provider`` (see :mod:`segbench.settings.providers`; ``auto``: TensorRT / CUDA when
    onnxruntime-gpu sees a GPU, else the CPU) and its ``provider_options`` choose the providers
    unless a raw ``providers`` list is given; ``threads`` sets intra-op threads (and
    OpenVINO's; None: onnxruntime's default, all physical cores); ``graph_level`` one of
    GRAPH_LEVELS.
    ``io_binding`` (default: on when the session runs on a GPU provider) binds the input as one
    ``OrtValue`` on the session's device and the output there too, so each window is copied
    to the device once and back once, and the timing holds those two copies and nothing more.
    ``mem_arena=False`` turns off the CPU memory arena, which otherwise keeps the peak of every
    window shape seen (measured with ``ts-fast``: 4.5 GB with it, 2.7 GB without).
    ``spinning=False`` (segbench's default) stops onnxruntime's intra- and inter-op threads from
    spinning after each run, waiting for the next (onnxruntime's own default). A spinning pool
    holds CPU cores after ``run`` returns: in an interleaved pair, the PyTorch run that follows
    the candidate's loses them (one 64^3 window of the demo model on 2 cores, 2 threads each:
    0.13 s after a spinning session, 0.09-0.10 s without; the session's own time unchanged), so
    the speed-up came out too high, and by how much moved with the machine.
    ``precision`` ``bf16`` runs the float32 file in bfloat16 on OpenVINO (its inference precision
    hint; a machine without OpenVINO or bf16 instructions is a ConfigError, see
    :func:`segbench.settings.providers.check_precision`).
    """

    kind = BackendKind.ONNX

    def __init__(
        self,
        model_path: Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        graph_level: str = "all",
        io_binding: bool | None = None,
        mem_arena: bool = True,
        spinning: bool = False,
        provider: str = "auto",
        provider_options: Mapping[str, Any] | None = None,
        precision: str = "fp32",
    ) -> None:
        import onnxruntime as ort

        if graph_level not in GRAPH_LEVELS:
            raise ValueError(f"graph_level must be one of {GRAPH_LEVELS}, got {graph_level!r}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[graph_level]
        if threads:
            opts.intra_op_num_threads = threads
        opts.enable_cpu_mem_arena = mem_arena
        flag = "1" if spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", flag)
        opts.add_session_config_entry("session.inter_op.allow_spinning", flag)
        # a raw ``providers`` list wins; else ``provider`` picks the list
        plan = None if providers else plan_providers(provider, provider_options, threads, precision)
        requested: list[Any] = plan.providers if plan else list(providers or ())
        try:
            self.session = ort.InferenceSession(str(model_path), opts, providers=requested)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(
                f"{model_path}: onnxruntime cannot load it ({type(exc).__name__}: {exc}); "
                "check that it is an ONNX model exported from this network"
            ) from exc
        self.requested = requested
        self.precision = precision  # fp32, fp16 (the file's) or bf16 (OpenVINO's hint)
        self.model_path = Path(model_path)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        actual = self.session.get_providers()[0]
        if plan is not None:
            check_ran_on(plan, actual, model_path)
        if actual != (requested[0] if isinstance(requested[0], str) else requested[0][0]):
            log.warning(
                "onnxruntime fell back from %s to %s for %s", requested[0], actual, model_path
            )
        log.info("onnxruntime runs %s on %s", model_path, actual)
        self.device = device_of(actual)
        self.io_binding = self.device != "cpu" if io_binding is None else io_binding

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.io_binding:
            return self._run_bound(batch)
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(out, dtype=np.float32)

    def _run_bound(self, batch: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch), self.device, 0)
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output_name, self.device)
        self.session.run_with_iobinding(binding)
        out = binding.get_outputs()[0].numpy()  # back to the host once (a no-op copy on CPU)
        return np.asarray(out, dtype=np.float32)
