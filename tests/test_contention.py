"""Busy-machine verdicts: what each run got of the cores, contended pairs detected and left out
(re-measured within the budget), and ``inconclusive (machine busy)`` instead of a verdict read
from contended pairs. Every figure here is scripted: no sleep, no real clock."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segbench.bench.contention import (
    KernelThreads,
    RunCpu,
    Snapshot,
    Waited,
    machine_seconds,
    run_cpu,
    wait_quiet,
)
from segbench.bench.timing import Rounds
from segbench.pipeline.predict import Prediction, StageTimes
from segbench.results.contention import Contention
from segbench.scoring.gates import BaselineSpeedup, check_speedup, check_suite_speedup
from segbench.scoring.stats import PairSample, Verdict
from segbench.settings.config import Gates, Timing, parse_config

STAT = """cpu  300 0 100 800 0 0 0 40 0 0
cpu0 100 0 50 400 0 0 0 20 0 0
cpu1 200 0 50 400 0 0 0 20 0 0
intr 1 2 3
"""


def test_proc_stat_is_read_for_the_cores_of_this_process() -> None:
    assert machine_seconds(STAT, [0, 1], 0.01) == pytest.approx((4.0, 0.4, 12.4))
    assert machine_seconds(STAT, [1], 0.01) == pytest.approx((2.5, 0.2, 6.7))
    assert machine_seconds(STAT, [2], 0.01) is None  # a core without a line
    assert machine_seconds("cpu0 1 2 x\n", [0], 0.01) is None
    assert machine_seconds("cpu0 1 2 3\n", [0], 0.01) is None  # no steal column


def test_others_share_is_the_machine_s_busy_time_less_this_process_s() -> None:
    before = Snapshot(wall=10.0, cpu=5.0, busy=100.0, steal=1.0, elapsed=400.0)
    # 1 s of wall on 2 cores: this process used 1.0 s of CPU, the machine 2.0 s busy + 0.2
    # steal: others took 1.2 of the 2 core-seconds
    after = Snapshot(wall=11.0, cpu=6.0, busy=102.0, steal=1.2, elapsed=402.0)
    found = run_cpu(before, after, threads=2)
    assert found.others_share == pytest.approx(0.6)
    assert found.share == pytest.approx(0.5)
    assert found.contended(0.1) and not found.contended(0.7)
    quiet = Snapshot(wall=11.0, cpu=7.0, busy=102.0, steal=1.0, elapsed=402.0)
    assert run_cpu(before, quiet, 2).others_share == 0.0
    unread = run_cpu(Snapshot(10.0, 5.0), Snapshot(11.0, 6.0), 2)
    assert unread.others_share is None and not unread.contended(0.0)  # not judged


def test_the_kernel_s_own_threads_are_not_others() -> None:
    before = Snapshot(wall=10.0, cpu=5.0, busy=100.0, steal=0.0, elapsed=400.0, kernel=3.0)
    # 1 s on 2 cores: this process 1.9 s, khugepaged and kworkers 0.05 s, nobody else
    after = Snapshot(wall=11.0, cpu=6.9, busy=101.95, steal=0.0, elapsed=402.0, kernel=3.05)
    assert run_cpu(before, after, 2).others_share == pytest.approx(0.0)
    # the same counters with the kernel threads unread: their time counts as others'
    unread = (replace(before, kernel=None), replace(after, kernel=None))
    assert run_cpu(*unread, 2).others_share == pytest.approx(0.025)
    assert run_cpu(*unread, 2).contended(0.015) and not run_cpu(before, after, 2).contended(0.015)


def _proc(root: Path, pid: int, flags: int, utime: int, stime: int, name: str = "k") -> None:
    (root / str(pid)).mkdir(exist_ok=True)
    fields = ["S", "2", "0", "0", "0", "-1", str(flags), "0", "0", "0", "0", str(utime), str(stime)]
    (root / str(pid) / "stat").write_text(f"{pid} ({name} x) " + " ".join([*fields, "0"] * 1))


def test_kernel_threads_are_summed_from_proc_and_user_processes_are_not(tmp_path: Path) -> None:
    _proc(tmp_path, 40, 0x00208040, 50, 30, "khugepaged")  # PF_KTHREAD set
    _proc(tmp_path, 77, 0x00400100, 900, 100, "python")  # a user process
    (tmp_path / "self").mkdir()
    threads = KernelThreads(tmp_path)
    assert threads.seconds(0.01) == pytest.approx(0.8)
    _proc(tmp_path, 40, 0x00208040, 60, 30, "khugepaged")
    _proc(tmp_path, 41, 0x00208040, 5, 0, "kworker/0:1")  # a new kernel thread
    (tmp_path / "77" / "stat").unlink()  # gone: classified once, not read again
    assert threads.seconds(0.01) == pytest.approx(0.95)
    (tmp_path / "41" / "stat").write_text("41 (kworker")  # malformed: skipped
    assert threads.seconds(0.01) == pytest.approx(0.9)


def test_a_few_ticks_in_a_short_run_are_noise_not_a_neighbour() -> None:
    # 0.75 s on 2 cores = 150 ticks: 3 ticks (one per core's counter and this process's)
    # of others is within the counters' resolution, 5 are not
    before = Snapshot(wall=0.0, cpu=0.0, busy=0.0, steal=0.0, elapsed=0.0)
    noise = Snapshot(wall=0.75, cpu=1.47, busy=1.50, steal=0.0, elapsed=1.5)
    busy = Snapshot(wall=0.75, cpu=1.45, busy=1.50, steal=0.0, elapsed=1.5)
    assert run_cpu(before, noise, 2).others_share == pytest.approx(0.02)
    assert not run_cpu(before, noise, 2).contended(0.015)
    assert run_cpu(before, busy, 2).contended(0.015)


class Machine:
    """A scripted machine of two cores: ``busy`` is a neighbour's share of them while it is
    set; the clocks advance only as runs say."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.others = 0.0
        self.neighbour = 0.0

    def sample(self) -> Snapshot:
        return Snapshot(self.wall, self.cpu, self.cpu + self.others, 0.0, 2 * self.wall)

    def advance(self, seconds: float, cpu: float) -> None:
        self.wall += seconds
        self.cpu += cpu
        self.others += 2 * seconds * self.neighbour

    def sleep(self, seconds: float) -> None:
        self.advance(seconds, 0.0)


def _prediction(seconds: float) -> Prediction:
    labels = np.zeros((2, 2, 2), np.uint8)
    return Prediction(None, labels, StageTimes(0.0, seconds, 0.0), "cpu", (2, 2, 2))  # type: ignore[arg-type]


def _rounds(
    machine: Machine,
    script: dict[str, Sequence[tuple[float, float]]],
    timing: Timing,
    baseline: BaselineSpeedup | None = None,
) -> Rounds:
    """A case whose runs take scripted (seconds, neighbour share) each, per role, in order."""
    calls = {"reference": 0, "candidate": 0}

    def segment(slot: str, progress: Any) -> Prediction:
        seconds, neighbour = script[slot][calls[slot] % len(script[slot])]
        calls[slot] += 1
        machine.neighbour = neighbour
        machine.advance(seconds, 2 * seconds * (1 - neighbour))
        machine.neighbour = 0.0
        return _prediction(seconds)

    rounds = Rounds(
        "ct.nii.gz",
        {"reference": 2, "candidate": 2},
        segment,
        lambda slot: None,
        timing,
        Gates(),
        lambda slot: baseline,
    )
    rounds.sample, rounds.sleep = machine.sample, machine.sleep
    return rounds


TIMING = Timing(rounds=4, warmup_rounds=1, max_rounds=4, budget_s=100.0, precision=0.0)


def test_a_contended_pair_is_left_out_and_measured_again() -> None:
    """Candidate round 2 shares the cores with a neighbour: that pair is contended, left out
    of the speed-up's pairs and replaced by one more pair."""
    machine = Machine()
    quiet, busy = (1.0, 0.0), (3.0, 0.5)  # the busy round is slow: it would drag the ratio
    candidate = [quiet, quiet, busy, (1.01, 0.0), (0.99, 0.0), (1.02, 0.0)]
    rounds = _rounds(machine, {"reference": [(2.0, 0.0)], "candidate": candidate}, TIMING)
    rounds.measure("candidate", None)
    flags = [contended for _, _, contended in rounds.pairs("candidate")]
    assert flags == [False, True, False, False, False]
    clean = rounds.pair_sample("candidate").ratios
    assert len(clean) == 4 and min(clean) > 1.9  # the slow pair is not in it
    assert rounds.left_out("candidate").ratios == [pytest.approx(2 / 3, abs=1e-4)]
    saved = Contention.measured(
        0.1, 5, rounds.left_out("candidate").ratios, rounds.cpu_shares("candidate"),
        rounds.others_shares("candidate"), rounds.waited_s["candidate"], None,
    ).to_info()["contention"]  # fmt: skip
    assert saved["pairs"] == 5 and saved["left_out"] == 1
    assert saved["others_share"]["max"] == pytest.approx(0.5)
    assert saved["cpu_share"]["reference"] == pytest.approx(1.0)
    assert len(rounds.per_pair("candidate")) == 5


def test_without_contention_nothing_is_left_out() -> None:
    machine = Machine()
    script = {"reference": [(2.0, 0.0)], "candidate": [(1.0, 0.0)]}
    rounds = _rounds(machine, script, TIMING)
    rounds.measure("candidate", None)
    assert len(rounds.pairs("candidate")) == 4 and rounds.left_out("candidate").n == 0
    assert rounds.waited_s["candidate"] == 0.0
    assert machine.wall == pytest.approx(5 * 3.0)  # a warm-up pair, 4 pairs: no wait


def test_detection_off_keeps_the_contended_pair() -> None:
    """``busy_max`` 1 judges nothing contended: the slow pair stays in (as before)."""
    machine = Machine()
    quiet, busy = (1.0, 0.0), (3.0, 1.0)
    script = {"reference": [(2.0, 0.0)], "candidate": [quiet, quiet, busy, quiet]}
    rounds = _rounds(machine, script, Timing(**{**vars(TIMING), "busy_max": 1.0}))
    rounds.measure("candidate", None)
    assert rounds.pair_sample("candidate").n == 4 and rounds.left_out("candidate").n == 0


def test_pairs_on_a_busy_machine_are_bounded_by_twice_max_rounds() -> None:
    machine = Machine()
    script = {"reference": [(1.0, 1.0)], "candidate": [(1.0, 1.0)]}
    timing = Timing(**{**vars(TIMING), "quiet_wait_s": 0.0})
    rounds = _rounds(machine, script, timing)
    rounds.measure("candidate", None)
    assert len(rounds.pairs("candidate")) == 8 and rounds.pair_sample("candidate").n == 0


def test_a_pair_waits_for_the_machine_to_go_quiet() -> None:
    machine = Machine()
    machine.neighbour = 1.0
    states = iter([1.0, 1.0, 0.0])  # busy for two windows, then quiet

    def sleep(seconds: float) -> None:
        machine.neighbour = next(states)
        machine.sleep(seconds)

    found = wait_quiet(0.1, 5.0, machine.sample, sleep, window_s=0.1)
    assert found == Waited(pytest.approx(0.3), True, True)
    machine.neighbour = 0.0
    states = iter([0.0, 0.0, 1.0, 1.0, 0.0])  # quiet (an idle phase's end), busy, quiet again
    found = wait_quiet(0.1, 5.0, machine.sample, sleep, window_s=0.1)
    assert found == Waited(pytest.approx(0.5), True, True)  # the start of the next quiet phase
    machine.neighbour = 0.0
    found = wait_quiet(0.1, 0.5, machine.sample, machine.sleep)
    assert 0.5 <= found.seconds < 0.61 and found.quiet  # quiet throughout: the neighbour is gone
    assert not found.saw_busy
    machine.neighbour = 1.0
    found = wait_quiet(0.1, 0.5, machine.sample, machine.sleep)
    assert 0.5 <= found.seconds < 0.61 and not found.quiet  # bounded


def test_a_wait_on_a_quiet_machine_settles_early() -> None:
    """A contended run on a machine that stays quiet (a blip): with ``settle_s`` the wait
    ends after that much quiet, not at its limit; a neighbour seen first is still waited out."""
    machine = Machine()
    found = wait_quiet(0.1, 8.0, machine.sample, machine.sleep, settle_s=1.0)
    assert found == Waited(pytest.approx(1.0), True, False)
    states = iter([0.0] * 5 + [1.0] * 20 + [0.0])

    def sleep(seconds: float) -> None:
        machine.neighbour = next(states)
        machine.sleep(seconds)

    found = wait_quiet(0.1, 8.0, machine.sample, sleep, settle_s=1.0)
    assert found == Waited(pytest.approx(2.6), True, True)


def test_once_a_neighbour_comes_and_goes_every_paired_run_waits_for_a_quiet_phase() -> None:
    """A neighbour busy for 1 s, idle for 3 s; runs of 1.2 s (candidate) and 2 s (reference).
    After the first contended run, the case waits for a quiet phase to start before every
    run: no later pair is contended, and none is spent on a run that meets the neighbour."""
    machine = Machine()
    period, on = 4.0, 1.0

    def share(start: float, seconds: float) -> float:
        """The neighbour's share over [start, start + seconds): busy for ``on`` of each
        period, sampled finely."""
        steps = 200
        busy = sum((start + seconds * (i + 0.5) / steps) % period < on for i in range(steps))
        return 0.5 * busy / steps

    def segment(slot: str, progress: Any) -> Prediction:
        seconds = 2.0 if slot == "reference" else 1.2
        got = share(machine.wall, seconds)
        machine.advance(seconds, 2 * seconds * (1 - got))
        machine.others += 2 * seconds * got - 2 * seconds * machine.neighbour
        return _prediction(seconds)

    def sleep(seconds: float) -> None:
        machine.neighbour = 0.5 if machine.wall % period < on else 0.0
        machine.sleep(seconds)

    timing = Timing(rounds=6, warmup_rounds=1, max_rounds=6, budget_s=100.0, precision=0.0)
    rounds = _rounds(machine, {}, timing)
    rounds.segment, rounds.sleep = segment, sleep
    machine.wall = 0.5  # the first runs start in a busy phase
    rounds.measure("candidate", None)
    flags = [contended for _, _, contended in rounds.pairs("candidate")]
    # the warm-up meets the neighbour; from then on every run waits for an idle phase
    assert rounds.cycling and len(flags) == 6 and not any(flags)
    assert rounds.rerun["candidate"] == 0 and rounds.waited_s["candidate"] > 0


def test_a_machine_busy_throughout_one_wait_is_not_waited_for_again() -> None:
    """A neighbour that never rests: the first contended run costs one wait of 8 s, the
    rest of the case none (the wait would not find a quiet machine)."""
    machine = Machine()
    script = {"reference": [(1.0, 0.5)], "candidate": [(1.0, 0.5)]}

    def sleep(seconds: float) -> None:
        machine.neighbour = 0.5
        machine.sleep(seconds)

    rounds = _rounds(machine, script, TIMING)
    rounds.sleep = sleep
    rounds.measure("candidate", None)
    assert rounds.waited_s["candidate"] == TIMING.quiet_wait_s  # spent: no more waits
    assert machine.wall == pytest.approx(9 * 2.0 + 8.0, abs=0.2)  # 1 + 8 pairs, one wait


BASELINE = BaselineSpeedup(2.0, "base.json", (2.0, 2.02, 1.98, 2.0, 2.01))


GATES = Gates(speedup_drop_max=0.05)


def _check(pairs: Sequence[float], left_out: int, gates: Gates = GATES) -> Any:
    return check_speedup(
        "ct.nii.gz", PairSample.from_ratios(pairs), (2.0, 1.0), gates, "min", BASELINE, left_out
    )


def test_a_regression_hidden_by_contended_pairs_is_caught_once_they_are_left_out() -> None:
    """The candidate got 10 % slower (1.8x against the baseline's 2.0x); two pairs measured
    while a neighbour slowed the reference read 2.6x. Kept in, the verdict is not regressed;
    left out, it is."""
    clean = [1.80, 1.81, 1.79, 1.80, 1.82, 1.79]
    kept = _check([*clean, 2.6, 2.6], 0)
    assert kept.verdict is not Verdict.REGRESSED
    left = _check(clean, 2)
    assert left.verdict is Verdict.REGRESSED and not left.gate.passed
    assert "2 of 8 pairs left out (machine busy)" in left.gate.message


def test_unchanged_code_with_contended_pairs_left_out_stays_unchanged() -> None:
    """Unchanged by more than ``busy_bias`` from the drop allowed: still unchanged."""
    found = _check([2.0, 2.01, 1.99, 2.0, 2.02, 1.98], 3, Gates(speedup_drop_max=0.1))
    assert found.verdict is Verdict.UNCHANGED and found.gate.passed


def test_a_busy_machine_s_verdict_allows_for_the_clean_pairs_bias() -> None:
    """Beside a neighbour the uncontended pairs still read a few percent off (unchanged code
    read 0.946 of its baseline, and 10 % slower code 0.86-0.89): with pairs left out the
    interval is widened by ``busy_bias`` each way. A 5 % dip is then no regression (it was
    one on a quiet machine), a 14 % drop still is, and no unchanged verdict is read inside
    the bias."""
    dip = [1.88, 1.91, 1.90, 1.89, 1.90, 1.91]  # 0.95 of the baseline's 2.0
    assert _check(dip, 0).verdict is Verdict.REGRESSED  # quiet: every pair kept
    busy = _check(dip, 4)
    assert busy.verdict is Verdict.BUSY and busy.gate.passed
    assert "widened by 5% each way: busy_bias" in busy.gate.message
    assert busy.change is not None and busy.change.high > 1.0
    drop = _check([1.72, 1.73, 1.71, 1.72, 1.74, 1.70], 4)  # 0.86
    assert drop.verdict is Verdict.REGRESSED and not drop.gate.passed
    same = [2.0, 2.01, 1.99, 2.0, 2.02, 1.98]
    assert _check(same, 0).verdict is Verdict.UNCHANGED
    assert _check(same, 3).verdict is Verdict.BUSY  # within the bias of the drop allowed
    rerun = check_speedup(
        "ct.nii.gz", PairSample.from_ratios(dip), (2.0, 1.0), GATES, "min", BASELINE, 0, 2
    )  # no pair left out, but contended runs were run again: the machine was busy
    assert rerun.verdict is Verdict.BUSY and rerun.change is not None and rerun.change.high > 1
    blip = _check(dip, 1)  # one contended pair of 7: a quiet session's blip, no allowance
    assert blip.verdict is Verdict.REGRESSED and "busy_bias" not in blip.gate.message
    plain = Gates(speedup_drop_max=0.05, busy_bias=0.0)  # no allowance: as measured
    assert _check(dip, 4, plain).verdict is Verdict.REGRESSED
    suite = {"a": (PairSample.from_ratios(dip), BASELINE.pairs)}
    assert check_suite_speedup(suite, Gates(), left_out=0).message.startswith("suite: regressed")  # type: ignore[union-attr]
    gate = check_suite_speedup(suite, Gates(), left_out=4)
    assert gate is not None and gate.passed
    assert gate.message.startswith("suite: inconclusive (machine busy)")
    assert "widened by 5% each way (busy_bias)" in gate.message
    gate = check_suite_speedup(suite, Gates(), left_out=0, rerun=3)
    assert gate is not None and gate.message.startswith("suite: inconclusive (machine busy)")
    assert "3 contended runs run again" in gate.message


def test_no_clean_pair_is_inconclusive_machine_busy() -> None:
    found = _check([], 6)
    assert found.verdict is Verdict.BUSY and found.gate.passed
    assert found.verdict.value == "inconclusive (machine busy)"
    assert "6 of 6 pairs were contended" in found.gate.message
    strict = _check([], 6, Gates(speedup_drop_max=0.05, inconclusive_fails=True))
    assert not strict.gate.passed and "quieter runner" in strict.gate.message


def test_too_noisy_with_pairs_left_out_is_machine_busy() -> None:
    found = _check([1.2, 2.9], 4)
    assert found.verdict is Verdict.BUSY
    assert _check([1.2, 2.9], 0).verdict is Verdict.INCONCLUSIVE


def test_a_blip_run_again_leaves_a_noisy_verdict_plain_inconclusive() -> None:
    """A quiet session's one contended run, run again (1 of 12 pairs), is no busy machine:
    a verdict too noisy to read is ``inconclusive``, as without it (a quiet unchanged run
    of the gate study read ``inconclusive (machine busy)`` for that alone); at a fifth of
    the pairs it is ``inconclusive (machine busy)``."""
    noisy = [1.9, 2.2, 1.7, 2.3, 1.8, 2.1, 2.0, 1.75, 2.25, 1.95, 2.05, 1.85]
    blip = check_speedup(
        "ct.nii.gz", PairSample.from_ratios(noisy), (2.0, 1.0), GATES, "min", BASELINE, 0, 1
    )
    assert blip.verdict is Verdict.INCONCLUSIVE
    busy = check_speedup(
        "ct.nii.gz", PairSample.from_ratios(noisy), (2.0, 1.0), GATES, "min", BASELINE, 0, 3
    )
    assert busy.verdict is Verdict.BUSY
    suite = {"a": (PairSample.from_ratios(noisy), BASELINE.pairs)}
    gate = check_suite_speedup(suite, Gates(), left_out=0, rerun=1)
    assert gate is not None and gate.message.startswith("suite: inconclusive: ")
    gate = check_suite_speedup(suite, Gates(), left_out=0, rerun=3)
    assert gate is not None and gate.message.startswith("suite: inconclusive (machine busy)")


def test_the_suite_verdict_says_machine_busy() -> None:
    noisy = {"a": (PairSample.from_ratios([1.2, 2.9]), BASELINE.pairs)}
    gate = check_suite_speedup(noisy, Gates(), left_out=3)
    assert gate is not None and gate.message.startswith("suite: inconclusive (machine busy)")
    empty = {"a": (PairSample(()), BASELINE.pairs)}
    gate = check_suite_speedup(empty, Gates(inconclusive_fails=True), left_out=5)
    assert gate is not None and not gate.passed and "(5 contended pairs left out)" in gate.message
    assert check_suite_speedup(empty, Gates(), left_out=0) is None


def test_timing_keys_are_validated() -> None:
    cfg = parse_config({"timing": {"busy_max": 0.25, "quiet_wait_s": 0}})
    assert cfg.timing.busy_max == 0.25 and cfg.timing.quiet_wait_s == 0
    assert parse_config({"gates": {"busy_bias": 0.02}}).gates.busy_bias == 0.02
    with pytest.raises(ValueError, match=r"gates\.busy_bias"):
        parse_config({"gates": {"busy_bias": 0.9}})
    with pytest.raises(ValueError, match=r"timing\.busy_max"):
        parse_config({"timing": {"busy_max": 2}})


def test_saved_contention_reads_back() -> None:
    per_pair = ((1.0, 1.9, 0.0, 0.5, 0.9, 0.01),)
    saved = Contention(0.1, 9, 2, (1.5, 1.6), 0.93, 0.99, 0.01, 0.5, 2.5, 1.3, per_pair)
    again = Contention.read(saved.to_info())
    assert again == saved
    assert again.shares_text() == "93/99%"
    assert again.busy_text() == "2 of 9 pairs left out (machine busy)"
    assert Contention.read({}) is None


def test_run_cpu_share_of_an_empty_run_is_zero() -> None:
    assert RunCpu(0.0, 0.0, 2, None).share == 0.0
    assert not math.isnan(RunCpu(1.0, 1.5, 2, 0.0).share)


def test_one_uncontended_pair_gives_no_verdict() -> None:
    """With pairs left out, one clean pair is no interval: no verdict is read from it, for the
    case or (with the other cases) for the suite."""
    found = _check([1.5], 5)
    assert found.verdict is Verdict.BUSY and "5 of 6 pairs were contended" in found.gate.message
    one = {"a": (PairSample.from_ratios([1.5]), BASELINE.pairs)}
    gate = check_suite_speedup(one, GATES, left_out=5)
    assert gate is not None and "inconclusive (machine busy)" in gate.message
    old = check_suite_speedup(one, GATES, left_out=0)  # a run saved with one pair: as before
    assert old is not None and old.message.startswith("suite: regressed")


def _run(contention: Any) -> dict[str, Any]:
    info = {"role": "candidate", "case": "a.nii.gz", "contention": contention}
    return {"benchmarks": [{"group": "a", "name": "c", "extra_info": info, "stats": {"min": 1.0}}]}


def test_hand_edited_contention_is_refused_naming_the_key() -> None:
    from segbench.results.runs import RunFileError, parse_run

    good = Contention(0.1, 4, 1, (1.5,), 0.9, 0.95, 0.0, 0.4, 0.0, 1.0).to_info()["contention"]
    assert parse_run(_run(good)).rows[0].left_out == 1
    for key, bad in (("left_out", "3"), ("per_pair", [["x"]]), ("cpu_share", [0.9])):
        with pytest.raises(RunFileError, match=rf"contention\.{key}"):
            parse_run(_run({**good, key: bad}))


def test_the_table_and_the_report_show_each_side_s_cpu_share() -> None:
    from segbench.results.markdown import render_report
    from segbench.results.runs import parse_run
    from segbench.results.table import summary_table

    good = Contention(0.1, 4, 1, (1.5,), 0.9, 0.95, 0.0, 0.4, 0.0, 1.0).to_info()["contention"]
    run = parse_run(_run(good))
    table = summary_table(run.rows, "torch", "onnx")
    assert "CPU torch/onnx" in table and "90/95%, 1/4 busy" in table
    assert "1/4 pairs busy" in table.splitlines()[-1]
    assert "90/95%, 1/4 busy" in render_report(run.rows, "run")
    old = parse_run(_run(None))  # a run saved before: no column
    assert "CPU" not in summary_table(old.rows, "torch", "onnx")


def test_a_contended_run_of_an_added_pair_is_run_again_after_a_quiet_wait() -> None:
    """The first added pair's candidate run meets the neighbour: it is dropped and run again
    once the machine is quiet, and the pair is kept (nothing left out of the added pairs)."""
    machine = Machine()
    quiet, busy = (1.0, 0.0), (1.5, 0.5)
    # warm-up, round 1 (pytest-benchmark's, left out when contended), added pair: busy, again
    again = [(1.01, 0.0), (0.99, 0.0), (1.02, 0.0)]
    script = {"reference": [(2.0, 0.0)], "candidate": [quiet, busy, busy, *again]}
    timing = Timing(rounds=1, warmup_rounds=1, max_rounds=3, budget_s=100.0, precision=0.0)
    rounds = _rounds(machine, script, timing)
    phases = iter([0.5, 0.0] * 10)  # the neighbour: busy for a window, then idle

    def sleep(seconds: float) -> None:
        machine.neighbour = next(phases)
        machine.sleep(seconds)

    rounds.sleep = sleep
    rounds.measure("candidate", None)
    flags = [contended for _, _, contended in rounds.pairs("candidate")]
    assert flags == [True, False, False, False]  # round 1 left out, 3 clean added pairs
    assert rounds.rerun["candidate"] == 1 and rounds.pair_sample("candidate").n == 3
    assert 0 < rounds.waited_s["candidate"] < 2.0  # then every run waits (cycling)


def test_a_round_after_a_contended_round_waits_for_a_quiet_phase_to_start() -> None:
    """pytest-benchmark's rounds cannot be run again: a contended round is left out, and the
    next round's reference run first waits for the neighbour to go idle."""
    machine = Machine()
    quiet, busy = (1.0, 0.0), (1.5, 0.5)
    candidate = [quiet, quiet, busy, (1.01, 0.0), (0.99, 0.0), (1.02, 0.0)]
    script = {"reference": [(2.0, 0.0)], "candidate": candidate}
    timing = Timing(rounds=3, warmup_rounds=1, max_rounds=3, budget_s=100.0, precision=0.0)
    rounds = _rounds(machine, script, timing)
    waits: list[float] = []
    phases = iter([0.5, 0.0] * 10)

    def sleep(seconds: float) -> None:
        waits.append(machine.wall)
        machine.neighbour = next(phases)
        machine.sleep(seconds)

    rounds.sleep = sleep
    rounds.measure("candidate", None)
    flags = [contended for _, _, contended in rounds.pairs("candidate")]
    assert flags[:3] == [False, True, False] and rounds.rerun["candidate"] == 0
    # the first wait comes right after round 2 (contended), before round 3's reference run
    assert waits and min(waits) == pytest.approx(3.0 + 3.0 + 2.0 + 1.5)
    assert rounds.steal_shares("candidate") == [0.0] * len(rounds.per_pair("candidate")) * 2


def test_the_budget_counts_the_uncontended_pairs() -> None:
    """Pairs of 3 s, a budget of 10 s: with one of the first three contended, a fourth pair
    is measured (6 s kept + 3 s fit in 10; all pairs, 12 s, in twice it); without
    contention the budget stops at three pairs."""
    timing = Timing(rounds=3, warmup_rounds=1, max_rounds=6, budget_s=10.0, precision=0.0)
    times = [(1.0, 0.0), (1.01, 0.0), (1.0, 0.5), (0.99, 0.0), (1.02, 0.0), (1.0, 0.0)]
    busy_run = _rounds(Machine(), {"reference": [(2.0, 0.0)], "candidate": times}, timing)
    busy_run.measure("candidate", None)
    assert [b for _, _, b in busy_run.pairs("candidate")] == [False, True, False, False]
    calm = [(1.0, 0.0), (1.01, 0.0), (0.99, 0.0), (1.02, 0.0), (1.0, 0.0)]
    quiet_run = _rounds(Machine(), {"reference": [(2.0, 0.0)], "candidate": calm}, timing)
    quiet_run.measure("candidate", None)
    assert len(quiet_run.pairs("candidate")) == 3
