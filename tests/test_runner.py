"""segbench.bench: interleaved timing of the pair, the speed-up it gates, baselines, injection."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ScriptedClock, build_tiny_net, tiny_card, write_nifti

from segbench.bench.contention import Snapshot, process_cpu_s
from segbench.bench.inject import InjectedBackend
from segbench.bench.paired import PairedRun
from segbench.bench.runtime import Runtime, build_runtime
from segbench.bench.segmenters import BackendSegmenter
from segbench.errors import ConfigError, SegbenchError
from segbench.pipeline.backends import BackendKind, OrtBackend, TorchBackend
from segbench.results.baseline import load_baselines
from segbench.scoring.gates import BaselineSpeedup
from segbench.scoring.metrics import logit_diff
from segbench.settings.config import BenchConfig, Gates, Profile, Timing
from segbench.settings.injection import Injection


class _Logged:
    """A torch backend that logs each call under its role's name."""

    def __init__(self, role: str, log: list[str], kind: BackendKind) -> None:
        self.role, self.log, self.kind = role, log, kind
        self.inner = TorchBackend(build_tiny_net())

    @property
    def provider(self) -> str:
        return "cpu"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.log.append(self.role)
        return self.inner(batch)


class _Pedantic:
    """What pytest-benchmark's ``pedantic`` does with ``setup``: call it before every warm-up
    and every timed round, then run the target."""

    disabled = False

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}

    def pedantic(
        self, target: Any, args: tuple, setup: Any, rounds: int, warmup_rounds: int, iterations: int
    ) -> None:
        self.rounds = rounds
        for _ in range(warmup_rounds + rounds):
            setup()
            target(*args)


def _pair(tmp_path: Path, timing: Timing) -> tuple[PairedRun, list[str]]:
    image = write_nifti(tmp_path / "ct.nii.gz", shape=(30, 30, 24), zooms=(3.0, 3.0, 3.0))
    card = tiny_card()
    log: list[str] = []
    runtime = Runtime(
        card,
        {
            "reference": _Logged("R", log, BackendKind.TORCH),
            "candidate": _Logged("C", log, BackendKind.ONNX),
        },
        {"reference": Profile(BackendKind.TORCH), "candidate": Profile(BackendKind.ONNX)},
        None,
        "export",
        None,
    )
    config = BenchConfig(timing=timing)
    pair = PairedRun.load("ct.nii.gz", image, None, runtime, config, Gates())
    pair.rounds.sample = _unjudged  # other processes' load is not read: no pair is contended
    return pair, log


def _unjudged() -> Snapshot:
    """Wall and CPU clocks without the machine's: contention is not judged."""
    return Snapshot(time.perf_counter(), process_cpu_s())


def _calls(log: list[str]) -> str:
    """Runs as letters: each run of one role is one or more window calls in a row."""
    out: list[str] = []
    for role in log:
        if not out or out[-1] != role:
            out.append(role)
    return "".join(out)


@pytest.mark.parametrize("with_benchmark", [False, True])
def test_candidate_rounds_interleave_with_reference_runs(
    tmp_path: Path, with_benchmark: bool
) -> None:
    pair, log = _pair(
        tmp_path,
        Timing(rounds=3, warmup_rounds=2, estimator="min", reference_rounds=3, max_rounds=3),
    )
    pair.measure("reference", None)
    log.clear()
    pair.measure("candidate", _Pedantic() if with_benchmark else None)
    # two warm-ups (the reference is warm from its own test: no reference run before them),
    # then three timed pairs: reference, candidate, each time
    windows = len(log) // 8
    assert _calls(log) == "CRCRCRC" and len(log) == 8 * windows
    assert len(pair.paired_reference["candidate"]) == 3
    assert len(pair.runs["reference"].times) == 5  # the reference test's own runs only
    assert len(pair.runs["candidate"].timed) == 3
    summary = pair.evaluate(timed=True)
    paired = min(t.total for t in pair.paired_reference["candidate"])
    assert summary.reference_s == pytest.approx(paired)
    ratios = [
        r.total / c.total
        for r, c in zip(
            pair.paired_reference["candidate"], pair.runs["candidate"].timed, strict=True
        )
    ]
    assert summary.speedup == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
    assert [g.name for g in summary.gates] == [
        "dice",
        "nsd",
        "hd95",
        "volume",
        "vanished",
        "speedup",
    ]
    assert summary.check is not None and summary.check.interval is not None


@pytest.mark.parametrize(
    ("budget_s", "precision", "pairs"),
    [(1e6, 0.0, 6), (0.0, 0.0, 2), (1e6, 1e9, 2)],
    ids=["wide-interval-runs-to-max", "no-budget", "tight-enough"],
)
def test_adaptive_rounds_stop_at_max_budget_or_precision(
    tmp_path: Path, budget_s: float, precision: float, pairs: int
) -> None:
    """After ``rounds`` pairs, pairs are added while the interval is wider than ``precision``,
    up to ``max_rounds`` and within ``budget_s``; pytest-benchmark's rounds stay ``rounds``."""
    timing = Timing(
        rounds=2,
        warmup_rounds=0,
        reference_rounds=1,
        max_rounds=6,
        budget_s=budget_s,
        precision=precision,
    )
    pair, log = _pair(tmp_path, timing)
    pair.measure("reference", None)
    log.clear()
    bench = _Pedantic()
    pair.measure("candidate", bench)
    assert _calls(log) == "RC" * pairs
    assert pair.pair_sample("candidate").n == pairs
    assert bench.rounds == 2


def test_at_most_one_kept_logits_array_beside_a_running_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory: while a round runs, at most the other role's last logits are kept: never the
    same role's previous round; none at all during a paired reference run."""
    from segbench.bench import segmenters as runner  # segbench's pipeline runs from there

    made: list[Any] = []
    kept_during: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        kept_during.append(sum(p.logits is not None for p in made))
        pred = predict_volume(*args, **kwargs)
        made.append(pred)
        return pred

    predict_volume = runner.predict_volume
    monkeypatch.setattr(runner, "predict_volume", counting)
    pair, _ = _pair(
        tmp_path,
        Timing(rounds=3, warmup_rounds=1, estimator="min", reference_rounds=3, max_rounds=3),
    )
    pair.measure("reference", None)
    pair.measure("candidate", _Pedantic())
    # reference: 1 + 3 rounds; candidate: 1 warm-up (the reference's last logits kept), then
    # (reference, candidate) x 3 timed
    assert kept_during == [0, 0, 0, 0] + [1] + [0, 1] * 3
    assert pair.runs["reference"].last.logits is not None
    assert pair.runs["candidate"].last.logits is not None
    summary = pair.evaluate(timed=True)
    assert pair.logit_diff is not None and summary.dice is not None
    assert sum(p.logits is not None for p in made) == 0


@pytest.mark.parametrize("reference_first", [True, False])
def test_a_cold_reference_runs_before_each_candidate_warm_up(
    tmp_path: Path, reference_first: bool
) -> None:
    pair, log = _pair(
        tmp_path,
        Timing(rounds=2, warmup_rounds=1, estimator="min", reference_rounds=1, max_rounds=2),
    )
    if reference_first:
        pair.measure("reference", None)
    log.clear()
    pair.measure("candidate", None)
    # a candidate test run alone (-k candidate): the reference's first run of the case is an
    # untimed one before the candidate's warm-up, not the first pair's
    windows = len(log) // (5 if reference_first else 6)
    assert _calls(log) == ("CRCRC" if reference_first else "RCRCRC")
    assert len(log) == (5 if reference_first else 6) * windows
    assert len(pair.paired_reference["candidate"]) == 2


def test_speedup_falls_back_to_reference_rounds_without_pairs(tmp_path: Path) -> None:
    pair, _ = _pair(
        tmp_path,
        Timing(rounds=1, warmup_rounds=0, estimator="median", reference_rounds=1, max_rounds=1),
    )
    pair.measure("reference", None)
    pair.runs["candidate"].times.append(pair.run("candidate").times)
    pair.runs["candidate"].warmup = 1
    assert pair.reference_latency("median") == pair.runs["reference"].latency("median")


def _saved_run(
    path: Path, cpu: str, speedup: float, passed: bool = True, malloc: str | None = None
) -> Path:
    info = {
        "case": "a.nii.gz",
        "role": "candidate",
        "reference_s": speedup,
        "candidate_s": 1.0,
        "speedup": speedup,
        "gates": {"dice": passed, "speedup": True},
    }
    data = {
        "machine_info": {"cpu": {"brand_raw": cpu}},
        "datetime": "2026-11-29T10:00:00.000000",
        "benchmarks": [
            {"group": "a.nii.gz", "extra_info": {**info, "role": "reference", "latency_s": 9.0}},
            {"group": "a.nii.gz", "extra_info": info},
        ],
    }
    if malloc is not None:
        data["segbench"] = {"format": 1, "settings": {"options": {"malloc": malloc}}}
    path.write_text(json.dumps(data))
    return path


def test_baseline_speedups_come_from_the_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("segbench.results.baseline.current_cpu", lambda: "Test CPU")
    base = load_baselines(_saved_run(tmp_path / "base.json", "Test CPU", 1.4))
    assert base["a.nii.gz"].speedup == pytest.approx(1.4)
    assert "base.json, 2026-11-29T10:00:00" in base["a.nii.gz"].source
    failed = load_baselines(_saved_run(tmp_path / "bad.json", "Test CPU", 1.4, passed=False))
    assert failed == {}  # a case that failed a gate there is no baseline


def test_baseline_of_another_cpu_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("segbench.results.baseline.current_cpu", lambda: "Intel Xeon")
    with pytest.raises(ConfigError) as err:
        load_baselines(_saved_run(tmp_path / "amd.json", "AMD EPYC 9R14", 1.4))
    text = str(err.value)
    assert "amd.json" in text and "AMD EPYC 9R14" in text and "Intel Xeon" in text
    assert "Fix: save a baseline on this runner type" in text


def test_build_runtime_injects_into_the_candidate_only(tmp_path: Path) -> None:
    card = tiny_card()
    runtime = build_runtime(card, BenchConfig(), tmp_path, injection=Injection(shift=1))
    assert isinstance(runtime.backends["candidate"], InjectedBackend)
    assert not isinstance(runtime.backends["reference"], InjectedBackend)
    perturbed = build_runtime(card, BenchConfig(), tmp_path, injection=Injection(perturb=0.1))
    candidate = perturbed.backends["candidate"]
    assert isinstance(candidate, OrtBackend) and "perturb0.1" in candidate.model_path.name
    reference = perturbed.backends["reference"]
    assert isinstance(reference, TorchBackend)


def test_fp16_candidate_runs_a_float16_copy(tmp_path: Path) -> None:
    config = BenchConfig(candidate=Profile(BackendKind.ONNX, precision="fp16"))
    runtime = build_runtime(tiny_card(), config, tmp_path)
    candidate = runtime.backends["candidate"]
    assert isinstance(candidate, OrtBackend) and "-fp16-" in candidate.model_path.name
    assert runtime.onnx_path is not None and "-fp16-" not in runtime.onnx_path.name


def test_perturbing_a_torch_candidate_is_refused(tmp_path: Path) -> None:
    config = BenchConfig(candidate=Profile(BackendKind.TORCH))
    with pytest.raises(SegbenchError, match="perturbs the candidate's ONNX weights"):
        build_runtime(tiny_card(), config, tmp_path, injection=Injection(perturb=0.1))


def test_gflops_are_reported_for_plain_conv_unets(tmp_path: Path) -> None:
    from segbench.models.unet import count_flops

    pair, _ = _pair(
        tmp_path,
        Timing(rounds=1, warmup_rounds=0, estimator="min", reference_rounds=1, max_rounds=1),
    )
    pair.runtime.network = build_tiny_net()
    pair.measure("reference", None)
    pair.measure("candidate", None)
    info = pair.extra_info("candidate")
    window = tuple(info["window"])
    assert info["windows"] >= 1
    assert info["gflop_per_window"] == round(count_flops(build_tiny_net(), window) / 1e9, 2)
    expected = info["windows"] * count_flops(build_tiny_net(), window) / 1e9
    assert info["inference_gflops"] == pytest.approx(
        expected / info["stages_s"]["inference"], abs=0.051
    )
    summary = pair.evaluate(timed=True)
    assert summary.candidate_gflops == info["inference_gflops"]
    pair.runtime.network = None  # a TorchScript model: nothing to count
    assert "inference_gflops" not in pair.extra_info("candidate")


def test_peak_rss_is_reset_per_test(tmp_path: Path) -> None:
    from segbench.bench.memory import peak_rss_mb, reset_peak_rss

    if not reset_peak_rss():
        pytest.skip("this OS cannot reset the peak RSS (/proc/self/clear_refs)")
    big = np.ones(100 * 2**20, dtype=np.float32)  # 400 MiB, touched; above any mmap threshold
    high = peak_rss_mb()
    del big
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 300
    pair, _ = _pair(
        tmp_path,
        Timing(rounds=1, warmup_rounds=0, estimator="min", reference_rounds=1, max_rounds=1),
    )
    pair.measure("reference", None)
    info = pair.extra_info("reference")
    assert info["peak_rss_scope"] == "test" and info["peak_rss_mb"] > 0


def test_baseline_from_another_malloc_mode_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("segbench.results.baseline.current_cpu", lambda: "Test CPU")
    steady = _saved_run(tmp_path / "steady.json", "Test CPU", 1.2, malloc="steady")
    assert load_baselines(steady, "steady")["a.nii.gz"].speedup == pytest.approx(1.2)
    with pytest.raises(ConfigError, match=r"--segbench-malloc 'steady'.*runs 'system'"):
        load_baselines(steady, "system")
    old = _saved_run(tmp_path / "old.json", "Test CPU", 1.4)  # before the option: system
    assert load_baselines(old, "system")["a.nii.gz"].speedup == pytest.approx(1.4)
    with pytest.raises(ConfigError, match="--segbench-malloc=system"):
        load_baselines(old, "steady")


def test_park_maps_the_logits_back_from_an_unlinked_file(tmp_path: Path) -> None:
    import tempfile

    from segbench.bench.memory import park

    logits = np.random.default_rng(2).standard_normal((3, 5, 4, 2), dtype=np.float32)
    before = set(Path(tempfile.gettempdir()).glob("segbench-logits-*"))
    parked = park(logits)
    assert isinstance(parked, np.memmap) and not parked.flags.writeable
    np.testing.assert_array_equal(parked, logits)
    assert set(Path(tempfile.gettempdir()).glob("segbench-logits-*")) == before


def test_big_reference_logits_wait_on_disk_during_candidate_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segbench.bench import timing as runner

    monkeypatch.setattr(runner, "PARK_BYTES", 0)  # every array counts as big
    pair, _ = _pair(
        tmp_path,
        Timing(rounds=2, warmup_rounds=1, estimator="min", reference_rounds=2, max_rounds=2),
    )
    pair.measure("reference", None)
    assert not isinstance(pair.runs["reference"].last.logits, np.memmap)
    pair.measure("candidate", _Pedantic())
    assert isinstance(pair.runs["reference"].last.logits, np.memmap)
    assert not isinstance(pair.runs["candidate"].last.logits, np.memmap)
    expected = logit_diff(
        np.asarray(pair.runs["reference"].last.logits), pair.runs["candidate"].last.logits
    )
    pair.evaluate(timed=True)
    assert pair.logit_diff == expected


class _Timed:
    """A backend whose windows take scripted times on ``clock``: ``seconds[i % len(seconds)]``
    for its i-th window, then the tiny network's output."""

    def __init__(self, seconds: list[float], kind: BackendKind, clock: ScriptedClock) -> None:
        self.seconds, self.kind, self.clock, self.calls = seconds, kind, clock, 0
        self.inner = TorchBackend(build_tiny_net())

    @property
    def provider(self) -> str:
        return "cpu"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.clock.sleep(self.seconds[self.calls % len(self.seconds)])
        self.calls += 1
        return self.inner(batch)


def _scripted(
    tmp_path: Path, candidate_s: list[float], baseline: Any = None, slowdown: float = 0.0
) -> PairedRun:
    """A case whose reference windows take 400 ms and the candidate's ``candidate_s`` on a
    scripted clock (the pipeline around the windows takes no time on it), timed with 4 pairs
    (no adaptive rounds), gated against ``baseline``."""
    tmp_path.mkdir()
    image = write_nifti(tmp_path / "ct.nii.gz", shape=(30, 30, 24), zooms=(3.0, 3.0, 3.0))
    clock = ScriptedClock()
    candidate: Any = _Timed(candidate_s, BackendKind.ONNX, clock)
    if slowdown:
        candidate = InjectedBackend(
            candidate, Injection(slowdown=slowdown), clock=clock, sleep=clock.sleep
        )
    card = tiny_card()
    backends = {"reference": _Timed([0.4], BackendKind.TORCH, clock), "candidate": candidate}
    profiles = {"reference": Profile(BackendKind.TORCH), "candidate": Profile(BackendKind.ONNX)}
    segmenters: dict[str, Any] = {
        slot: BackendSegmenter(card, backends[slot], profiles[slot], clock=clock)
        for slot in backends
    }
    runtime = Runtime(card, backends, profiles, None, "export", None, segmenters=segmenters)
    timing = Timing(rounds=4, warmup_rounds=1, reference_rounds=1, max_rounds=4)
    gates = Gates(speedup_min=0.0, speedup_drop_max=0.3)
    pair = PairedRun.load(
        "ct.nii.gz", image, None, runtime, BenchConfig(timing=timing), gates, baseline=baseline
    )
    pair.rounds.sample = _unjudged
    return pair


def _verdict_of(pair: PairedRun) -> tuple[str | None, bool, dict[str, Any]]:
    pair.measure("reference", None)
    pair.measure("candidate", _Pedantic())
    evaluation = pair.evaluate(timed=True)
    assert evaluation.check is not None
    info = pair.gate_info(evaluation, "none")
    verdict = evaluation.check.verdict
    return verdict.value if verdict else None, evaluation.check.gate.passed, info


def test_verdicts_on_injected_timings(tmp_path: Path) -> None:
    """Scripted window times on a scripted clock through the real paired run: a steady
    candidate twice as fast, saved as the baseline; the same again is unchanged; twice as slow
    (the injected slowdown) is regressed; a candidate whose windows jump between 50 and 400 ms
    is inconclusive. The clock makes every figure exact, whatever the machine's load."""
    first = _scripted(tmp_path / "a", [0.2])
    found, passed, info = _verdict_of(first)
    assert found is None and passed  # no baseline: no verdict
    ratios = tuple(info["pair_speedups"])
    assert ratios == pytest.approx((2.0,) * 4)  # 400 ms / 200 ms windows, nothing else timed
    assert info["speedup"] == pytest.approx(2.0)
    assert info["speedup_interval"]["low"] <= info["speedup"] <= info["speedup_interval"]["high"]
    baseline = BaselineSpeedup(info["speedup"], "base.json", ratios)

    same, passed, info = _verdict_of(_scripted(tmp_path / "b", [0.2], baseline))
    assert (same, passed) == ("unchanged", True), info
    assert info["baseline_pair_speedups"] == list(ratios) and info["verdict"] == "unchanged"

    slow, passed, info = _verdict_of(_scripted(tmp_path / "c", [0.2], baseline, slowdown=1.0))
    assert (slow, passed) == ("regressed", False), info
    assert info["pair_speedups"] == pytest.approx([1.0] * 4)  # the candidate twice as slow
    assert info["baseline_change"]["high"] < 1.0

    noisy = _scripted(tmp_path / "d", [0.05, 0.05, 0.4, 0.4, 0.4, 0.05], baseline)
    unsure, passed, info = _verdict_of(noisy)
    assert (unsure, passed) == ("inconclusive", True), info
