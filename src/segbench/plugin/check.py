"""What a regression test does with one case: measure a role, then check the gates."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pytest

from segbench.cachefiles import fit_name
from segbench.errors import SegbenchError
from segbench.inputs.cases import Case
from segbench.plugin.session import SegbenchSession
from segbench.results.record import record_key
from segbench.settings.kinds import ROLES, candidate_slot

if TYPE_CHECKING:
    from segbench.bench.paired import Evaluation, PairedRun


class CaseCheck:
    """One case of the session (and, for a candidate's test, which candidate: ``None`` for the
    one unnamed candidate): measure a role, then check the gates."""

    def __init__(self, session: SegbenchSession, case: Case, candidate: str | None = None) -> None:
        self.session = session
        self.case = case
        self.candidate = candidate

    @property
    def slot(self) -> str:
        """The candidate's key among the paired run's backends and runs."""
        return candidate_slot(self.candidate)

    @property
    def pair(self) -> PairedRun:
        return self.session.pair(self.case)

    def measure(self, role: str, benchmark: Any) -> None:
        """Benchmark ``role`` end to end (pytest-benchmark ``pedantic``) and record extra_info."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        pair = self.pair
        slot = self.slot if role == "candidate" else role
        try:
            pair.measure(slot, benchmark)
        except SegbenchError:  # e.g. a failed deployment: the case's volume is not kept past it
            if role == "candidate" and (not pair.candidates or slot == pair.candidates[-1]):
                self.session.release(self.case)
            raise
        benchmark.extra_info.update(pair.extra_info(slot))

    def check_gates(self, benchmark: Any) -> Evaluation:
        """Evaluate the Dice and speed-up gates; fail the test with every failing gate's message."""
        __tracebackhide__ = True
        timed = not bool(getattr(benchmark, "disabled", False))
        pair = self.pair
        slot = self.slot
        evaluation = pair.evaluate(timed=timed, slot=slot)
        benchmark.extra_info.update(pair.extra_info(slot))
        benchmark.extra_info.update(
            pair.gate_info(evaluation, self.session.options.injection.describe())
        )
        self.session.record(
            record_key(self.case.id, self.candidate),
            {"reference": pair.extra_info("reference"), "candidate": benchmark.extra_info},
        )
        failed = [g.message for g in evaluation.gates if not g.passed]
        if self.candidate is not None:
            failed = [f"{self.candidate}: {line}" for line in failed]
        if any(g.name == "dice" and not g.passed for g in evaluation.gates):
            failed.append(self._disagreement_png())  # after the verdict, best-effort
        if not pair.candidates or slot == pair.candidates[-1]:  # the case's last candidate
            self.session.release(self.case)
        if failed:
            pytest.fail("\n".join(line for line in failed if line), pytrace=False)
        return evaluation

    def _disagreement_png(self) -> str:
        """Save the slice where the two masks disagree most; return a line for the message. The
        PNG is best-effort: when it cannot be drawn (no matplotlib, an unwritable report folder)
        the line says why, and the gate's message stays the failure."""
        pair = self.pair
        ref, cand = pair.runs["reference"].last, pair.runs[self.slot].last
        if ref is None or cand is None:
            return ""
        from segbench.results.plots import PlotError, plot_disagreement

        try:
            suffix = "" if self.candidate is None else f"-{self.candidate}"
            stem = PurePosixPath(f"{self.case.id}{suffix}")  # a long case id: a short file name
            path = self.session.options.report_dir.joinpath(
                *stem.parent.parts, fit_name(stem.name, "-disagreement.png")
            )
            index = plot_disagreement(
                pair.volume.array,
                ref.labels,
                cand.labels,
                path,
                f"{self.case.id}: reference vs {self.candidate or 'candidate'}",
                spacing=pair.volume.spacing,
                class_names=pair.runtime.card.class_names,
            )
        except (PlotError, OSError) as exc:
            return f"(no PNG of the worst slice: {exc})"
        return f"Worst slice (z={index}, RAS): {path}"
