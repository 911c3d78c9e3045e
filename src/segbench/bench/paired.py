"""The paired run of one case: the reference and the candidate pipeline on the same volume.

:class:`PairedRun` holds one case's loaded volume (and ground truth) and, per role, every run's
stage times and the last prediction, so the gates compare masks and latencies of one session;
the runtime it runs with (:mod:`segbench.bench.runtime`) is built once per session.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from segbench.bench.inject import InjectedBackend, edit_mask
from segbench.bench.memory import park, peak_rss_mb, reset_peak_rss
from segbench.bench.runtime import Runtime
from segbench.bench.segmenters import deployment_info, relabel, stage_medians, with_pairing_note
from segbench.inputs.limits import DEFAULT_MAX_VOXELS
from segbench.inputs.volumes import (
    GridCheck,
    Volume,
    check_same_grid,
    check_truth_labels,
    label_names,
    load_volume,
)
from segbench.models.card import Shape3
from segbench.pipeline.backends import Backend
from segbench.pipeline.footprint import check_case_memory
from segbench.pipeline.inference import Progress
from segbench.pipeline.predict import Prediction, StageTimes
from segbench.results.agreement import agreement_info, noise_floor, truth_info
from segbench.results.record import gate_info, measurement_info
from segbench.scoring.gates import (
    BaselineSpeedup,
    GateResult,
    SpeedupCheck,
    change_against,
    check_agreement,
    check_dice,
    check_speedup,
    speedup,
)
from segbench.scoring.metrics import DiceResult, LogitDiff, compute_dice, logit_diff
from segbench.scoring.stats import PairSample, Verdict, speedup_interval, verdict
from segbench.scoring.surface import Agreement, agreement
from segbench.settings.config import BenchConfig, Gates
from segbench.settings.kinds import role_of_slot
from segbench.settings.labels import ClassPairing, pair_classes

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


class RunObserver(Protocol):
    """Told of every run of a measurement before it starts, outside the timed part (see
    :mod:`segbench.plugin.progress`)."""

    def start(self, role: str, phase: str, index: int, count: int) -> Progress | None:
        """A run of ``role`` starts: ``phase`` is ``"warm-up"``, ``"round"``, ``"paired"`` (a
        reference run interleaved with the candidate's rounds) or ``"run"`` (untimed), the
        ``index``-th of ``count``. Returns the per-window callback of that run, or None."""
        ...

    def end(self) -> None:
        """The measurement is over."""
        ...


PARK_BYTES = 256 * 2**20  # logits at least this big wait on disk while the other role runs


def estimate(values: list[float], estimator: str) -> float:
    """``min`` or ``median`` of timed rounds."""
    return float(np.min(values) if estimator == "min" else np.median(values))


@dataclass
class RoleRuns:
    times: list[StageTimes] = field(default_factory=list)
    last: Prediction | None = None
    warmup: int = 0  # leading runs that are warm-ups
    previous: np.ndarray | None = None  # the mask of the run before last (the noise floor)

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


@dataclass(frozen=True)
class Truth:
    """A case's ground truth on the volume's grid, and whether its labels mean the model's."""

    labels: np.ndarray
    source: str
    label_check: str  # see truth_label_check


def load_truth(
    path: Path,
    volume: Volume,
    class_names: Sequence[str],
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
    names: Mapping[int, str] | None = None,
) -> Truth:
    """Read a label map, refuse it off ``volume``'s grid or with labels that are not classes
    (:func:`check_truth_labels`), and check its label names (``names``, else the file's own
    label table) against the model's classes."""
    labels = load_volume(path, max_voxels, expect_ct=False)
    check_same_grid(labels, volume)
    names = names if names is not None else label_names(labels.original)
    # before the uint8 cast, which would wrap a negative or fractional label into a class; a
    # truth with its own label table is held to 0..255 (its names are checked just below)
    check_truth_labels(labels.array, labels.source, None if names is not None else len(class_names))
    array = labels.array.astype(np.uint8)
    return Truth(array, labels.source, truth_label_check(array, names, class_names))


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

    @property
    def speedup(self) -> float | None:
        if self.check is not None and self.check.pairs.n:
            return self.check.pairs.speedup
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
        self.truth = truth
        self.runtime = runtime
        self.config = config
        self.gates = gates
        # by slot: "reference" and each candidate's (see candidate_slot)
        self.runs = {slot: RoleRuns() for slot in runtime.profiles}
        self.candidates = [slot for slot in runtime.profiles if slot != "reference"]
        # by candidate slot: the reference runs interleaved with that candidate's rounds
        self.paired_reference: dict[str, list[StageTimes]] = {s: [] for s in self.candidates}
        self.logit_diff: LogitDiff | None = None
        self.baseline = baseline  # of the candidates without one in baselines
        self.baselines = dict(baselines or {})  # by candidate slot
        self.rss_window = False  # peak_rss_mb covers the last measure(), not the whole process
        self._truth_dice: dict[str, tuple[Prediction, float]] = {}  # role -> (prediction, Dice)
        # slot -> (the mask scored, its saved figures against the truth)
        self._truth_agreement: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self.pairings: dict[str, ClassPairing] = {}  # by candidate slot, once scored
        self.observer: RunObserver | None = None

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

    def run(self, role: str, record: bool = True, progress: Progress | None = None) -> Prediction:
        """One end-to-end run (in-memory volume -> mask) of ``role``. It becomes the role's last
        prediction, logits kept for the logit difference; ``record`` (not for paired reference
        runs) also adds its stage times to the role's rounds. ``progress(done, total)`` is
        called per sliding window."""
        self._drop_logits(role)  # this run replaces them: never two rounds' logits at once
        segmenter = self.runtime.segmenter(role)
        segmenter.prepare(self.case_id, self.volume)  # untimed; once per case
        pred = segmenter.segment(self.volume, progress)
        if record:
            self.runs[role].times.append(pred.times)
        before = self.runs[role].last
        if before is not None:
            self.runs[role].previous = before.labels
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

    def _start(self, role: str, phase: str, index: int, count: int) -> Progress | None:
        """Tell the observer a run starts (untimed); its per-window callback."""
        observer = self.observer
        return None if observer is None else observer.start(role, phase, index, count)

    def _end(self) -> None:
        if self.observer is not None:
            self.observer.end()

    def label(self, slot: str) -> str:
        """How progress lines and benchmark names call a slot: its role, or the candidate's
        name."""
        return slot.split(":", 1)[1] if ":" in slot else slot

    def _paired_reference(
        self, slot: str, index: int = 1, count: int = 1, warmup: bool = False
    ) -> None:
        """One reference run right before a timed candidate round (not part of either
        benchmark's statistics): the speed-up compares runs made side by side. The candidate
        round that follows replaces the candidate's logits, so they are dropped first; the
        paired run's prediction replaces the reference's last one (the same model on the same
        volume), so no earlier reference logits are held while it runs; big logits are parked
        on disk before the candidate round.

        With ``warmup``, the run goes before a candidate warm-up and is not kept: the warm-ups
        then alternate as the pairs do, and the first pair is measured in the same alternation
        as the later ones (without it, the first pair's reference run was often the case's
        slowest, up to a third slower)."""
        self._drop_logits(slot)
        phase = "paired warm-up" if warmup else "paired"
        progress = self._start("reference", phase, index, count)
        times = self.run("reference", record=False, progress=progress).times
        if not warmup:
            self.paired_reference.setdefault(slot, []).append(times)
        self._park_logits("reference")

    def measure(self, slot: str, benchmark: Any | None) -> None:
        """Time ``role`` with pytest-benchmark's ``pedantic`` (warm-ups, then rounds), or with a
        plain loop of the same shape when no benchmark fixture is given.

        The candidate's timed rounds are interleaved with reference runs (reference, candidate,
        reference, candidate, ...) so that drift of the machine's speed during the session
        (a neighbour's load, clock changes) hits both sides of the speed-up alike. ``slot`` is
        ``"reference"`` or a candidate's :func:`~segbench.settings.kinds.candidate_slot`.
        """
        timing = self.config.timing
        runs = self.runs[slot]
        role = self.label(slot)
        interleave = slot != "reference"
        self.prepare(slot)
        for other in self.runs:
            if other != slot:
                self._park_logits(other)
        self.rss_window = reset_peak_rss()
        start = len(runs.times)
        warmup = timing.warmup_rounds
        rounds = timing.rounds if interleave else timing.reference_rounds

        def phase(i: int) -> tuple[str, int, int]:  # the i-th run (from 0): warm-up or round
            return ("warm-up", i + 1, warmup) if i < warmup else ("round", i - warmup + 1, rounds)

        def pair(i: int) -> None:  # the reference run before the i-th (kept for timed rounds)
            if interleave:
                _, index, count = phase(i)
                self._paired_reference(slot, index, count, warmup=i < warmup)

        if benchmark is None:
            try:
                for i in range(warmup + rounds):
                    pair(i)
                    self.run(slot, progress=self._start(role, *phase(i)))
                runs.warmup = start + warmup
                if interleave:
                    self._add_pairs(slot)
            finally:
                self._end()
            runs.warmup = start + warmup
            return
        benchmark.group = self.case_id
        benchmark.name = (
            f"candidate[{self.case_id}-{role}]" if ":" in slot else f"{slot}[{self.case_id}]"
        )
        disabled = bool(getattr(benchmark, "disabled", False))
        calls = [0]
        progress: list[Progress | None] = [None]

        def setup() -> None:  # pedantic calls it before every warm-up and timed round
            calls[0] += 1
            if disabled:  # one untimed run
                progress[0] = self._start(role, "run", 1, 1)
                return
            pair(calls[0] - 1)
            progress[0] = self._start(role, *phase(calls[0] - 1))

        def target() -> Prediction:  # what pedantic times
            return self.run(slot, progress=progress[0])

        try:
            benchmark.pedantic(
                target, args=(), setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1
            )
            if interleave and not disabled:
                runs.warmup = start + warmup  # before the added pairs: they pair timed rounds
                self._add_pairs(slot)
        finally:
            self._end()
        runs.warmup = len(runs.times) if disabled else start + warmup

    def prepare(self, slot: str) -> None:
        """Untimed, before ``slot``'s runs (and its paired reference runs): a deployment loads
        its factory or writes the case's input file (see :mod:`segbench.bench.segmenters`)."""
        for role in ("reference", slot):
            self.runtime.segmenter(role).prepare(self.case_id, self.volume)

    def pair_sample(self, slot: str) -> PairSample:
        """The interleaved pairs of candidate ``slot``: each timed round with the reference run
        right before it."""
        return PairSample.from_times(
            [t.total for t in self.paired_reference.get(slot, [])],
            [t.total for t in self.runs[slot].timed],
        )

    def settled(self, slot: str) -> bool:
        """Whether ``slot``'s pairs are enough: the speed-up's interval is within
        ``timing.precision`` and, against a baseline, its verdict is not inconclusive."""
        gates = self.gates
        pairs = self.pair_sample(slot)
        interval = speedup_interval(pairs, gates.confidence)
        if interval is None or interval.half_width > self.config.timing.precision:
            return False
        baseline = self.baselines.get(slot, self.baseline)
        if baseline is None:
            return True
        change = change_against([(pairs, baseline.pairs)], gates)
        return verdict(change, gates.speedup_drop_max) is not Verdict.INCONCLUSIVE

    def _add_pairs(self, slot: str) -> None:
        """Adaptive rounds: after the first ``timing.rounds`` pairs, add pairs (outside
        pytest-benchmark's statistics, inside the gate's) until :meth:`settled`, up to
        ``timing.max_rounds`` pairs and while the pairs so far and one more (at their mean
        duration) fit in ``timing.budget_s``."""
        timing = self.config.timing
        while True:
            paired = self.paired_reference.get(slot, [])
            timed = self.runs[slot].timed
            count = min(len(paired), len(timed))
            spent = sum(t.total for t in paired[:count]) + sum(t.total for t in timed[:count])
            if count == 0 or count >= timing.max_rounds or self.settled(slot):
                return
            if spent + spent / count > timing.budget_s:
                return
            self._drop_logits(slot)
            self._paired_reference(slot, count + 1, timing.max_rounds)
            progress = self._start(self.label(slot), "round", count + 1, timing.max_rounds)
            self.run(slot, progress=progress)

    def _unwrapped(self, role: str) -> Backend | None:
        backend = self.runtime.backends.get(role)
        return backend.inner if isinstance(backend, InjectedBackend) else backend

    def _usable_truth(self) -> Truth | None:
        """The case's ground truth where masks can be scored against it: the model has
        foreground classes and the truth's labels do not differ from them."""
        truth = self.truth
        if (
            truth is None
            or self.runtime.card.num_classes <= 1
            or truth.label_check.startswith(LABELS_DIFFER)
        ):
            return None
        return truth

    def truth_dice(self, role: str) -> float | None:
        """Mean Dice of ``role``'s last mask against the ground truth (computed once per mask),
        or ``None`` without a usable truth."""
        pred = self.runs[role].last
        truth = self._usable_truth()
        if pred is None or truth is None:
            return None
        cached = self._truth_dice.get(role)
        if cached is None or cached[0] is not pred:
            card_names = dict(enumerate(self.runtime.card.class_names))
            pairing = pair_classes(card_names, self.runtime.class_map(role))
            truth_labels, labels = relabel(truth.labels, pred.labels, pairing)
            cached = (pred, compute_dice(truth_labels, labels).mean)
            self._truth_dice[role] = cached
        return cached[1]

    def truth_agreement(self, slot: str) -> dict[str, Any] | None:
        """``slot``'s last mask (as the runtime gave it, without the injected mask edits, as
        :meth:`truth_dice` reads it) against the ground truth in mm, per class in the model's
        numbering (classes paired by name as :meth:`truth_dice` pairs them), in its saved form
        (:func:`~segbench.results.agreement.truth_info`), or ``None`` without a usable truth.
        Computed once per mask: a mask equal voxel for voxel to one already scored in the same
        numbering (the reference's next run, as each candidate's paired runs replace it, or a
        candidate's mask equal to the reference's) reuses its figures."""
        pred = self.runs[slot].last
        truth = self._usable_truth()
        if pred is None or truth is None:
            return None
        numbering = self.runtime.class_map(slot)
        for other in (slot, *self._truth_agreement):
            cached = self._truth_agreement.get(other)
            if (
                cached is not None
                and (other == slot or self.runtime.class_map(other) == numbering)
                and (cached[0] is pred.labels or np.array_equal(cached[0], pred.labels))
            ):
                self._truth_agreement[slot] = cached
                return cached[1]
        card_names = dict(enumerate(self.runtime.card.class_names))
        pairing = pair_classes(card_names, numbering)
        truth_labels, labels = relabel(truth.labels, pred.labels, pairing)
        tolerances = {k: self.gates.nsd_tolerance(n, k) for k, n in enumerate(pairing.names) if k}
        found = agreement(
            truth_labels, labels, self.volume.spacing, tolerances, count_components=False
        )  # the saved truth figures hold no component counts
        saved = truth_info(found)
        self._truth_agreement[slot] = (pred.labels, saved)
        return saved

    def gflops(self, role: str) -> float | None:
        """Achieved GFLOP/s of ``role``'s sliding window (median inference time)."""
        runs = self.runs[role]
        pred = runs.last
        gflop = self.runtime.gflop_per_window(pred.window if pred else None)
        if pred is None or gflop is None or not runs.times:
            return None
        inference = runs.stage_medians()["inference"]
        return round(pred.windows * gflop / inference, 1) if inference > 0 else None

    def extra_info(self, slot: str) -> dict[str, Any]:
        """``slot``'s measurement keys of the benchmark's extra_info (see
        :func:`segbench.results.record.measurement_info`)."""
        role = slot
        runs = self.runs[slot]
        pred = runs.last
        vol = self.volume
        profile = self.runtime.profiles[slot]
        gflop = self.runtime.gflop_per_window(pred.window if pred else None)
        truth = self.truth
        return measurement_info(
            case=self.case_id,
            role=role_of_slot(slot),
            candidate_name=slot.split(":", 1)[1] if ":" in slot else None,
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
            peak_rss_scope="test" if self.rss_window else "process",
            window=tuple(pred.window or ()) if pred else None,
            windows=pred.windows if pred is not None and gflop is not None else None,
            gflop_per_window=gflop if pred is not None else None,
            ground_truth={"file": truth.source, "grid": "matches", "labels": truth.label_check}
            if truth is not None
            else None,
            dice_vs_ground_truth=self.truth_dice(role),
        ) | deployment_info(self.runtime.segmenter(slot), self.pairings.get(slot))

    def ensure(self, role: str, timed: bool) -> None:
        """Make sure ``role`` has a prediction (and timed rounds when ``timed``)."""
        runs = self.runs[role]
        if runs.last is None or (timed and not runs.timed):
            if timed:
                self.measure(role, None)
            else:  # an untimed run (benchmarks disabled): no latency
                self.rss_window = reset_peak_rss()
                self.run(role, progress=self._start(role, "run", 1, 1))
                self._end()
                runs.warmup = len(runs.times)

    def reference_latency(self, estimator: str, slot: str = "candidate") -> float | None:
        """The reference latency ``slot``'s speed-up uses: the runs interleaved with that
        candidate's timed rounds when there are any, else the reference test's own rounds."""
        paired = self.paired_reference.get(slot)
        if paired:
            return estimate([t.total for t in paired], estimator)
        return self.runs["reference"].latency(estimator)

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
        est = self.config.timing.estimator
        reference_s = self.reference_latency(est, slot)
        candidate_s = self.runs[slot].latency(est)
        baseline = self.baselines.get(slot, self.baseline)
        check = None
        if timed and reference_s is not None and candidate_s is not None:
            check = check_speedup(
                self.case_id,
                self.pair_sample(slot),
                (reference_s, candidate_s),
                self.gates,
                est,
                baseline,
            )
            gates.append(check.gate)
        self.logit_diff = diff
        # the logits are big; the gates are done with them (the reference's once the last
        # candidate is scored)
        self._drop_logits(slot)
        if not self.candidates or slot == self.candidates[-1]:
            self._drop_logits("reference")
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
        )

    def pairing(self, slot: str) -> ClassPairing:
        """The reference's and ``slot``'s classes paired by name (see
        :func:`segbench.settings.labels.pair_classes`)."""
        pairing = pair_classes(self.runtime.class_map("reference"), self.runtime.class_map(slot))
        self.pairings[slot] = pairing
        return pairing

    def gate_info(self, evaluation: Evaluation, injected: str) -> dict[str, Any]:
        """The candidate's gate keys of the extra_info (see
        :func:`segbench.results.record.gate_info`)."""
        check = evaluation.check
        return gate_info(
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
