"""What a regression test does with one case: measure a role, then check the gates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from segbench.inputs.cases import Case
from segbench.plugin.session import SegbenchSession
from segbench.settings.kinds import ROLES

if TYPE_CHECKING:
    from segbench.bench.paired import Evaluation, PairedRun


class CaseCheck:
    """One case of the session: measure a role, then check the gates."""

    def __init__(self, session: SegbenchSession, case: Case) -> None:
        self.session = session
        self.case = case

    @property
    def pair(self) -> PairedRun:
        return self.session.pair(self.case)

    def measure(self, role: str, benchmark: Any) -> None:
        """Benchmark ``role`` end to end (pytest-benchmark ``pedantic``) and record extra_info."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        pair = self.pair
        pair.measure(role, benchmark)
        benchmark.extra_info.update(pair.extra_info(role))

    def check_gates(self, benchmark: Any) -> Evaluation:
        """Evaluate the Dice and speed-up gates; fail the test with every failing gate's message."""
        __tracebackhide__ = True
        timed = not bool(getattr(benchmark, "disabled", False))
        pair = self.pair
        evaluation = pair.evaluate(timed=timed)
        benchmark.extra_info.update(pair.extra_info("candidate"))
        benchmark.extra_info.update(
            pair.gate_info(evaluation, self.session.options.injection.describe())
        )
        self.session.record(
            self.case.id,
            {"reference": pair.extra_info("reference"), "candidate": benchmark.extra_info},
        )
        failed = [g.message for g in evaluation.gates if not g.passed]
        if any(g.name == "dice" and not g.passed for g in evaluation.gates):
            failed.append(self._disagreement_png())  # after the verdict, best-effort
        self.session.release(self.case)
        if failed:
            pytest.fail("\n".join(line for line in failed if line), pytrace=False)
        return evaluation

    def _disagreement_png(self) -> str:
        """Save the slice where the two masks disagree most; return a line for the message. The
        PNG is best-effort: when it cannot be drawn (no matplotlib, an unwritable report folder)
        the line says why, and the gate's message stays the failure."""
        pair = self.pair
        ref, cand = pair.runs["reference"].last, pair.runs["candidate"].last
        if ref is None or cand is None:
            return ""
        from segbench.results.plots import PlotError, plot_disagreement

        try:
            path = self.session.options.report_dir / f"{self.case.id}-disagreement.png"
            index = plot_disagreement(
                pair.volume.array,
                ref.labels,
                cand.labels,
                path,
                f"{self.case.id}: reference vs candidate",
                spacing=pair.volume.spacing,
                class_names=pair.runtime.card.class_names,
            )
        except (PlotError, OSError) as exc:
            return f"(no PNG of the worst slice: {exc})"
        return f"Worst slice (z={index}, RAS): {path}"
