"""The paired run of one case: the reference and the candidate pipeline on the same volume.

:class:`PairedRun` holds one case's loaded volume and, through its parts, every run of each
role (:class:`~segbench.bench.timing.Rounds`: warm-ups, rounds, pairs, CPU figures) and the
ground truth's scores (:class:`~segbench.bench.truth.TruthScores`); it evaluates the gates of
each candidate and builds the benchmark's extra_info. The runtime it runs with
(:mod:`segbench.bench.runtime`) is built once per session.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from segbench.bench.contention import load_1m
from segbench.bench.inject import InjectedBackend, edit_mask
from segbench.bench.memory import peak_rss_mb, reset_peak_rss
from segbench.bench.runtime import Runtime
from segbench.bench.segmenters import deployment_info, relabel, stage_medians, with_pairing_note
from segbench.bench.timing import RoleRuns, Rounds, RunObserver, estimate
from segbench.bench.truth import LABELS_DIFFER, Truth, TruthScores, load_truth, truth_label_check
from segbench.inputs.limits import DEFAULT_MAX_VOXELS
from segbench.inputs.volumes import GridCheck, Volume, load_volume
from segbench.models.card import Shape3
from segbench.pipeline.backends import Backend
from segbench.pipeline.footprint import check_case_memory
from segbench.pipeline.inference import Progress
from segbench.pipeline.predict import Prediction, StageTimes
from segbench.results.agreement import agreement_info, noise_floor
from segbench.results.contention import Contention
from segbench.results.record import GateFigures, Measurement, achieved_gflops
from segbench.scoring.gates import (
    BaselineSpeedup,
    GateResult,
    SpeedupCheck,
    check_agreement,
    check_dice,
    check_speedup,
    speedup,
)
from segbench.scoring.metrics import DiceResult, LogitDiff, compute_dice, logit_diff
from segbench.scoring.stats import PairSample, Verdict
from segbench.scoring.surface import Agreement, agreement
from segbench.settings.config import BenchConfig, Gates
from segbench.settings.kinds import candidate_of_slot, role_of_slot
from segbench.settings.labels import ClassPairing, pair_classes

__all__ = [  # re-exported: their home is bench.timing / bench.truth
    "LABELS_DIFFER",
    "Evaluation",
    "PairedRun",
    "RoleRuns",
    "RunObserver",
    "Truth",
    "estimate",
    "load_truth",
    "memory_check",
    "truth_label_check",
]


def memory_check(runtime: Runtime) -> GridCheck:
    """A case's grid is refused before its voxels are read when one run of the runtime's
    profiles cannot fit in the memory available (see :mod:`segbench.pipeline.footprint`)."""
    settings = [p.pipeline for p in runtime.profiles.values()]

    def check(shape: Shape3, spacing: tuple[float, float, float], source: str) -> None:
        check_case_memory(source, shape, spacing, runtime.card, settings)

    return check


@dataclass
class Evaluation:
    """The gates of one case as evaluated in memory (mask agreement, latencies, verdicts)."""

    dice: DiceResult
    logits: LogitDiff | None
    gates: list[GateResult]
    reference_s: float | None
    candidate_s: float | None
    candidate_gflops: float | None
    baseline_speedup: float | None
    check: SpeedupCheck | None = None  # the speed-up gate's statistics (timed runs only)
    agreement: Agreement | None = None  # in mm (segbench.scoring.surface)
    agreement_info: dict[str, Any] | None = None  # its saved form, with the noise floors
    slot: str = "candidate"  # the candidate's

    @property
    def speedup(self) -> float | None:
        if self.check is not None and self.check.pairs.n:
            return self.check.pairs.speedup
        if self.check is not None and self.check.verdict is Verdict.BUSY:
            return None  # every pair was contended
        if self.reference_s is None or self.candidate_s is None:
            return None
        return speedup(self.reference_s, self.candidate_s)


class PairedRun:
    """Reference and candidate runs of one case, on one loaded volume (and its ground truth)."""

    def __init__(
        self,
        case_id: str,
        volume: Volume,
        truth: Truth | None,
        runtime: Runtime,
        config: BenchConfig,
        gates: Gates,
        baseline: BaselineSpeedup | None = None,
        baselines: Mapping[str, BaselineSpeedup] | None = None,
    ) -> None:
        self.case_id = case_id
        self.volume = volume
        self.runtime = runtime
        self.config = config
        self.gates = gates
        self.baseline = baseline  # of the candidates without one in baselines
        self.baselines = dict(baselines or {})  # by candidate slot
        threads = {slot: p.threads or 1 for slot, p in runtime.profiles.items()}
        self.rounds = Rounds(
            case_id, threads, self._segment, self.prepare, config.timing, gates, self.baseline_of
        )
        self.truth = truth  # with its scores (self.truth_scores)
        self.logit_diff: LogitDiff | None = None
        self.pairings: dict[str, ClassPairing] = {}  # by candidate slot, once scored

    @classmethod
    def load(
        cls,
        case_id: str,
        image: Path,
        truth: Path | None,
        runtime: Runtime,
        config: BenchConfig,
        gates: Gates,
        max_voxels: int | None = DEFAULT_MAX_VOXELS,
        baseline: BaselineSpeedup | None = None,
        baselines: Mapping[str, BaselineSpeedup] | None = None,
        truth_names: Mapping[int, str] | None = None,
        truth_source: str | None = None,
    ) -> PairedRun:
        """Read the case's volume (and ground truth) and pair them with ``runtime``.
        ``truth_source`` names the ground truth in the extra_info (default: its path)."""
        volume = load_volume(image, max_voxels, check_grid=memory_check(runtime))
        loaded = (
            None
            if truth is None
            else load_truth(truth, volume, runtime.card.class_names, max_voxels, truth_names)
        )
        if loaded is not None and truth_source is not None:
            loaded = replace(loaded, source=truth_source)
        return cls(case_id, volume, loaded, runtime, config, gates, baseline, baselines)

    @property
    def truth(self) -> Truth | None:
        return self._truth

    @truth.setter
    def truth(self, truth: Truth | None) -> None:
        runtime = self.runtime
        self._truth = truth
        self.truth_scores = TruthScores(
            truth, runtime.card.class_names, runtime.class_map, self.gates, self.volume.spacing
        )

    # the timed runs live in self.rounds (bench.timing); these read them
    @property
    def runs(self) -> dict[str, RoleRuns]:
        return self.rounds.runs

    @property
    def candidates(self) -> list[str]:
        return self.rounds.candidates

    @property
    def paired_reference(self) -> dict[str, list[StageTimes]]:
        return self.rounds.paired_reference

    @property
    def observer(self) -> RunObserver | None:
        return self.rounds.observer

    @observer.setter
    def observer(self, observer: RunObserver | None) -> None:
        self.rounds.observer = observer

    def baseline_of(self, slot: str) -> BaselineSpeedup | None:
        """The baseline speed-up candidate ``slot`` is judged against, if any."""
        return self.baselines.get(slot, self.baseline)

    def _segment(self, slot: str, progress: Progress | None) -> Prediction:
        segmenter = self.runtime.segmenter(slot)
        segmenter.prepare(self.case_id, self.volume)  # untimed; once per case
        return segmenter.segment(self.volume, progress)

    def run(self, role: str, record: bool = True, progress: Progress | None = None) -> Prediction:
        """One end-to-end run of ``role`` (see :meth:`~segbench.bench.timing.Rounds.run`)."""
        return self.rounds.run(role, record, progress)

    def measure(self, slot: str, benchmark: Any | None) -> None:
        """Time ``slot`` (see :meth:`~segbench.bench.timing.Rounds.measure`)."""
        self.rounds.measure(slot, benchmark)

    def pair_sample(self, slot: str) -> PairSample:
        """``slot``'s uncontended pairs (see :meth:`~segbench.bench.timing.Rounds.pair_sample`)."""
        return self.rounds.pair_sample(slot)

    def reference_latency(self, estimator: str, slot: str = "candidate") -> float | None:
        return self.rounds.reference_latency(estimator, slot)

    def prepare(self, slot: str) -> None:
        """Untimed, before ``slot``'s runs (and its paired reference runs): a deployment loads
        its factory or writes the case's input file (see :mod:`segbench.bench.segmenters`)."""
        for role in ("reference", slot):
            self.runtime.segmenter(role).prepare(self.case_id, self.volume)

    def _unwrapped(self, role: str) -> Backend | None:
        backend = self.runtime.backends.get(role)
        return backend.inner if isinstance(backend, InjectedBackend) else backend

    def truth_dice(self, role: str) -> float | None:
        """Mean Dice of ``role``'s last mask against the ground truth (once per mask)."""
        return self.truth_scores.dice(role, self.runs[role].last)

    def truth_agreement(self, slot: str) -> dict[str, Any] | None:
        """``slot``'s last mask against the ground truth in mm, saved form (once per mask, see
        :meth:`~segbench.bench.truth.TruthScores.agreement`)."""
        return self.truth_scores.agreement(slot, self.runs[slot].last)

    def gflops(self, role: str) -> float | None:
        """Achieved GFLOP/s of ``role``'s sliding window (median inference time)."""
        runs = self.runs[role]
        pred = runs.last
        gflop = self.runtime.gflop_per_window(pred.window if pred else None)
        if pred is None or gflop is None or not runs.times:
            return None
        return achieved_gflops(pred.windows, gflop, runs.stage_medians()["inference"])

    def extra_info(self, slot: str) -> dict[str, Any]:
        """``slot``'s measurement keys of the benchmark's extra_info (see
        :class:`segbench.results.record.Measurement`)."""
        role = slot
        runs = self.runs[slot]
        pred = runs.last
        vol = self.volume
        profile = self.runtime.profiles[slot]
        gflop = self.runtime.gflop_per_window(pred.window if pred else None)
        truth = self.truth
        return Measurement(
            case=self.case_id,
            role=role_of_slot(slot),
            candidate_name=candidate_of_slot(slot),
            threads=profile.threads,
            model=self.runtime.card.name,
            backend=profile.backend.value,
            precision=profile.precision,
            provider=pred.provider if pred else None,
            io_binding=bool(getattr(self._unwrapped(role), "io_binding", False)),
            shape=tuple(vol.original.shape),
            spacing=tuple(vol.spacing),
            voxels=int(np.prod(vol.shape)),
            network_shape=tuple(pred.network_shape) if pred and any(pred.network_shape) else None,
            stages_s=stage_medians(runs, self.runtime.segmenter(slot)),
            estimator=self.config.timing.estimator,
            latency_s=runs.latency(self.config.timing.estimator),
            peak_rss_mb=peak_rss_mb(),
            peak_rss_scope="test" if self.rounds.rss_window else "process",
            window=tuple(pred.window or ()) if pred else None,
            windows=pred.windows if pred is not None and gflop is not None else None,
            gflop_per_window=gflop if pred is not None else None,
            ground_truth=truth.info() if truth is not None else None,
            dice_vs_ground_truth=self.truth_dice(role),
        ).to_info() | deployment_info(self.runtime.segmenter(slot), self.pairings.get(slot))

    def ensure(self, role: str, timed: bool) -> None:
        """Make sure ``role`` has a prediction (and timed rounds when ``timed``)."""
        runs = self.runs[role]
        if runs.last is None or (timed and not runs.timed):
            if timed:
                self.measure(role, None)
            else:  # an untimed run (benchmarks disabled): no latency
                self.rounds.rss_window = reset_peak_rss()
                self.run(role, progress=self.rounds.start(role, "run", 1, 1))
                self.rounds.end()
                runs.warmup = len(runs.times)

    def evaluate(self, timed: bool, slot: str = "candidate") -> Evaluation:
        """Both gates for candidate ``slot`` of this case. ``timed=False`` (benchmarks
        disabled) skips the speed-up."""
        for role in ("reference", slot):
            self.ensure(role, timed)
        ref, cand = self.runs["reference"].last, self.runs[slot].last
        assert ref is not None and cand is not None
        pairing = self.pairing(slot)
        ref_labels, cand_labels = relabel(ref.labels, cand.labels, pairing)
        cand_labels = self.edited(cand_labels, pairing.names)
        dice = compute_dice(ref_labels, cand_labels)
        diff = None
        if (
            ref.logits is not None
            and cand.logits is not None
            and ref.logits.shape == cand.logits.shape
        ):
            diff = logit_diff(ref.logits, cand.logits)
        names = pairing.names
        gates = [
            with_pairing_note(
                check_dice(self.case_id, dice, self.gates, names, diff),
                pairing,
                cand.logits,
                deployment=self.runtime.segmenter(slot).describe() is not None,
            )
        ]
        agreement, saved = self.agreement(slot, ref_labels, cand_labels, names)
        gates += check_agreement(self.case_id, agreement, self.gates, names)
        check, reference_s, candidate_s = self._speedup(slot, timed)
        if check is not None:
            gates.append(check.gate)
        baseline = self.baseline_of(slot)
        self.logit_diff = diff
        # the logits are big; the gates are done with them (the reference's once the last
        # candidate is scored)
        self.rounds.drop_logits(slot)
        if not self.candidates or slot == self.candidates[-1]:
            self.rounds.drop_logits("reference")
        return Evaluation(
            dice=dice,
            logits=diff,
            gates=gates,
            reference_s=reference_s,
            candidate_s=candidate_s,
            candidate_gflops=self.gflops(slot),
            baseline_speedup=baseline.speedup if baseline else None,
            check=check,
            agreement=agreement,
            agreement_info=saved,
            slot=slot,
        )

    def _speedup(
        self, slot: str, timed: bool
    ) -> tuple[SpeedupCheck | None, float | None, float | None]:
        """``slot``'s speed-up gate from its uncontended pairs (``None`` untimed), and the
        reference's and candidate's latencies."""
        est = self.config.timing.estimator
        reference_s = self.reference_latency(est, slot)
        candidate_s = self.runs[slot].latency(est)
        if not timed or reference_s is None or candidate_s is None:
            return None, reference_s, candidate_s
        check = check_speedup(
            self.case_id,
            self.pair_sample(slot),
            (reference_s, candidate_s),
            self.gates,
            est,
            self.baseline_of(slot),
            self.rounds.left_out(slot).n,
            self.rounds.rerun.get(slot, 0),
        )
        return check, reference_s, candidate_s

    def pairing(self, slot: str) -> ClassPairing:
        """The reference's and ``slot``'s classes paired by name (see
        :func:`segbench.settings.labels.pair_classes`)."""
        pairing = pair_classes(self.runtime.class_map("reference"), self.runtime.class_map(slot))
        self.pairings[slot] = pairing
        return pairing

    def gate_info(self, evaluation: Evaluation, injected: str) -> dict[str, Any]:
        """The candidate's gate keys of the extra_info (see
        :class:`segbench.results.record.GateFigures`)."""
        check = evaluation.check
        return GateFigures(
            dice=evaluation.dice,
            min_class_voxels=self.gates.min_class_voxels,
            logits=evaluation.logits,
            reference_s=evaluation.reference_s,
            candidate_s=evaluation.candidate_s,
            speedup=evaluation.speedup,
            baseline_speedup=evaluation.baseline_speedup,
            injected=injected,
            gates={g.name: g.passed for g in evaluation.gates},
            pairs=check.pairs if check else None,
            interval=check.interval if check else None,
            baseline_pairs=check.baseline_pairs if check else None,
            change=check.change if check else None,
            verdict=check.verdict.value if check and check.verdict else None,
            agreement=evaluation.agreement_info,
            contention=self.contention(evaluation.slot) if check else None,
        ).to_info()

    def contention(self, slot: str) -> Contention:
        """What the machine gave ``slot``'s pairs (see :mod:`segbench.results.contention`)."""
        rounds, timing = self.rounds, self.config.timing
        return Contention.measured(
            timing.busy_max,
            len(rounds.pairs(slot)),
            rounds.left_out(slot).ratios,
            rounds.cpu_shares(slot),
            rounds.others_shares(slot),
            rounds.waited_s.get(slot, 0.0),
            load_1m(),
            rounds.per_pair(slot),
            rounds.rerun.get(slot, 0),
            rounds.steal_shares(slot),
        )

    def edited(self, labels: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """A candidate's mask (in the common numbering of ``names``) as the gates score it: with
        the session's injected mask edits (``--segbench-inject erode=..``, see
        :func:`segbench.bench.inject.edit_mask`)."""
        for edit in self.runtime.injection.mask_edits:
            labels = edit_mask(labels, edit, names, self.volume.spacing)
        return labels

    def agreement(
        self,
        slot: str,
        ref_labels: np.ndarray,
        cand_labels: np.ndarray,
        names: Sequence[str],
    ) -> tuple[Agreement, dict[str, Any]]:
        """The candidate's mask against the reference's in mm, both in the common numbering
        of ``names`` (once per case and candidate, on the reference's grid), the noise floors
        (each role's last two masks against each other, in its own numbering), each role's
        mask against the ground truth where the case has a usable one (informational,
        :meth:`truth_agreement`) and the seconds all of it took: the figures and their saved
        form."""
        start = time.perf_counter()
        spacing = self.volume.spacing
        tolerances = {k: self.gates.nsd_tolerance(n, k) for k, n in enumerate(names) if k}
        found = agreement(ref_labels, cand_labels, spacing, tolerances)
        floors: dict[str, dict[str, float]] = {}
        for role, runs in (("reference", self.runs["reference"]), ("candidate", self.runs[slot])):
            last = runs.last
            if runs.previous is not None and last is not None:
                same = np.array_equal(runs.previous, last.labels)
                floor = None if same else agreement(runs.previous, last.labels, spacing, tolerances)
                floors[role] = noise_floor(runs.previous, last.labels, floor)
        truth = {
            role: figures
            for role, s in (("reference", "reference"), ("candidate", slot))
            if (figures := self.truth_agreement(s)) is not None
        }
        return found, agreement_info(found, floors, time.perf_counter() - start, truth)
