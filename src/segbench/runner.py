"""The paired run of one case: the reference and the candidate pipeline on the same volume.

:class:`Runtime` holds what is built once per session (model card, network, both backends,
the ONNX export); :class:`PairedRun` holds one case's loaded volume and, per role, every run's
stage times and the last prediction, so the gates compare masks and latencies of one session.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.backends import Backend, BackendKind, OrtBackend, TorchBackend
from segbench.config import BenchConfig, Gates, Profile
from segbench.errors import SegbenchError, SegbenchWarning
from segbench.export import check_onnx_matches, export_onnx
from segbench.gates import GateResult, check_dice, check_speedup, speedup
from segbench.metrics import DiceResult, LogitDiff, compute_dice, logit_diff
from segbench.models import ModelCard, load_network, state_digest
from segbench.pipeline import Prediction, StageTimes, predict_volume
from segbench.volumes import DEFAULT_MAX_VOXELS, Volume, load_volume

ROLES = ("reference", "candidate")


class DelayedBackend:
    """A backend made slower by ``delay`` seconds per predictor call: an injected regression
    used to show that the speed-up gate fails (``--segbench-inject-delay``)."""

    def __init__(self, inner: Backend, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.kind = inner.kind

    @property
    def provider(self) -> str:
        return self.inner.provider

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return self.inner(batch)


@dataclass
class Runtime:
    """Built once per session: the card, both backends, and where the ONNX file came from."""

    card: ModelCard
    backends: dict[str, Backend]
    profiles: dict[str, Profile]
    onnx_path: Path | None
    onnx_source: str  # "export" or "user"
    export_max_abs_diff: float | None
    weights_sha256: str | None = None  # state_digest of the network (names, shapes, values)


def build_runtime(
    card: ModelCard,
    config: BenchConfig,
    cache_dir: Path,
    onnx: Path | None = None,
    inject_delay: float = 0.0,
) -> Runtime:
    net = load_network(card)
    profiles = {"reference": config.reference, "candidate": config.candidate}
    onnx_path: Path | None = None
    diff: float | None = None
    needs_onnx = any(p.backend is BackendKind.ONNX for p in profiles.values())
    if onnx is not None:
        check_onnx_matches(onnx, card)
        onnx_path = onnx
    elif needs_onnx:
        exported = export_onnx(net, card, cache_dir / "onnx")
        onnx_path, diff = exported.path, exported.max_abs_diff
    backends: dict[str, Backend] = {}
    for role, profile in profiles.items():
        if profile.backend is BackendKind.TORCH:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            backends[role] = TorchBackend(net, threads=profile.threads, device=device)
        else:
            assert onnx_path is not None
            backends[role] = OrtBackend(
                onnx_path, threads=profile.threads, graph_level=profile.graph_level
            )
    if inject_delay > 0:
        backends["candidate"] = DelayedBackend(backends["candidate"], inject_delay)
    return Runtime(
        card,
        backends,
        profiles,
        onnx_path,
        "user" if onnx else "export",
        diff,
        weights_sha256=state_digest(net),
    )


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def check_providers(runtime: Runtime, require_gpu: bool) -> None:
    """Warn (or, with ``require_gpu``, fail) when the candidate runs on the CPU although a GPU
    is wanted or present: onnxruntime-gpu falls back to the CPU with only a C++ log line."""
    provider = runtime.backends["candidate"].provider
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


@dataclass
class RoleRuns:
    times: list[StageTimes] = field(default_factory=list)
    last: Prediction | None = None
    warmup: int = 0  # leading runs that are warm-ups

    @property
    def timed(self) -> list[StageTimes]:
        return self.times[self.warmup :]

    def latency(self, estimator: str) -> float | None:
        totals = [t.total for t in self.timed]
        if not totals:
            return None
        return float(np.min(totals) if estimator == "min" else np.median(totals))

    def stage_medians(self) -> dict[str, float]:
        runs = self.timed or self.times
        return {
            k: float(np.median([t.as_dict()[k] for t in runs]))
            for k in ("preprocess", "inference", "postprocess", "total")
        }


@dataclass
class CaseSummary:
    """One row of the terminal table and of the saved run's extra_info."""

    case: str
    shape: tuple[int, ...]
    reference_s: float | None = None
    candidate_s: float | None = None
    dice: DiceResult | None = None
    worst_class: str = ""
    gates: list[GateResult] = field(default_factory=list)
    error: str | None = None

    @property
    def speedup(self) -> float | None:
        if self.reference_s is None or self.candidate_s is None:
            return None
        return speedup(self.reference_s, self.candidate_s)

    @property
    def passed(self) -> bool:
        return self.error is None and all(g.passed for g in self.gates)


class PairedRun:
    """Reference and candidate runs of one case, on one loaded volume."""

    def __init__(
        self,
        case_id: str,
        image: Path,
        truth: Path | None,
        runtime: Runtime,
        config: BenchConfig,
        gates: Gates,
        max_voxels: int | None = DEFAULT_MAX_VOXELS,
    ) -> None:
        self.case_id = case_id
        self.volume: Volume = load_volume(image, max_voxels)
        self.truth = (
            None if truth is None else load_volume(truth, expect_ct=False).array.astype(np.uint8)
        )
        self.runtime = runtime
        self.config = config
        self.gates = gates
        self.runs = {role: RoleRuns() for role in ROLES}
        self.logit_diff: LogitDiff | None = None

    def run(self, role: str) -> Prediction:
        """One end-to-end run (in-memory volume -> mask) of ``role``; records its stage times."""
        profile = self.runtime.profiles[role]
        pred = predict_volume(
            self.volume,
            self.runtime.card,
            self.runtime.backends[role],
            profile.pipeline,
            keep_logits=True,
        )
        self.runs[role].times.append(pred.times)
        self.runs[role].last = pred
        return pred

    def measure(self, role: str, benchmark: Any | None) -> None:
        """Time ``role`` with pytest-benchmark's ``pedantic`` (warm-ups, then rounds), or with a
        plain loop of the same shape when no benchmark fixture is given."""
        timing = self.config.timing
        runs = self.runs[role]
        if benchmark is None:
            start = len(runs.times)
            for _ in range(timing.warmup_rounds + timing.rounds):
                self.run(role)
            runs.warmup = start + timing.warmup_rounds
            return
        benchmark.group = self.case_id
        benchmark.name = f"{role}[{self.case_id}]"
        start = len(runs.times)
        benchmark.pedantic(
            self.run,
            args=(role,),
            rounds=timing.rounds,
            warmup_rounds=timing.warmup_rounds,
            iterations=1,
        )
        disabled = bool(getattr(benchmark, "disabled", False))
        runs.warmup = len(runs.times) if disabled else start + timing.warmup_rounds

    def extra_info(self, role: str) -> dict[str, Any]:
        runs = self.runs[role]
        pred = runs.last
        vol = self.volume
        info: dict[str, Any] = {
            "case": self.case_id,
            "role": role,
            "model": self.runtime.card.name,
            "backend": self.runtime.profiles[role].backend.value,
            "provider": pred.provider if pred else None,
            "shape": list(vol.original.shape),
            "spacing": [round(s, 4) for s in vol.spacing],
            "voxels": int(np.prod(vol.shape)),
            "network_shape": list(pred.network_shape) if pred else None,
            "stages_s": runs.stage_medians() if runs.times else {},
            "estimator": self.config.timing.estimator,
            "latency_s": runs.latency(self.config.timing.estimator),
            "peak_rss_mb": peak_rss_mb(),
        }
        if self.truth is not None and pred is not None and self.runtime.card.num_classes > 1:
            info["dice_vs_ground_truth"] = round(compute_dice(self.truth, pred.labels).mean, 5)
        return info

    def ensure(self, role: str, timed: bool) -> None:
        """Make sure ``role`` has a prediction (and timed rounds when ``timed``)."""
        runs = self.runs[role]
        if runs.last is None or (timed and not runs.timed):
            if timed:
                self.measure(role, None)
            else:  # an untimed run (benchmarks disabled): no latency
                self.run(role)
                runs.warmup = len(runs.times)

    def evaluate(self, timed: bool) -> CaseSummary:
        """Both gates for this case. ``timed=False`` (benchmarks disabled) skips the speed-up."""
        for role in ROLES:
            self.ensure(role, timed)
        ref, cand = self.runs["reference"].last, self.runs["candidate"].last
        assert ref is not None and cand is not None
        dice = compute_dice(ref.labels, cand.labels)
        diff = None
        if (
            ref.logits is not None
            and cand.logits is not None
            and ref.logits.shape == cand.logits.shape
        ):
            diff = logit_diff(ref.logits, cand.logits)
        names = self.runtime.card.class_names
        summary = CaseSummary(self.case_id, tuple(self.volume.original.shape), dice=dice)
        worst = dice.worst(1)
        summary.worst_class = (
            f"{names[worst[0].label] if worst[0].label < len(names) else worst[0].label} "
            f"{worst[0].dice:.4f}"
            if worst
            else "-"
        )
        summary.gates.append(check_dice(self.case_id, dice, self.gates, names, diff))
        est = self.config.timing.estimator
        summary.reference_s = self.runs["reference"].latency(est)
        summary.candidate_s = self.runs["candidate"].latency(est)
        if timed and summary.reference_s is not None and summary.candidate_s is not None:
            summary.gates.append(
                check_speedup(
                    self.case_id, summary.reference_s, summary.candidate_s, self.gates, est
                )
            )
        self.logit_diff = diff
        for runs in self.runs.values():  # the logits are big; the gates are done with them
            if runs.last is not None:
                runs.last.logits = None
        return summary
