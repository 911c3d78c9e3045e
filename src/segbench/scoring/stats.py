"""Speed-up statistics from interleaved pairs: an interval per case, and the three-outcome
verdict of a run against a baseline run.

A case's candidate rounds are interleaved with reference runs (reference, candidate, reference,
candidate, ...); each pair gives one ratio ``reference_s / candidate_s``. The statistics work
on the logarithms of those ratios, so that a speed-up of 1.5x and its inverse are symmetric and
a ratio of speed-ups is a difference:

- a case's **speed-up** is the geometric mean of its pair ratios, and its interval the
  Student-t interval of the mean log ratio (``confidence``, two-sided);
- a run's **change** against a baseline is the geometric mean over the cases of
  speed-up / baseline speed-up. Its variance is the sum of the cases' variances of the mean,
  in this run and in the baseline. Each run's variance of one pair's log ratio is pooled over
  its cases (the cases share the machine, its allocator and its neighbours), so that a suite of
  five cases of three pairs each has ten degrees of freedom per run rather than two per case;
  the two runs are combined with Welch-Satterthwaite degrees of freedom, so a noisy baseline
  widens the interval too. A baseline saved without pair ratios (segbench < 0.19) counts as
  exact.

The **verdict** against a baseline, for a drop threshold ``drop_max`` (a fraction):

- ``regressed``: the drop is significant (the interval's upper end is below 1) and the
  estimate is past the threshold (below ``1 - drop_max``);
- ``unchanged``: the interval's lower end is at or above ``1 - drop_max``: a drop past the
  threshold is ruled out;
- ``inconclusive``: neither (too few or too noisy pairs to say);
- ``inconclusive (machine busy)``: inconclusive, with pairs left out because other processes
  took the cores while they ran (:mod:`segbench.bench.contention`): the machine, not the
  code, is why there is no answer. A verdict is never read from contended pairs.

Each verdict is a one-sided claim (below 1; above ``1 - drop_max``), so it reads one end of the
interval at :func:`decision_confidence` (``2 * confidence - 1``, 90 % for 95 %): each claim is
then made at the one-sided ``confidence``, as in the two one-sided tests (TOST) of equivalence
testing. Reading one end of the 95 % interval would hold each claim to 97.5 % and leave a 10 %
regression inconclusive on a noisy 2-core runner.

Nothing here imports torch; scipy gives the t quantiles.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


class Verdict(str, enum.Enum):
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    INCONCLUSIVE = "inconclusive"
    BUSY = "inconclusive (machine busy)"

    @property
    def inconclusive(self) -> bool:
        return self in (Verdict.INCONCLUSIVE, Verdict.BUSY)


@dataclass(frozen=True)
class PairSample:
    """The log ratios ``log(reference_s / candidate_s)`` of one case's interleaved pairs."""

    logs: tuple[float, ...]

    @classmethod
    def from_times(cls, reference_s: Sequence[float], candidate_s: Sequence[float]) -> PairSample:
        """Pair the i-th reference run with the i-th candidate round (the shorter list wins)."""
        return cls(
            tuple(
                math.log(r / c) for r, c in zip(reference_s, candidate_s, strict=False) if r > 0 < c
            )
        )

    @classmethod
    def from_ratios(cls, ratios: Sequence[float]) -> PairSample:
        """From saved pair speed-ups (``extra_info["pair_speedups"]``); non-positive or
        non-finite values are left out."""
        return cls(tuple(math.log(r) for r in ratios if math.isfinite(r) and r > 0))

    @property
    def n(self) -> int:
        return len(self.logs)

    @property
    def mean(self) -> float:
        return math.fsum(self.logs) / self.n if self.logs else math.nan

    @property
    def variance(self) -> float:
        """Sample variance of the log ratios (``nan`` below two pairs)."""
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.fsum((x - m) ** 2 for x in self.logs) / (self.n - 1)

    @property
    def speedup(self) -> float:
        """The geometric mean of the pair ratios."""
        return math.exp(self.mean) if self.logs else math.nan

    @property
    def ratios(self) -> list[float]:
        return [round(math.exp(x), 5) for x in self.logs]


@dataclass(frozen=True)
class Estimate:
    """A speed-up (or a ratio of speed-ups) with its two-sided interval."""

    value: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        """The interval's larger distance from the estimate, as a fraction of it."""
        return max(self.high / self.value - 1.0, 1.0 - self.low / self.value)

    def text(self, unit: str = "x") -> str:
        """``1.37x [1.33, 1.41]``."""
        return f"{self.value:.2f}{unit} [{self.low:.2f}, {self.high:.2f}]"

    def as_dict(self) -> dict[str, float]:
        return {
            "value": round(self.value, 5),
            "low": round(self.low, 5),
            "high": round(self.high, 5),
            "confidence": self.confidence,
        }


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided Student-t quantile (normal for infinite ``df``)."""
    from scipy import stats

    q = 0.5 + confidence / 2.0
    return float(stats.norm.ppf(q) if math.isinf(df) else stats.t.ppf(q, df))


def _interval(mean: float, parts: Sequence[tuple[float, int]], confidence: float) -> Estimate:
    """exp of ``mean`` +- t * sqrt(sum of variances); ``parts`` are (variance of the mean, its
    degrees of freedom), combined by Welch-Satterthwaite."""
    var = math.fsum(v for v, _ in parts)
    if var <= 0:
        value = math.exp(mean)
        return Estimate(value, value, value, confidence)
    df = var**2 / math.fsum(v**2 / d for v, d in parts if v > 0)
    half = t_quantile(confidence, df) * math.sqrt(var)
    return Estimate(math.exp(mean), math.exp(mean - half), math.exp(mean + half), confidence)


def speedup_interval(sample: PairSample, confidence: float = CONFIDENCE) -> Estimate | None:
    """The case's speed-up (geometric mean of the pair ratios) and its t interval; ``None``
    below two pairs."""
    if sample.n < 2:
        return None
    return _interval(sample.mean, [(sample.variance / sample.n, sample.n - 1)], confidence)


def change_interval(
    cases: Sequence[tuple[PairSample, PairSample]], confidence: float = CONFIDENCE
) -> Estimate | None:
    """Geometric mean over ``cases`` of speed-up / baseline speed-up, each case a (this run's
    sample, the baseline's sample) pair, with its interval (each run's pair variance pooled
    over its cases, see the module). A baseline sample of one pair (an old run's single
    speed-up) counts as exact; ``None`` when a case has fewer than two pairs in this run, or
    when there is no case."""
    if not cases or any(s.n < 2 for s, _ in cases):
        return None
    k = len(cases)
    mean = math.fsum(s.mean - b.mean for s, b in cases) / k
    parts = [_pooled([s for s, _ in cases], k), _pooled([b for _, b in cases if b.n >= 2], k)]
    return _interval(mean, [p for p in parts if p is not None], confidence)


def _pooled(samples: Sequence[PairSample], k: int) -> tuple[float, int] | None:
    """(variance of the mean over ``k`` cases contributed by ``samples``, degrees of freedom):
    the pooled pair variance times the sum of 1 / n, over k squared."""
    df = sum(s.n - 1 for s in samples)
    if df <= 0:
        return None
    pooled = math.fsum(s.variance * (s.n - 1) for s in samples) / df
    return pooled * math.fsum(1.0 / s.n for s in samples) / k**2, df


def decision_confidence(confidence: float) -> float:
    """The two-sided level whose ends are one-sided bounds at ``confidence``
    (``2 * confidence - 1``): the level of the interval a verdict reads (see the module)."""
    return 2.0 * confidence - 1.0


def verdict(change: Estimate | None, drop_max: float) -> Verdict:
    """``regressed``, ``unchanged`` or ``inconclusive`` (see the module); no interval (too few
    pairs) is inconclusive."""
    if change is None:
        return Verdict.INCONCLUSIVE
    floor = 1.0 - drop_max
    if change.high < 1.0 and change.value < floor:
        return Verdict.REGRESSED
    if change.low >= floor:
        return Verdict.UNCHANGED
    return Verdict.INCONCLUSIVE


def busy(found: Verdict, left_out: int, widened: bool) -> Verdict:
    """``found``, or ``inconclusive (machine busy)`` where it is inconclusive and contended
    pairs were ``left_out`` or the machine counted as busy (the interval ``widened``, see
    :func:`segbench.scoring.gates.busy_change`); a blip run again is neither."""
    machine_busy = left_out > 0 or widened
    return Verdict.BUSY if found is Verdict.INCONCLUSIVE and machine_busy else found
