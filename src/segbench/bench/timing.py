"""The timed runs of one case: warm-ups, rounds, the reference runs interleaved with each
candidate's rounds (the pairs), adaptive rounds, and what each run got of the machine.

:class:`Rounds` owns, per slot (``"reference"`` or a candidate's
:func:`~segbench.settings.kinds.candidate_slot`), every run's stage times and CPU figures
(:mod:`segbench.bench.contention`) and the last prediction; it knows nothing of masks or
gates beyond the speed-up's "enough pairs" rule (:meth:`Rounds.settled`). A pair whose
either side was contended is left out of :meth:`Rounds.pair_sample` and re-measured within the
budget.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from segbench.bench.contention import RunCpu, Snapshot, run_cpu, snapshot, wait_quiet
from segbench.bench.memory import park, reset_peak_rss
from segbench.pipeline.inference import Progress
from segbench.pipeline.predict import Prediction, StageTimes
from segbench.scoring.gates import BaselineSpeedup, busy_change, change_against
from segbench.scoring.stats import PairSample, Verdict, speedup_interval, verdict
from segbench.settings.config import Gates, Timing
from segbench.settings.kinds import candidate_of_slot, slot_label

PARK_BYTES = 256 * 2**20  # logits at least this big wait on disk while the other role runs
PAIR_WAIT_S = 8.0  # the longest wait for a quiet phase to start before one run
SETTLE_S = 1.0  # quiet this long from the start of a wait: the contended run was a blip
RETRIES = 2  # a contended run of a pair is run again up to this many times


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


def estimate(values: list[float], estimator: str) -> float:
    """``min`` or ``median`` of timed rounds."""
    return float(np.min(values) if estimator == "min" else np.median(values))


@dataclass
class RoleRuns:
    """One slot's runs: stage times and CPU figures of each (warm-ups first), the last
    prediction and the mask of the run before it (the noise floor)."""

    times: list[StageTimes] = field(default_factory=list)
    cpu: list[RunCpu] = field(default_factory=list)
    last: Prediction | None = None
    warmup: int = 0  # leading runs that are warm-ups
    previous: np.ndarray | None = None

    @property
    def timed(self) -> list[StageTimes]:
        return self.times[self.warmup :]

    @property
    def timed_cpu(self) -> list[RunCpu]:
        return self.cpu[self.warmup :]

    def latency(self, estimator: str) -> float | None:
        totals = [t.total for t in self.timed]
        return estimate(totals, estimator) if totals else None

    def stage_medians(self) -> dict[str, float]:
        runs = self.timed or self.times
        return {
            k: float(np.median([t.as_dict()[k] for t in runs]))
            for k in ("preprocess", "inference", "postprocess", "total")
        }


Segment = Callable[[str, "Progress | None"], Prediction]


class Rounds:
    """Every run of one case, by slot. ``segment(slot, progress)`` makes one end-to-end run;
    ``prepare(slot)`` readies ``slot`` and the reference, untimed; ``threads`` are the threads
    each slot asked for (its CPU share's denominator)."""

    def __init__(
        self,
        case_id: str,
        slots: Mapping[str, int],
        segment: Segment,
        prepare: Callable[[str], None],
        timing: Timing,
        gates: Gates,
        baseline_of: Callable[[str], BaselineSpeedup | None],
    ) -> None:
        self.case_id = case_id
        self.threads = dict(slots)
        self.segment = segment
        self.prepare = prepare
        self.timing = timing
        self.gates = gates
        self.baseline_of = baseline_of
        self.runs = {slot: RoleRuns() for slot in slots}
        self.candidates = [slot for slot in slots if slot != "reference"]
        # by candidate slot: the reference runs interleaved with that candidate's rounds
        self.paired_reference: dict[str, list[StageTimes]] = {s: [] for s in self.candidates}
        self.paired_cpu: dict[str, list[RunCpu]] = {s: [] for s in self.candidates}
        self.waited_s: dict[str, float] = {s: 0.0 for s in self.candidates}
        self.rerun: dict[str, int] = {s: 0 for s in self.candidates}  # contended runs dropped
        self.last_cpu: RunCpu | None = None
        self.last_of: dict[str, RunCpu] = {}  # by role: its last run's figures
        self.cycling = False  # a wait saw others busy, then quiet: every paired run waits
        self.sample: Callable[[], Snapshot] = snapshot  # the clocks (tests script them)
        self.sleep: Callable[[float], None] = time.sleep
        self.rss_window = False  # peak RSS covers the last measure(), not the whole process
        self.observer: RunObserver | None = None

    def run(self, role: str, record: bool = True, progress: Progress | None = None) -> Prediction:
        """One end-to-end run (in-memory volume -> mask) of ``role``, with its CPU figures. It
        becomes the role's last prediction, logits kept for the logit difference; ``record``
        (not for paired reference runs) also adds its stage times to the role's rounds."""
        self.drop_logits(role)  # this run replaces them: never two rounds' logits at once
        before = self.sample()
        pred = self.segment(role, progress)
        self.last_cpu = run_cpu(before, self.sample(), self.threads.get(role, 1))
        self.last_of[role] = self.last_cpu
        runs = self.runs[role]
        if record:
            runs.times.append(pred.times)
            runs.cpu.append(self.last_cpu)
        if runs.last is not None:
            runs.previous = runs.last.labels
        runs.last = pred
        return pred

    def _uncontended(self, slot: str, role: str, progress: Progress | None) -> Prediction:
        """One run of ``role`` (unrecorded) for ``slot``'s pairs, run again while it was
        contended, after a wait for a quiet machine, up to ``RETRIES`` more times within the
        case's ``quiet_wait_s``: a neighbour's busy phase costs a run, not a pair. The runs
        dropped are counted in ``rerun``."""
        pred = self.run(role, record=False, progress=progress)
        for _ in range(RETRIES):
            last = self.last_cpu
            if last is None or not last.contended(self.timing.busy_max):
                break
            if not self._wait_quiet(slot):
                break
            self.rerun[slot] = self.rerun.get(slot, 0) + 1
            pred = self.run(role, record=False, progress=progress)
        return pred

    def drop_logits(self, role: str) -> None:
        last = self.runs[role].last
        if last is not None:
            last.logits = None

    def park_logits(self, role: str) -> None:
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

    def start(self, role: str, phase: str, index: int, count: int) -> Progress | None:
        """Tell the observer a run starts (untimed); its per-window callback."""
        observer = self.observer
        return None if observer is None else observer.start(role, phase, index, count)

    def end(self) -> None:
        if self.observer is not None:
            self.observer.end()

    def before_run(self, slot: str, role: str) -> None:
        """Untimed, before a run of ``role`` in ``slot``'s pairs: wait for a quiet phase to
        start (:meth:`_wait_quiet`) where the last run, or ``role``'s last run, was contended,
        or where this case has seen a neighbour come and go (:attr:`cycling`): a run that
        starts late in a neighbour's idle phase runs into its busy one, and a run overlapped
        for a tenth of a second can be a tenth slower while others' share stays small."""
        busy_max = self.timing.busy_max
        last = [c for c in (self.last_of.get(role), self.last_cpu) if c is not None]
        if self.cycling or any(c.contended(busy_max) for c in last):
            self._wait_quiet(slot, force=True)

    def _wait_quiet(self, slot: str, force: bool = False) -> bool:
        """After a contended run, wait (within the case's ``quiet_wait_s``) for the machine to
        go quiet before the next run, so that it starts at the beginning of a neighbour's idle
        phase rather than at a random point of its cycle. A wait that saw others busy, then
        quiet, sets :attr:`cycling`; one quiet for ``SETTLE_S`` from its start (where the case
        is not cycling), or throughout, clears it. A machine that stays busy through one wait
        is not waited for again in this case. Whether the machine is quiet now."""
        last, timing = self.last_cpu, self.timing
        left = timing.quiet_wait_s - self.waited_s.get(slot, 0.0)
        if not force and (last is None or not last.contended(timing.busy_max)):
            return True
        if left <= 0:
            return False
        limit = min(left, PAIR_WAIT_S)
        settle = None if self.cycling else SETTLE_S
        found = wait_quiet(timing.busy_max, limit, self.sample, self.sleep, settle_s=settle)
        spent = self.waited_s.get(slot, 0.0) + found.seconds
        self.waited_s[slot] = spent if found.quiet else max(spent, timing.quiet_wait_s)
        self.cycling = found.quiet and found.saw_busy
        return found.quiet

    def reference_before(
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
        self.drop_logits(slot)
        if not warmup:
            self.before_run(slot, "reference")
        phase = "paired warm-up" if warmup else "paired"
        progress = self.start("reference", phase, index, count)
        if warmup:
            times = self.run("reference", record=False, progress=progress).times
        else:
            times = self._uncontended(slot, "reference", progress).times
            self.paired_reference.setdefault(slot, []).append(times)
            assert self.last_cpu is not None
            self.paired_cpu.setdefault(slot, []).append(self.last_cpu)
        self.park_logits("reference")

    def label(self, slot: str) -> str:
        """How progress lines and benchmark names call a slot: its role, or the candidate's
        name."""
        return slot_label(slot)

    def measure(self, slot: str, benchmark: Any | None) -> None:
        """Time ``slot`` with pytest-benchmark's ``pedantic`` (warm-ups, then rounds), or with a
        plain loop of the same shape when no benchmark fixture is given.

        The candidate's timed rounds are interleaved with reference runs (reference, candidate,
        reference, candidate, ...) so that drift of the machine's speed during the session
        (clock changes, a neighbour's load) hits both sides of the speed-up alike; pairs
        during which a neighbour took the cores are left out (:meth:`pair_sample`)."""
        self.prepare(slot)
        for other in self.runs:
            if other != slot:
                self.park_logits(other)
        self.rss_window = reset_peak_rss()
        plan = _Plan(self, slot, len(self.runs[slot].times))
        try:
            if benchmark is None:
                plan.loop()
            else:
                plan.pedantic(benchmark)
        finally:
            self.end()

    def pairs(self, slot: str) -> list[tuple[StageTimes, StageTimes, bool]]:
        """``slot``'s pairs in order: (reference run, candidate round, contended)."""
        busy_max = self.timing.busy_max
        timed, cpu = self.runs[slot].timed, self.runs[slot].timed_cpu
        paired, paired_cpu = self.paired_reference.get(slot, []), self.paired_cpu.get(slot, [])
        found = []
        for i, (ref, cand) in enumerate(zip(paired, timed, strict=False)):
            sides = [c[i] for c in (paired_cpu, cpu) if i < len(c)]
            found.append((ref, cand, any(c.contended(busy_max) for c in sides)))
        return found

    def pair_sample(self, slot: str) -> PairSample:
        """The uncontended interleaved pairs of candidate ``slot``: each timed round with the
        reference run right before it."""
        clean = [(r.total, c.total) for r, c, contended in self.pairs(slot) if not contended]
        return PairSample.from_times([r for r, _ in clean], [c for _, c in clean])

    def left_out(self, slot: str) -> PairSample:
        """The contended pairs of candidate ``slot`` (left out of :meth:`pair_sample`)."""
        busy = [(r.total, c.total) for r, c, contended in self.pairs(slot) if contended]
        return PairSample.from_times([r for r, _ in busy], [c for _, c in busy])

    def settled(self, slot: str) -> bool:
        """Whether ``slot``'s pairs are enough: the speed-up's interval is within
        ``timing.precision`` and, against a baseline, its verdict is not inconclusive."""
        gates = self.gates
        pairs = self.pair_sample(slot)
        interval = speedup_interval(pairs, gates.confidence)
        if interval is None or interval.half_width > self.timing.precision:
            return False
        baseline = self.baseline_of(slot)
        if baseline is None:
            return True
        change = change_against([(pairs, baseline.pairs)], gates)
        contended = self.left_out(slot).n + self.rerun.get(slot, 0)
        change = busy_change(change, contended, len(self.pairs(slot)), gates.busy_bias)
        return verdict(change, gates.speedup_drop_max) is not Verdict.INCONCLUSIVE

    def add_pairs(self, slot: str) -> None:
        """Adaptive rounds: after the first ``timing.rounds`` pairs, add pairs (outside
        pytest-benchmark's statistics, inside the gate's) until :meth:`settled`, up to
        ``timing.max_rounds`` uncontended pairs (twice that in all), while the uncontended
        pairs so far and one more (at the mean pair's duration) fit in ``timing.budget_s``
        and all of them and one more in twice that: contended pairs are measured again in
        their place, within a second budget."""
        timing = self.timing
        while True:
            pairs = self.pairs(slot)
            count = len(pairs)
            spent = sum(r.total + c.total for r, c, _ in pairs)
            kept = sum(r.total + c.total for r, c, busy in pairs if not busy)
            clean = count - sum(busy for _, _, busy in pairs)
            if count == 0 or clean >= timing.max_rounds or count >= 2 * timing.max_rounds:
                return
            mean = spent / count
            if self.settled(slot) or kept + mean > timing.budget_s:
                return
            if spent + mean > 2 * timing.budget_s:
                return
            self.drop_logits(slot)
            self.reference_before(slot, count + 1, timing.max_rounds)
            self.before_run(slot, slot)
            progress = self.start(self.label(slot), "round", count + 1, timing.max_rounds)
            pred = self._uncontended(slot, slot, progress)
            assert self.last_cpu is not None
            self.runs[slot].times.append(pred.times)
            self.runs[slot].cpu.append(self.last_cpu)

    def reference_latency(self, estimator: str, slot: str = "candidate") -> float | None:
        """The reference latency ``slot``'s speed-up uses: the runs interleaved with that
        candidate's timed rounds when there are any, else the reference test's own rounds."""
        paired = self.paired_reference.get(slot)
        if paired:
            return estimate([t.total for t in paired], estimator)
        return self.runs["reference"].latency(estimator)

    def cpu_shares(self, slot: str) -> dict[str, float]:
        """The median CPU share of each side's runs in ``slot``'s pairs (see
        :class:`~segbench.bench.contention.RunCpu`)."""
        sides = {"reference": self.paired_cpu.get(slot, []), "candidate": self.runs[slot].timed_cpu}
        return {k: statistics.median(c.share for c in v) for k, v in sides.items() if v}

    def per_pair(self, slot: str) -> list[tuple[float | None, ...]]:
        """Each pair's (reference wall s, CPU s, others' share, the candidate's the same)."""
        found = []
        paired, cpu = self.paired_cpu.get(slot, []), self.runs[slot].timed_cpu
        for ref, cand in zip(paired, cpu, strict=False):
            found.append(tuple(x for c in (ref, cand) for x in (c.wall_s, c.cpu_s, c.others_share)))
        return found

    def steal_shares(self, slot: str) -> list[float]:
        """The hypervisor's steal during each run of ``slot``'s pairs, where known."""
        runs = [*self.paired_cpu.get(slot, []), *self.runs[slot].timed_cpu]
        return [c.steal_share for c in runs if c.steal_share is not None]

    def others_shares(self, slot: str) -> list[float]:
        """What others took of the cores during each run of ``slot``'s pairs, where known."""
        runs = [*self.paired_cpu.get(slot, []), *self.runs[slot].timed_cpu]
        return [c.others_share for c in runs if c.others_share is not None]


class _Plan:
    """One measure() of ``slot``: warm-ups then rounds, each candidate run after a paired
    reference run, in a plain loop or through pytest-benchmark's ``pedantic``."""

    def __init__(self, rounds: Rounds, slot: str, start: int) -> None:
        timing = rounds.timing
        self.rounds, self.slot, self.start = rounds, slot, start
        self.role = rounds.label(slot)
        self.interleave = slot != "reference"
        self.warmup = timing.warmup_rounds
        self.count = timing.rounds if self.interleave else timing.reference_rounds
        # the reference test ran this case already (pytest's order): its runs are warm, and
        # its warm-up pairs would only add runs (see :meth:`pair`)
        self.reference_warm = rounds.runs["reference"].last is not None

    def phase(self, i: int) -> tuple[str, int, int]:
        """The i-th run (from 0): warm-up or round, its index and count."""
        if i < self.warmup:
            return ("warm-up", i + 1, self.warmup)
        return ("round", i - self.warmup + 1, self.count)

    def pair(self, i: int) -> None:
        """The reference run before the i-th (kept for timed rounds), then, before a timed
        round, the wait for a quiet machine where the last round was contended. A candidate
        warm-up has an untimed reference run before it only where the reference has not run
        in this case yet (a candidate test run alone): after the reference test's own runs,
        the first pair's reference run read 0.90-1.05 of the case's later ones without it (5
        cases, Zen 4), and it cost the main job a reference run per case."""
        if self.interleave:
            if i < self.warmup and self.reference_warm:
                return
            _, index, count = self.phase(i)
            self.rounds.reference_before(self.slot, index, count, warmup=i < self.warmup)
            if i >= self.warmup:
                self.rounds.before_run(self.slot, self.slot)

    def timed_from(self) -> None:
        self.rounds.runs[self.slot].warmup = self.start + self.warmup

    def loop(self) -> None:
        rounds = self.rounds
        for i in range(self.warmup + self.count):
            self.pair(i)
            rounds.run(self.slot, progress=rounds.start(self.role, *self.phase(i)))
        self.timed_from()
        if self.interleave:
            rounds.add_pairs(self.slot)

    def pedantic(self, benchmark: Any) -> None:
        rounds, slot, case_id = self.rounds, self.slot, self.rounds.case_id
        benchmark.group = case_id
        benchmark.name = (
            f"{slot}[{case_id}]"
            if candidate_of_slot(slot) is None
            else f"candidate[{case_id}-{self.role}]"
        )
        disabled = bool(getattr(benchmark, "disabled", False))
        calls = [0]
        progress: list[Progress | None] = [None]

        def setup() -> None:  # pedantic calls it before every warm-up and timed round
            calls[0] += 1
            if disabled:  # one untimed run
                progress[0] = rounds.start(self.role, "run", 1, 1)
                return
            self.pair(calls[0] - 1)
            progress[0] = rounds.start(self.role, *self.phase(calls[0] - 1))

        def target() -> Prediction:  # what pedantic times
            return rounds.run(slot, progress=progress[0])

        try:
            benchmark.pedantic(
                target,
                args=(),
                setup=setup,
                rounds=self.count,
                warmup_rounds=self.warmup,
                iterations=1,
            )
            if self.interleave and not disabled:
                self.timed_from()  # before the added pairs: they pair timed rounds
                rounds.add_pairs(slot)
        finally:
            runs = rounds.runs[slot]
            runs.warmup = len(runs.times) if disabled else self.start + self.warmup
