"""What the machine gave a case's pairs, as the saved run holds it: the candidate's extra_info
key ``contention`` (see :mod:`segbench.bench.contention` for how it is measured)::

    "contention": {"busy_max": 0.1,            # a run was contended past this share
                   "pairs": 11,                # pairs measured, contended or not
                   "left_out": 3,              # contended pairs, left out of pair_speedups
                   "left_out_speedups": [..],  # their speed-ups, for the record
                   "cpu_share": {"reference": 0.93, "candidate": 0.98},  # median per side
                   "others_share": {"median": 0.01, "max": 0.49},  # of the cores, per run
                   "steal_share": {"max": 0.0},  # the hypervisor's part of it
                   "waited_s": 2.4,            # waited for a quiet machine before pairs
                   "rerun": 2,                 # contended runs run again (not pairs)
                   "load_1m": 1.32,            # the load average as the case ended
                   "per_pair": [[ref wall s, ref CPU s, ref others' share,
                                 cand wall s, cand CPU s, cand others' share], ..]}

A run saved before segbench measured it has no such key: :meth:`Contention.read` gives
``None`` and nothing is left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KEY = "contention"


@dataclass(frozen=True)
class Contention:
    """One case's contention figures (see the module)."""

    busy_max: float
    pairs: int
    left_out: int
    left_out_speedups: tuple[float, ...] = ()
    reference_share: float | None = None
    candidate_share: float | None = None
    others_median: float | None = None
    others_max: float | None = None
    waited_s: float = 0.0
    load_1m: float | None = None
    # every pair, in order: (reference wall s, CPU s, others' share, candidate's the same)
    per_pair: tuple[tuple[float | None, ...], ...] = ()
    rerun: int = 0  # contended runs of added pairs dropped and run again
    steal_max: float | None = None  # the largest steal share of a run

    @classmethod
    def measured(
        cls,
        busy_max: float,
        pairs: int,
        left_out_speedups: Sequence[float],
        shares: Mapping[str, float],
        others: Sequence[float],
        waited_s: float,
        load_1m: float | None,
        per_pair: Sequence[Sequence[float | None]] = (),
        rerun: int = 0,
        steal: Sequence[float] = (),
    ) -> Contention:
        """From a case's measured figures: ``shares`` by side, ``others`` one per run."""
        return cls(
            busy_max,
            pairs,
            len(left_out_speedups),
            tuple(round(r, 5) for r in left_out_speedups),
            shares.get("reference"),
            shares.get("candidate"),
            statistics.median(others) if others else None,
            max(others) if others else None,
            round(waited_s, 3),
            load_1m,
            tuple(tuple(None if x is None else round(x, 4) for x in p) for p in per_pair),
            rerun,
            max(steal) if steal else None,
        )

    def to_info(self) -> dict[str, Any]:
        """The extra_info entry (one key, ``contention``)."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            KEY: {
                "busy_max": self.busy_max,
                "pairs": self.pairs,
                "left_out": self.left_out,
                "left_out_speedups": list(self.left_out_speedups),
                "cpu_share": {
                    "reference": r(self.reference_share),
                    "candidate": r(self.candidate_share),
                },
                "others_share": {"median": r(self.others_median), "max": r(self.others_max)},
                "steal_share": {"max": r(self.steal_max)},
                "waited_s": self.waited_s,
                "load_1m": self.load_1m,
                "per_pair": [list(p) for p in self.per_pair],
                "rerun": self.rerun,
            }
        }

    @classmethod
    def read(cls, info: Mapping[str, Any]) -> Contention | None:
        """From a candidate's extra_info (already validated), or ``None`` where absent."""
        data = info.get(KEY)
        if not isinstance(data, Mapping):
            return None
        shares = data.get("cpu_share") or {}
        others = data.get("others_share") or {}
        return cls(
            float(data.get("busy_max", 0.0)),
            int(data.get("pairs", 0)),
            int(data.get("left_out", 0)),
            tuple(float(x) for x in data.get("left_out_speedups") or ()),
            shares.get("reference"),
            shares.get("candidate"),
            others.get("median"),
            others.get("max"),
            float(data.get("waited_s") or 0.0),
            data.get("load_1m"),
            tuple(tuple(p) for p in data.get("per_pair") or ()),
            int(data.get("rerun") or 0),
            (data.get("steal_share") or {}).get("max"),
        )

    def shares_text(self) -> str:
        """``93/98%``: the reference's and the candidate's median CPU share; ``-`` unknown."""

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{100 * x:.0f}"

        if self.reference_share is None and self.candidate_share is None:
            return "-"
        return f"{pct(self.reference_share)}/{pct(self.candidate_share)}%"

    def busy_text(self) -> str:
        """``3 of 11 pairs left out (machine busy)``, or nothing."""
        if not self.left_out:
            return ""
        return f"{self.left_out} of {self.pairs} pairs left out (machine busy)"
