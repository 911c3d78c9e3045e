"""One case's result: :class:`CaseRecord`, written into pytest-benchmark's ``extra_info`` by the
session and read back from it by every reader of saved runs (and by the session's own table).

Each case has two benchmarks: the reference's and the candidate's, each with ``extra_info``.
Both carry the measurement keys (:class:`Measurement`'s :meth:`~Measurement.to_info`: case,
role, model, backend, shape, latency_s, stages_s, ...); the candidate's also carries the gate
keys (:class:`GateFigures`' :meth:`~GateFigures.to_info`: mean_dice, class_dice, reference_s,
candidate_s, speedup, gates, ...). Those two writers and the one reader
(:meth:`CaseRecord.from_benchmarks`) are the only code that knows the keys.
The keys are those of every saved run so far: old runs load unchanged. A session with several
named candidates has one candidate benchmark per case and candidate, each with
``candidate_name``; its record (one per case and candidate) pairs it with the case's one
reference benchmark. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segbench.results.agreement import AgreementRecord
from segbench.results.contention import Contention
from segbench.scoring.gates import speedup as latency_ratio
from segbench.scoring.metrics import DiceResult, LogitDiff
from segbench.scoring.stats import CONFIDENCE, Estimate, PairSample, speedup_interval
from segbench.settings.kinds import ROLES

STAGES = ("preprocess", "inference", "postprocess", "total")
OK = "ok"


@dataclass(frozen=True)
class RoleResult:
    """What one role (reference or candidate) recorded for one case."""

    backend: str
    provider: str
    # the latency the speed-up gate used: for the reference, its runs interleaved with the
    # candidate's timed rounds ("paired"); for the candidate, its own timed rounds
    latency_s: float | None
    latency_source: str  # "gate", "own rounds", "stats.min" or "none"
    stages_s: Mapping[str, float] = field(default_factory=dict)
    dice_vs_ground_truth: float | None = None
    own_latency_s: float | None = None  # the role's own test: its timed rounds (estimator)
    threads: int | None = None  # the backend's thread count (runs saved before: None)
    precision: str | None = None  # fp32, fp16 or bf16 (OpenVINO's hint); runs saved before: None
    timing: str | None = None  # a deployment's: "warm" (pipeline) or "cold" (command)


@dataclass(frozen=True)
class CaseRecord:
    """One case's result, as the session measured it and as a saved run holds it: both roles'
    latencies, the mask agreement and the gate results. Written into the benchmarks'
    ``extra_info`` (:class:`Measurement`, :class:`GateFigures`) and read back from it
    (:meth:`from_extra_info`): the terminal table, ``segbench gate``/``report``/``compare`` and
    the merge all see this one type."""

    case: str
    model: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    voxels: int | None
    estimator: str
    roles: Mapping[str, RoleResult]
    mean_dice: float | None = None
    class_dice: Mapping[str, float] = field(default_factory=dict)
    flipped_fraction: float | None = None
    max_abs_logit_diff: float | None = None
    candidate_gflops: float | None = None  # achieved in the candidate's sliding window
    baseline_speedup: float | None = None  # the case's speed-up in the baseline run, if any
    gates: Mapping[str, bool] = field(default_factory=dict)
    machine: str | None = None  # the machine that ran the case (a merged run has several)
    error: str | None = None  # the case could not run (the session's table: ERROR)
    injected: str | None = None  # --segbench-inject of the run ("none": nothing injected)
    gated_class_dice_min: float | None = None  # lowest Dice of the classes big enough to gate
    candidate: str | None = None  # the candidate's name (None: the one unnamed candidate)
    # reference_s / candidate_s of each interleaved pair (segbench.scoring.stats), and the
    # baseline run's, when the run had a baseline
    pair_speedups: tuple[float, ...] = ()
    baseline_pair_speedups: tuple[float, ...] = ()
    verdict: str | None = None  # against the baseline: regressed, unchanged or inconclusive
    confidence: float = CONFIDENCE  # of the saved speed-up interval
    # NSD, HD95, volumes, presence per class and the noise floors (runs saved before: None)
    agreement: AgreementRecord | None = None
    # classes paired by name (a deployment's own numbering): the common numbering's names
    class_names: Mapping[str, str] = field(default_factory=dict)
    # what the machine gave the pairs; contended ones are not in pair_speedups (runs saved
    # before: None)
    contention: Contention | None = None

    @property
    def left_out(self) -> int:
        """Contended pairs left out of :attr:`pair_speedups`."""
        return self.contention.left_out if self.contention is not None else 0

    @property
    def rerun(self) -> int:
        """Contended runs dropped and run again (their pairs kept)."""
        return self.contention.rerun if self.contention is not None else 0

    @property
    def key(self) -> tuple[str, str | None]:
        """What identifies the row in a run: the case and the candidate's name."""
        return self.case, self.candidate

    @property
    def label(self) -> str:
        """The row's name: the case id, followed by the candidate's name when it has one."""
        return self.case if self.candidate is None else f"{self.case}  {self.candidate}"

    @property
    def provider(self) -> str:
        """The candidate's execution provider (e.g. ``CPUExecutionProvider``)."""
        cand = self.roles.get("candidate")
        return cand.provider if cand else "-"

    @property
    def precision(self) -> str | None:
        """The precision the candidate ran in (``fp32``, ``fp16``, ``bf16``; ``None``: not
        recorded)."""
        cand = self.roles.get("candidate")
        return cand.precision if cand else None

    @property
    def reference_s(self) -> float | None:
        ref = self.roles.get("reference")
        return ref.latency_s if ref else None

    @property
    def reference_own_s(self) -> float | None:
        """The reference test's own timed rounds (not the paired runs the gate uses)."""
        ref = self.roles.get("reference")
        return ref.own_latency_s if ref else None

    @property
    def candidate_s(self) -> float | None:
        cand = self.roles.get("candidate")
        return cand.latency_s if cand else None

    @property
    def speedup(self) -> float | None:
        """The geometric mean of the pair speed-ups; for a run saved without them, reference
        latency / candidate latency (``None`` when either is missing)."""
        if self.pair_speedups:
            return self.pairs.speedup
        if self.left_out:  # every pair was contended: no speed-up is read from them
            return None
        ref, cand = self.reference_s, self.candidate_s
        if ref is None or cand is None:
            return None
        return latency_ratio(ref, cand)

    @property
    def pairs(self) -> PairSample:
        """This run's pair speed-ups (one pair of the latencies for a run saved without)."""
        if self.pair_speedups:
            return PairSample.from_ratios(self.pair_speedups)
        speed = self.speedup
        return PairSample.from_ratios([speed] if speed is not None else [])

    @property
    def baseline_pairs(self) -> PairSample | None:
        """The baseline run's pair speed-ups (its one speed-up when it saved none), or
        ``None`` without a baseline."""
        if self.baseline_pair_speedups:
            return PairSample.from_ratios(self.baseline_pair_speedups)
        if self.baseline_speedup is None:
            return None
        return PairSample.from_ratios([self.baseline_speedup])

    def speedup_interval(self, confidence: float = CONFIDENCE) -> Estimate | None:
        """The speed-up with its interval (``None`` below two pairs)."""
        return speedup_interval(self.pairs, confidence) if self.pair_speedups else None

    @property
    def worst_class(self) -> tuple[str, float] | None:
        """The label with the lowest Dice (ties: the lower label), or ``None`` without Dice."""
        if not self.class_dice:
            return None
        label = min(self.class_dice, key=lambda k: (self.class_dice[k], _label_key(k)))
        return label, self.class_dice[label]

    @property
    def stages(self) -> dict[str, Mapping[str, float]]:
        """Median stage times per role: ``{"reference": {"inference": ...}, ...}``."""
        return {role: r.stages_s for role, r in self.roles.items()}

    @property
    def dice_vs_ground_truth(self) -> dict[str, float]:
        """Each role's Dice against the phantom's ground truth (empty for real scans)."""
        return {
            role: r.dice_vs_ground_truth
            for role, r in self.roles.items()
            if r.dice_vs_ground_truth is not None
        }

    @property
    def failed_gates(self) -> list[str]:
        return [name for name, ok in self.gates.items() if not ok]

    @property
    def missing_roles(self) -> list[str]:
        """The roles without a benchmark in the run (a test that errored before timing)."""
        return [role for role in ROLES if role not in self.roles]

    @property
    def passed(self) -> bool:
        """Both roles ran, every recorded gate passed and the candidate was scored at all."""
        return bool(self.gates) and not self.failed_gates and not self.missing_roles

    @property
    def status(self) -> str:
        """The table's verdict: ``ok``, ``FAIL <gates>``, ``ERROR``, ``MISSING <roles>`` or
        ``not scored`` (the candidate recorded no gate result); only ``ok`` passes."""
        if self.error is not None:
            return "ERROR"
        if not self.roles:
            return "MISSING"
        if self.missing_roles:
            return "MISSING " + ",".join(self.missing_roles)
        if not self.gates:
            return "not scored"
        return "FAIL " + ",".join(self.failed_gates) if self.failed_gates else OK

    def worst_class_text(
        self, class_names: Mapping[str, str] | None = None, digits: int = 4
    ) -> str:
        """``"<name> <Dice>"`` of :attr:`worst_class` (``label N`` without a name), or ``-``."""
        worst = self.worst_class
        if worst is None:
            return "-"
        name = {**(class_names or {}), **self.class_names}.get(worst[0], f"label {worst[0]}")
        return f"{name} {worst[1]:.{digits}f}"

    @classmethod
    def failed_to_run(cls, case: str, error: str) -> CaseRecord:
        """A case of the session whose paired run could not be built (no benchmark)."""
        return cls(case, "-", (), (), None, "min", {}, error=error)

    @classmethod
    def from_named(cls, infos: Mapping[str, Mapping[str, Any]]) -> CaseRecord:
        """The record of a role -> extra_info mapping, its case (and candidate) read from the
        extra_info (the session's records, see :func:`record_key`)."""
        any_info = infos.get("candidate") or next(iter(infos.values()), {})
        return cls.from_extra_info(str(any_info.get("case") or "-"), infos)

    @classmethod
    def from_extra_info(
        cls,
        case: str,
        infos: Mapping[str, Mapping[str, Any]],
        stats: Mapping[str, Any] | None = None,
    ) -> CaseRecord:
        """The record of ``case`` from each role's ``extra_info`` (and pytest-benchmark's
        ``stats`` per role, the latency of last resort)."""
        return cls.from_benchmarks(
            case,
            {
                role: {"extra_info": info, "stats": (stats or {}).get(role)}
                for role, info in infos.items()
            },
        )

    @classmethod
    def from_benchmarks(cls, case: str, benches: Mapping[str, Mapping[str, Any]]) -> CaseRecord:
        """The record of ``case`` from its benchmarks of a saved run (by role)."""
        infos = {role: b.get("extra_info") or {} for role, b in benches.items()}
        cand = infos.get("candidate", {})
        name = cand.get("candidate_name")
        first = cand or next(iter(infos.values()))
        roles = {
            role: _role_result(infos[role], benches[role].get("stats"), role, cand)
            for role in ROLES
            if role in benches
        }
        class_dice = cand.get("class_dice")
        gates = cand.get("gates")
        voxels = first.get("voxels")
        return cls(
            case=case,
            model=str(first.get("model") or "-"),
            shape=tuple(int(s) for s in first.get("shape") or ()),
            spacing=tuple(float(s) for s in first.get("spacing") or ()),
            voxels=int(voxels) if isinstance(voxels, int) else None,
            estimator=str(first.get("estimator") or "min"),
            roles=roles,
            mean_dice=number(cand.get("mean_dice")),
            class_dice={str(k): d for k, v in class_dice.items() if (d := number(v)) is not None}
            if isinstance(class_dice, Mapping)
            else {},
            flipped_fraction=number(cand.get("flipped_fraction")),
            max_abs_logit_diff=number(cand.get("max_abs_logit_diff")),
            candidate_gflops=number(cand.get("inference_gflops")),
            baseline_speedup=number(cand.get("baseline_speedup")),
            # fail closed: only a saved ``true`` is a passed gate
            gates={str(k): v is True for k, v in gates.items()}
            if isinstance(gates, Mapping)
            else {},
            machine=str(first["machine"]) if first.get("machine") else None,
            injected=str(cand["injected"]) if cand.get("injected") else None,
            gated_class_dice_min=number(cand.get("gated_class_dice_min")),
            candidate=str(name) if isinstance(name, str) and name else None,
            pair_speedups=_numbers(cand.get("pair_speedups")),
            baseline_pair_speedups=_numbers(cand.get("baseline_pair_speedups")),
            verdict=str(cand["verdict"]) if isinstance(cand.get("verdict"), str) else None,
            confidence=_confidence(cand.get("speedup_interval")),
            agreement=AgreementRecord.from_info(cand.get("agreement")),
            class_names=pairing_names(cand),
            contention=Contention.read(cand),
        )


def _label_key(label: str) -> tuple[int, str]:
    return (int(label), "") if label.isdigit() else (1 << 30, label)


def _confidence(interval: Any) -> float:
    """The confidence of a saved ``speedup_interval`` (the default when absent or odd)."""
    value = number(interval.get("confidence")) if isinstance(interval, Mapping) else None
    return value if value is not None and 0 < value < 1 else CONFIDENCE


def _numbers(value: Any) -> tuple[float, ...]:
    """The positive finite numbers of a saved list (empty for anything else)."""
    if not isinstance(value, list):
        return ()
    return tuple(v for x in value if (v := number(x)) is not None and v > 0)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _role_result(
    info: Mapping[str, Any], stats: Any, role: str, cand: Mapping[str, Any]
) -> RoleResult:
    # the candidate's extra_info holds the latencies its speed-up gate used (the reference runs
    # interleaved with its timed rounds); the role's own rounds are the fallback
    own = number(info.get("latency_s"))
    own_source = "own rounds"
    if own is None and isinstance(stats, Mapping):
        own = number(stats.get("min"))
        own_source = "stats.min"
    latency = number(cand.get(f"{role}_s"))
    source = "gate"
    if latency is None:
        latency, source = own, own_source if own is not None else "none"
    raw_stages = info.get("stages_s")
    stages = (
        {k: v for k in STAGES if (v := number(raw_stages.get(k))) is not None}
        if isinstance(raw_stages, Mapping)
        else {}
    )
    return RoleResult(
        backend=str(info.get("backend") or "-"),
        provider=str(info.get("provider") or "-"),
        latency_s=latency,
        latency_source=source,
        stages_s=stages,
        dice_vs_ground_truth=number(info.get("dice_vs_ground_truth")),
        own_latency_s=own,
        threads=threads if isinstance(threads := info.get("threads"), int) else None,
        precision=str(p) if (p := info.get("precision")) else None,
        timing=deployment_timing(info),
    )


def deployment_timing(info: Mapping[str, Any]) -> str | None:
    """A deployment's ``timing`` ("warm" or "cold") from its extra_info, else None."""
    deployment = info.get("deployment")
    timing = deployment.get("timing") if isinstance(deployment, Mapping) else None
    return timing if isinstance(timing, str) else None


def pairing_names(info: Mapping[str, Any]) -> dict[str, str]:
    """The class names of a candidate scored with classes paired by name, else empty."""
    pairing = info.get("class_pairing")
    names = pairing.get("names") if isinstance(pairing, Mapping) else None
    if not isinstance(names, Mapping):
        return {}
    return {str(k): str(v) for k, v in names.items()}


@dataclass(frozen=True)
class Measurement:
    """One role's measurement of one case, as its benchmark's ``extra_info`` holds it
    (:meth:`to_info`): the volume (``shape`` in voxels, ``spacing`` in mm), the backend,
    the median stage times and the latency (seconds), the peak RSS (MiB) and, when the
    sliding window's FLOPs are known, the achieved GFLOP/s (:func:`achieved_gflops`)."""

    case: str
    role: str
    model: str
    backend: str
    precision: str
    provider: str | None
    io_binding: bool
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    voxels: int
    network_shape: tuple[int, ...] | None
    stages_s: Mapping[str, float]
    estimator: str
    latency_s: float | None
    peak_rss_mb: float
    peak_rss_scope: str
    candidate_name: str | None = None
    threads: int | None = None
    window: tuple[int, ...] | None = None
    windows: int | None = None
    gflop_per_window: float | None = None
    ground_truth: Mapping[str, Any] | None = None
    dice_vs_ground_truth: float | None = None

    def to_info(self) -> dict[str, Any]:
        """The ``extra_info`` keys of this measurement (both benchmarks of a case)."""
        info: dict[str, Any] = {
            "case": self.case,
            "role": self.role,
            **({"candidate_name": self.candidate_name} if self.candidate_name is not None else {}),
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "provider": self.provider,
            "io_binding": self.io_binding,
            "shape": list(self.shape),
            "spacing": [round(s, 4) for s in self.spacing],
            "voxels": self.voxels,
            "network_shape": list(self.network_shape) if self.network_shape is not None else None,
            "stages_s": dict(self.stages_s),
            "estimator": self.estimator,
            "latency_s": self.latency_s,
            "peak_rss_mb": self.peak_rss_mb,
            "peak_rss_scope": self.peak_rss_scope,
        }
        if self.threads is not None:
            info["threads"] = self.threads
        gflop, windows = self.gflop_per_window, self.windows
        if gflop is not None and windows is not None and self.stages_s:
            info["window"] = list(self.window or ())
            info["windows"] = windows
            info["gflop_per_window"] = round(gflop, 2)
            info["inference_gflops"] = achieved_gflops(windows, gflop, self.stages_s["inference"])
        if self.ground_truth is not None:
            info["ground_truth"] = dict(self.ground_truth)
            if self.dice_vs_ground_truth is not None:
                info["dice_vs_ground_truth"] = round(self.dice_vs_ground_truth, 5)
        return info


def achieved_gflops(windows: int, gflop_per_window: float, inference_s: float) -> float | None:
    """GFLOP/s achieved by the sliding window: ``windows`` windows of ``gflop_per_window`` GFLOP
    in ``inference_s`` seconds, to 0.1 (``None`` for a time that is not positive)."""
    return round(windows * gflop_per_window / inference_s, 1) if inference_s > 0 else None


@dataclass(frozen=True)
class GateFigures:
    """What the candidate's benchmark adds to its ``extra_info`` once the gates ran
    (:meth:`to_info`): the Dice figures, the latencies (seconds) and speed-ups, the gate
    results and, with the interleaved pairs, ``pair_speedups`` (each pair's reference_s /
    candidate_s), ``speedup_interval`` and, against a baseline, ``baseline_pair_speedups``,
    ``baseline_change`` (speed-up / baseline speed-up with its interval) and ``verdict``
    (``agreement``: the ``"agreement"`` value of
    :func:`segbench.results.agreement.agreement_info`)."""

    dice: DiceResult | None
    min_class_voxels: int
    logits: LogitDiff | None
    reference_s: float | None
    candidate_s: float | None
    speedup: float | None
    baseline_speedup: float | None
    injected: str
    gates: Mapping[str, bool]
    pairs: PairSample | None = None
    interval: Estimate | None = None
    baseline_pairs: PairSample | None = None
    change: Estimate | None = None
    verdict: str | None = None
    agreement: Mapping[str, Any] | None = None
    contention: Contention | None = None  # what the machine gave the pairs

    def to_info(self) -> dict[str, Any]:
        """The candidate's gate keys of the ``extra_info``."""
        return (
            self._pair_info()
            | self._dice_info()
            | {
                "max_abs_logit_diff": self.logits.max_abs if self.logits else None,
                "reference_s": self.reference_s,
                "candidate_s": self.candidate_s,
                "speedup": self.speedup,
                "baseline_speedup": self.baseline_speedup,
                "injected": self.injected,
                "gates": dict(self.gates),
            }
        )

    def _pair_info(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        if self.pairs is not None and self.pairs.n:
            stats["pair_speedups"] = self.pairs.ratios
            stats["speedup_interval"] = self.interval.as_dict() if self.interval else None
        if self.baseline_pairs is not None and self.baseline_pairs.n:
            stats["baseline_pair_speedups"] = self.baseline_pairs.ratios
            stats["baseline_change"] = self.change.as_dict() if self.change else None
            stats["verdict"] = self.verdict
        if self.agreement is not None:
            stats["agreement"] = dict(self.agreement)
        if self.contention is not None:
            stats |= self.contention.to_info()
        return stats

    def _dice_info(self) -> dict[str, Any]:
        dice = self.dice
        if dice is None:
            return {
                "mean_dice": None,
                "class_dice": {},
                "gated_class_dice_min": None,
                "flipped_fraction": None,
            }
        gated = [round(c.dice, 6) for c in dice.per_class if c.voxels >= self.min_class_voxels]
        return {
            "mean_dice": round(dice.mean, 6),
            "class_dice": {str(c.label): round(c.dice, 6) for c in dice.per_class},
            "gated_class_dice_min": min(gated, default=None),
            "flipped_fraction": dice.flipped_fraction,
        }


def record_key(case: str, candidate: str | None) -> str:
    """A string key of a case's row (the session's records, an xdist worker's output, the
    baseline's speed-ups): the case id, or ``<case>|<candidate>`` for a named candidate."""
    return case if candidate is None else f"{case}|{candidate}"
