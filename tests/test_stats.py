"""The speed-up statistics on synthetic pair timings: intervals, and each verdict against a
baseline (regressed, unchanged, inconclusive), per case and for the suite."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from segbench.scoring.gates import (
    BaselineSpeedup,
    change_against,
    check_speedup,
    check_suite_speedup,
    judge,
)
from segbench.scoring.stats import (
    Estimate,
    PairSample,
    Verdict,
    change_interval,
    decision_confidence,
    speedup_interval,
    verdict,
)
from segbench.settings.config import Gates, parse_config


def pairs(speedup: float, n: int, noise: float, seed: int, slowdown: float = 0.0) -> PairSample:
    """``n`` interleaved pairs of a candidate ``speedup`` times faster than the reference,
    each run with lognormal noise of ``noise`` (sd of log time), the candidate made
    ``slowdown`` slower as ``--segbench-inject=slowdown`` does."""
    rng = np.random.default_rng(seed)
    reference = 2.0 * np.exp(rng.normal(0.0, noise, n))
    candidate = 2.0 / speedup * (1.0 + slowdown) * np.exp(rng.normal(0.0, noise, n))
    return PairSample.from_times(list(reference), list(candidate))


def test_interval_is_the_t_interval_of_the_log_ratios() -> None:
    sample = PairSample.from_ratios([1.40, 1.50, 1.45, 1.35])
    found = speedup_interval(sample)
    assert found is not None
    logs = np.log([1.40, 1.50, 1.45, 1.35])
    half = 3.182446 * logs.std(ddof=1) / 2.0  # t(0.975, 3) * sd / sqrt(4)
    assert found.value == pytest.approx(math.exp(logs.mean()))
    assert found.low == pytest.approx(math.exp(logs.mean() - half), rel=1e-5)
    assert found.high == pytest.approx(math.exp(logs.mean() + half), rel=1e-5)
    assert found.text() == "1.42x [1.32, 1.53]"
    assert speedup_interval(PairSample.from_ratios([1.4])) is None  # one pair: no interval


def test_pairs_skip_unusable_times() -> None:
    sample = PairSample.from_times([2.0, 0.0, 3.0, 1.0], [1.0, 1.0, 2.0])
    assert sample.ratios == [2.0, 1.5]  # a zero time is left out; the shorter list wins
    assert PairSample.from_ratios([1.2, math.inf, -1.0, math.nan]).n == 1


def test_interval_narrows_with_more_pairs() -> None:
    few = speedup_interval(pairs(1.4, 4, 0.08, seed=1))
    many = speedup_interval(pairs(1.4, 40, 0.08, seed=1))
    assert few is not None and many is not None
    assert many.half_width < few.half_width / 2
    assert many.low < 1.4 < many.high


def test_the_three_verdicts() -> None:
    # regressed: significant (interval below 1) and past the threshold (estimate < 0.95)
    assert verdict(Estimate(0.90, 0.86, 0.94), 0.05) is Verdict.REGRESSED
    # significant but the estimate within the threshold, and a drop past it not ruled out
    assert verdict(Estimate(0.97, 0.94, 0.99), 0.05) is Verdict.INCONCLUSIVE
    # past the threshold but not significant: too noisy to say
    assert verdict(Estimate(0.92, 0.80, 1.06), 0.05) is Verdict.INCONCLUSIVE
    # a drop past the threshold ruled out
    assert verdict(Estimate(0.99, 0.96, 1.02), 0.05) is Verdict.UNCHANGED
    assert verdict(Estimate(1.20, 1.10, 1.30), 0.05) is Verdict.UNCHANGED  # faster
    assert verdict(None, 0.05) is Verdict.INCONCLUSIVE
    # no interval (runs saved without pairs): the estimate alone against the threshold
    assert judge(None, 0.90, 0.05) is Verdict.REGRESSED
    assert judge(None, 0.97, 0.05) is Verdict.UNCHANGED
    assert judge(Estimate(0.92, 0.80, 1.06), 0.92, 0.05) is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("slowdown", "noise", "n", "expected"),
    [
        (0.0, 0.01, 8, Verdict.UNCHANGED),
        (0.10, 0.01, 8, Verdict.REGRESSED),
        (0.30, 0.05, 8, Verdict.REGRESSED),
        (0.10, 0.20, 3, Verdict.INCONCLUSIVE),
    ],
)
def test_verdicts_on_synthetic_timings(
    slowdown: float, noise: float, n: int, expected: Verdict
) -> None:
    cases = [
        (pairs(1.4, n, noise, seed=10 + i, slowdown=slowdown), pairs(1.4, n, noise, seed=50 + i))
        for i in range(5)
    ]
    change = change_interval(cases)
    assert verdict(change, 0.05) is expected, change


def test_the_suite_catches_a_tenth_that_no_case_shows_alone() -> None:
    """Pairs too noisy for one case's verdict at 10 %, pooled over eight cases, are not."""
    cases = [
        (pairs(1.4, 6, 0.06, seed=i, slowdown=0.1), pairs(1.4, 6, 0.06, seed=100 + i))
        for i in range(8)
    ]
    alone = [verdict(change_interval([c]), 0.05) for c in cases]
    assert Verdict.INCONCLUSIVE in alone
    assert verdict(change_interval(cases), 0.05) is Verdict.REGRESSED


def test_the_suite_pools_each_runs_pair_variance_over_its_cases() -> None:
    """Two cases, log ratios known: the suite's variance is the pooled pair variance of each
    run times the sum of 1 / n over k squared, with Welch-Satterthwaite over the two runs."""
    a, b = PairSample((0.0, 0.2)), PairSample((0.1, 0.1, 0.4))  # variances 0.02, 0.03
    base = PairSample((0.0, 0.1, 0.2))  # variance 0.01, per case
    change = change_interval([(a, base), (b, base)], 0.90)
    assert change is not None
    this = (0.02 * 1 + 0.03 * 2) / 3 * (1 / 2 + 1 / 3) / 4  # pooled over 3 df
    other = 0.01 * (1 / 3 + 1 / 3) / 4  # pooled over 4 df
    df = (this + other) ** 2 / (this**2 / 3 + other**2 / 4)
    half = stats.t.ppf(0.95, df) * math.sqrt(this + other)
    mean = ((0.1 - 0.1) + (0.2 - 0.1)) / 2
    assert change.value == pytest.approx(math.exp(mean))
    assert change.low == pytest.approx(math.exp(mean - half))
    assert change.high == pytest.approx(math.exp(mean + half))
    assert change.confidence == 0.90


def test_a_verdict_reads_one_sided_bounds() -> None:
    """A 10 % drop whose 95 % interval reaches 1 but whose 90 % interval does not: regressed
    at a one-sided 95 %, which is what the gates read (decision_confidence)."""
    cases = [
        (pairs(1.4, 3, 0.05, seed=i, slowdown=0.1), pairs(1.4, 3, 0.05, seed=200 + i))
        for i in range(5)
    ]
    assert decision_confidence(0.95) == pytest.approx(0.90)
    two_sided = change_interval(cases, 0.95)
    one_sided = change_against(cases, Gates())
    assert two_sided is not None and one_sided is not None
    assert one_sided.confidence == pytest.approx(0.90)
    assert one_sided.high < two_sided.high and one_sided.value == two_sided.value
    assert verdict(two_sided, 0.05) is Verdict.INCONCLUSIVE
    assert verdict(one_sided, 0.05) is Verdict.REGRESSED


def test_a_noisy_baseline_widens_the_change() -> None:
    run = pairs(1.4, 6, 0.02, seed=3)
    exact = change_interval([(run, PairSample.from_ratios([1.4]))])  # an old single speed-up
    noisy = change_interval([(run, pairs(1.4, 6, 0.10, seed=4))])
    assert exact is not None and noisy is not None
    assert noisy.half_width > 2 * exact.half_width
    assert change_interval([(PairSample.from_ratios([1.4]), run)]) is None  # one pair here


def test_case_gate_verdicts_and_messages() -> None:
    gates = Gates(speedup_drop_max=0.2, speedup_min=0.0)  # the verdicts alone
    base = BaselineSpeedup(1.40, "base.json", tuple(pairs(1.4, 8, 0.01, seed=1).ratios))
    same = check_speedup("c", pairs(1.4, 8, 0.01, seed=2), (2.0, 1.43), gates, "min", base)
    assert same.gate.passed and same.verdict is Verdict.UNCHANGED
    assert "baseline 1.40x (base.json)" in same.gate.message and "unchanged" in same.gate.message
    slow = check_speedup(
        "c", pairs(1.4, 8, 0.01, seed=2, slowdown=0.3), (2.0, 1.9), gates, "min", base
    )
    assert not slow.gate.passed and slow.verdict is Verdict.REGRESSED
    for part in (
        "regressed",
        "speedup_drop_max 20%",
        "8 interleaved pairs",
        "95% interval",  # the case's speed-up
        "90% interval",  # the change the verdict reads
    ):
        assert part in slow.gate.message, part
    assert slow.gate.message.endswith("save a new baseline run.")
    noisy = check_speedup(
        "c", pairs(1.4, 3, 0.3, seed=6, slowdown=0.2), (2.0, 1.5), gates, "min", base
    )
    assert noisy.verdict is Verdict.INCONCLUSIVE and noisy.gate.passed
    strict = check_speedup(
        "c",
        pairs(1.4, 3, 0.3, seed=6, slowdown=0.2),
        (2.0, 1.5),
        Gates(speedup_drop_max=0.2, speedup_min=0.0, inconclusive_fails=True),
        "min",
        base,
    )
    assert not strict.gate.passed and "inconclusive_fails" in strict.gate.message


def test_suite_gate_verdicts() -> None:
    gates = Gates(suite_speedup_drop_max=0.05)

    def suite(slowdown: float, noise: float, n: int) -> dict[str, tuple[PairSample, PairSample]]:
        return {
            f"case{i}": (
                pairs(1.4, n, noise, seed=i, slowdown=slowdown),
                pairs(1.4, n, noise, seed=20 + i),
            )
            for i in range(5)
        }

    ok = check_suite_speedup(suite(0.0, 0.02, 6), gates)
    assert ok is not None and ok.passed and ok.message.startswith("suite: unchanged")
    bad = check_suite_speedup(suite(0.1, 0.02, 6), gates)
    assert bad is not None and not bad.passed and bad.message.startswith("suite: regressed")
    assert "over 5 cases" in bad.message and bad.message.endswith("save a new baseline run.")
    unsure = check_suite_speedup(suite(0.1, 0.3, 3), gates)
    assert unsure is not None and unsure.passed and "inconclusive" in unsure.message
    fails = check_suite_speedup(
        suite(0.1, 0.3, 3), Gates(suite_speedup_drop_max=0.05, inconclusive_fails=True)
    )
    assert fails is not None and not fails.passed and "too noisy" in fails.message
    assert check_suite_speedup({}, gates) is None


def test_statistics_keys_are_validated() -> None:
    cfg = parse_config(
        {
            "gates": {"inconclusive_fails": True, "confidence": 0.9},
            "timing": {"max_rounds": 20, "budget_s": 30, "precision": 0.05},
        }
    )
    assert cfg.gates.inconclusive_fails and cfg.gates.confidence == 0.9
    assert cfg.timing.max_rounds == 20 and cfg.timing.budget_s == 30
    for data, key in (
        ({"gates": {"inconclusive_fails": 1}}, "gates.inconclusive_fails"),
        ({"gates": {"confidence": 1.0}}, "gates.confidence"),
        ({"timing": {"precision": -0.1}}, "timing.precision"),
        ({"timing": {"rounds": 5, "max_rounds": 4}}, "timing.max_rounds"),
    ):
        with pytest.raises(Exception, match=key.replace(".", r"\.")):
            parse_config(data, "bench.json")
