"""The paired run of one case: the reference and the candidate pipeline on the same volume.

:class:`Runtime` holds what is built once per session (model card, network, both backends,
the ONNX export); :class:`PairedRun` holds one case's loaded volume and, per role, every run's
stage times and the last prediction, so the gates compare masks and latencies of one session.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segbench.backends import Backend, BackendKind, OrtBackend, TorchBackend
from segbench.config import BenchConfig, Gates, Profile
from segbench.errors import SegbenchError, SegbenchWarning
from segbench.export import check_onnx_matches, export_onnx, to_float16
from segbench.gates import BaselineSpeedup, GateResult, check_dice, check_speedup, speedup
from segbench.inject import InjectedBackend, Injection, candidate_profile, perturb_onnx
from segbench.metrics import DiceResult, LogitDiff, compute_dice, logit_diff
from segbench.models import ModelCard, load_network, state_digest
from segbench.models.unet import PlainConvUNet, count_flops
from segbench.pipeline import Prediction, StageTimes, predict_volume
from segbench.volumes import (
    DEFAULT_MAX_VOXELS,
    Volume,
    check_same_grid,
    label_names,
    load_volume,
)

ROLES = ("reference", "candidate")
LABELS_DIFFER = "differ"


def truth_label_check(
    truth: np.ndarray, names: Mapping[int, str] | None, class_names: Sequence[str]
) -> str:
    """Whether a ground truth's labels mean the model's classes: ``"match"`` (every label
    present has the model's class name), ``"unnamed"`` (no label table: taken as the model's
    numbering) or ``"differ: ..."`` (then Dice against it would be meaningless)."""
    if names is None:
        return "unnamed"
    present = [int(v) for v in np.unique(truth) if v != 0]
    wrong = [
        f"{v} is {names.get(v, '?')!r} in the truth, "
        + (f"{class_names[v]!r} for the model" if v < len(class_names) else "not a model class")
        for v in present
        if v >= len(class_names) or names.get(v) != class_names[v]
    ]
    if wrong:
        more = f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""
        return f"{LABELS_DIFFER}: label " + "; ".join(wrong[:3]) + more
    return "match"


@dataclass
class Runtime:
    """Built once per session: the card, both backends, and where the ONNX file came from."""

    card: ModelCard
    backends: dict[str, Backend]
    profiles: dict[str, Profile]
    onnx_path: Path | None
    onnx_source: str  # "export" or "user"
    export_max_abs_diff: float | None
    network: nn.Module | None = None
    weights_sha256: str | None = None  # state_digest of the network (names, shapes, values)
    _flops: dict[tuple[int, int, int], float] = field(default_factory=dict, repr=False)

    def gflop_per_window(self, window: tuple[int, int, int] | None) -> float | None:
        """Convolution GFLOP of one window (2 per multiply-add), for PlainConvUNet networks."""
        if window is None or not isinstance(self.network, PlainConvUNet):
            return None
        if window not in self._flops:
            self._flops[window] = count_flops(self.network, window) / 1e9
        return self._flops[window]


def build_runtime(
    card: ModelCard,
    config: BenchConfig,
    cache_dir: Path,
    onnx: Path | None = None,
    injection: Injection | None = None,
) -> Runtime:
    """Load the network, export (or check the user's) ONNX file once, build both backends; an
    ``injection`` makes the candidate deliberately worse (see :mod:`segbench.inject`)."""
    injection = injection or Injection()
    net = load_network(card)
    profiles = {
        "reference": config.reference,
        "candidate": candidate_profile(config.candidate, injection),
    }
    onnx_path: Path | None = None
    diff: float | None = None
    needs_onnx = any(p.backend is BackendKind.ONNX for p in profiles.values())
    if onnx is not None:
        check_onnx_matches(onnx, card)
        onnx_path = onnx
    elif needs_onnx:
        exported = export_onnx(net, card, cache_dir / "onnx")
        onnx_path, diff = exported.path, exported.max_abs_diff
    candidate_onnx = onnx_path
    if injection.perturb:
        if profiles["candidate"].backend is not BackendKind.ONNX or onnx_path is None:
            raise SegbenchError(
                "--segbench-inject perturb=... perturbs the candidate's ONNX weights, but the "
                "candidate profile is not onnx. Fix: use an onnx candidate in benchmarks.json"
            )
        candidate_onnx = perturb_onnx(onnx_path, injection.perturb, cache_dir / "onnx")
    backends: dict[str, Backend] = {}
    for role, profile in profiles.items():
        if profile.backend is BackendKind.TORCH:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            backends[role] = TorchBackend(net, threads=profile.threads, device=device)
        else:
            path = candidate_onnx if role == "candidate" else onnx_path
            assert path is not None
            if profile.precision == "fp16":
                path = to_float16(path, cache_dir / "onnx")
            backends[role] = OrtBackend(
                path,
                threads=profile.threads,
                graph_level=profile.graph_level,
                mem_arena=profile.mem_arena,
                provider=profile.provider,
                provider_options=profile.provider_options,
            )
    if injection.delay or injection.slowdown or injection.shift:
        backends["candidate"] = InjectedBackend(backends["candidate"], injection)
    return Runtime(
        card,
        backends,
        profiles,
        onnx_path,
        "user" if onnx else "export",
        diff,
        net,
        weights_sha256=state_digest(net),
    )


PARK_BYTES = 256 * 2**20  # logits at least this big wait on disk while the other role runs


def park(array: np.ndarray) -> np.ndarray:
    """``array`` written to a temporary ``.npy`` file and mapped back read-only.

    While the other backend runs, a kept K x grid logits array then costs page cache, not
    resident memory: its pages enter the process's RSS only when read (by the logit
    difference). The file is unlinked at once; the mapping keeps it alive until it is dropped.
    """
    with tempfile.NamedTemporaryFile(prefix="segbench-logits-", suffix=".npy", delete=False) as f:
        np.save(f, array)
    mapped = np.load(f.name, mmap_mode="r")
    try:
        os.unlink(f.name)
    except OSError:  # Windows: an open mapping cannot be unlinked; the temp dir keeps it
        pass
    return mapped


def peak_rss_mb() -> float:
    """Peak resident memory in MiB: since the last :func:`reset_peak_rss` where Linux allows
    the reset (``VmHWM``), else the process's peak so far (``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def reset_peak_rss() -> bool:
    """Start a new peak-memory window (Linux: ``clear_refs`` 5 resets ``VmHWM`` to the
    current RSS), so each test reports its own peak; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


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


def estimate(values: list[float], estimator: str) -> float:
    """``min`` or ``median`` of timed rounds."""
    return float(np.min(values) if estimator == "min" else np.median(values))


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
        return estimate(totals, estimator) if totals else None

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
    candidate_gflops: float | None = None  # achieved in the candidate's sliding window
    baseline_speedup: float | None = None  # the case's speed-up in the baseline run

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
        baseline: BaselineSpeedup | None = None,
        truth_names: Mapping[int, str] | None = None,
    ) -> None:
        self.case_id = case_id
        self.volume: Volume = load_volume(image, max_voxels)
        self.truth: np.ndarray | None = None
        self.truth_source: str | None = None
        self.truth_labels: str | None = None  # why Dice vs the truth is (not) computed
        if truth is not None:
            labels = load_volume(truth, max_voxels, expect_ct=False)
            check_same_grid(labels, self.volume)
            self.truth = labels.array.astype(np.uint8)
            self.truth_source = labels.source
            names = truth_names if truth_names is not None else label_names(labels.original)
            self.truth_labels = truth_label_check(self.truth, names, runtime.card.class_names)
        self.runtime = runtime
        self.config = config
        self.gates = gates
        self.runs = {role: RoleRuns() for role in ROLES}
        self.paired_reference: list[StageTimes] = []
        self.logit_diff: LogitDiff | None = None
        self.baseline = baseline
        self.rss_window = False  # peak_rss_mb covers the last measure(), not the whole process

    def run(self, role: str, record: bool = True) -> Prediction:
        """One end-to-end run (in-memory volume -> mask) of ``role``. It becomes the role's last
        prediction, logits kept for the logit difference; ``record`` (not for paired reference
        runs) also adds its stage times to the role's rounds."""
        profile = self.runtime.profiles[role]
        self._drop_logits(role)  # this run replaces them: never two rounds' logits at once
        pred = predict_volume(
            self.volume,
            self.runtime.card,
            self.runtime.backends[role],
            profile.pipeline,
            keep_logits=True,
        )
        if record:
            self.runs[role].times.append(pred.times)
        self.runs[role].last = pred
        return pred

    def _drop_logits(self, role: str) -> None:
        last = self.runs[role].last
        if last is not None:
            last.logits = None

    def _park_logits(self, role: str) -> None:
        """Move ``role``'s kept logits to disk (see :func:`park`) when they are big, before the
        other role runs; untimed (pedantic's setup, or before the timed loop)."""
        last = self.runs[role].last
        if (
            last is not None
            and isinstance(last.logits, np.ndarray)
            and not isinstance(last.logits, np.memmap)
            and last.logits.nbytes >= PARK_BYTES
        ):
            last.logits = park(last.logits)

    def _paired_reference(self) -> None:
        """One reference run right before a timed candidate round (not part of either
        benchmark's statistics): the speed-up compares runs made side by side. The candidate
        round that follows replaces the candidate's logits, so they are dropped first; the
        paired run's prediction replaces the reference's last one (the same model on the same
        volume), so no earlier reference logits are held while it runs; big logits are parked
        on disk before the candidate round."""
        self._drop_logits("candidate")
        self.paired_reference.append(self.run("reference", record=False).times)
        self._park_logits("reference")

    def measure(self, role: str, benchmark: Any | None) -> None:
        """Time ``role`` with pytest-benchmark's ``pedantic`` (warm-ups, then rounds), or with a
        plain loop of the same shape when no benchmark fixture is given.

        The candidate's timed rounds are interleaved with reference runs (reference, candidate,
        reference, candidate, ...) so that drift of the machine's speed during the session
        (a neighbour's load, clock changes) hits both sides of the speed-up alike.
        """
        timing = self.config.timing
        runs = self.runs[role]
        interleave = role == "candidate"
        for other in ROLES:
            if other != role:
                self._park_logits(other)
        self.rss_window = reset_peak_rss()
        start = len(runs.times)
        if benchmark is None:
            for i in range(timing.warmup_rounds + timing.rounds):
                if interleave and i >= timing.warmup_rounds:
                    self._paired_reference()
                self.run(role)
            runs.warmup = start + timing.warmup_rounds
            return
        benchmark.group = self.case_id
        benchmark.name = f"{role}[{self.case_id}]"
        disabled = bool(getattr(benchmark, "disabled", False))
        calls = [0]

        def setup() -> None:  # pedantic calls it before every warm-up and timed round
            calls[0] += 1
            if interleave and not disabled and calls[0] > timing.warmup_rounds:
                self._paired_reference()

        benchmark.pedantic(
            self.run,
            args=(role,),
            setup=setup,
            rounds=timing.rounds,
            warmup_rounds=timing.warmup_rounds,
            iterations=1,
        )
        runs.warmup = len(runs.times) if disabled else start + timing.warmup_rounds

    def _unwrapped(self, role: str) -> Backend:
        backend = self.runtime.backends[role]
        return backend.inner if isinstance(backend, InjectedBackend) else backend

    def extra_info(self, role: str) -> dict[str, Any]:
        runs = self.runs[role]
        pred = runs.last
        vol = self.volume
        info: dict[str, Any] = {
            "case": self.case_id,
            "role": role,
            "model": self.runtime.card.name,
            "backend": self.runtime.profiles[role].backend.value,
            "precision": self.runtime.profiles[role].precision,
            "provider": pred.provider if pred else None,
            "io_binding": bool(getattr(self._unwrapped(role), "io_binding", False)),
            "shape": list(vol.original.shape),
            "spacing": [round(s, 4) for s in vol.spacing],
            "voxels": int(np.prod(vol.shape)),
            "network_shape": list(pred.network_shape) if pred else None,
            "stages_s": runs.stage_medians() if runs.times else {},
            "estimator": self.config.timing.estimator,
            "latency_s": runs.latency(self.config.timing.estimator),
            "peak_rss_mb": peak_rss_mb(),
            "peak_rss_scope": "test" if self.rss_window else "process",
        }
        gflop = self.runtime.gflop_per_window(pred.window if pred else None)
        if pred is not None and gflop is not None and runs.times:
            inference = info["stages_s"]["inference"]
            info["window"] = list(pred.window or ())
            info["windows"] = pred.windows
            info["gflop_per_window"] = round(gflop, 2)
            info["inference_gflops"] = (
                round(pred.windows * gflop / inference, 1) if inference > 0 else None
            )
        if self.truth is not None:
            info["ground_truth"] = {
                "file": self.truth_source,
                "grid": "matches",
                "labels": self.truth_labels,
            }
            if (
                pred is not None
                and self.runtime.card.num_classes > 1
                and not str(self.truth_labels).startswith(LABELS_DIFFER)
            ):
                info["dice_vs_ground_truth"] = round(compute_dice(self.truth, pred.labels).mean, 5)
        return info

    def ensure(self, role: str, timed: bool) -> None:
        """Make sure ``role`` has a prediction (and timed rounds when ``timed``)."""
        runs = self.runs[role]
        if runs.last is None or (timed and not runs.timed):
            if timed:
                self.measure(role, None)
            else:  # an untimed run (benchmarks disabled): no latency
                self.rss_window = reset_peak_rss()
                self.run(role)
                runs.warmup = len(runs.times)

    def reference_latency(self, estimator: str) -> float | None:
        """The reference latency the speed-up uses: the runs interleaved with the candidate's
        timed rounds when there are any, else the reference test's own rounds."""
        if self.paired_reference:
            return estimate([t.total for t in self.paired_reference], estimator)
        return self.runs["reference"].latency(estimator)

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
        summary.reference_s = self.reference_latency(est)
        summary.candidate_s = self.runs["candidate"].latency(est)
        if timed and summary.reference_s is not None and summary.candidate_s is not None:
            summary.gates.append(
                check_speedup(
                    self.case_id,
                    summary.reference_s,
                    summary.candidate_s,
                    self.gates,
                    est,
                    self.baseline,
                )
            )
        summary.candidate_gflops = self.extra_info("candidate").get("inference_gflops")
        summary.baseline_speedup = self.baseline.speedup if self.baseline else None
        self.logit_diff = diff
        for role in ROLES:  # the logits are big; the gates are done with them
            self._drop_logits(role)
        return summary
