"""pytest glue: the ``segbench`` option group, the session state, fixtures and the table.

Options are parsed once into a frozen :class:`Options`; the session state is a plugin object
registered under the name ``segbench-session`` and fetched by that name.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from segbench.cases import SUITES, Case, builtin_cases, folder_cases
from segbench.config import BenchConfig, load_config
from segbench.errors import ConfigError, ModelError, SegbenchError
from segbench.gates import BaselineSpeedup
from segbench.inject import Injection, parse_injection
from segbench.models import BUILTIN, get_card, parse_model_name
from segbench.phantoms import default_cache_dir
from segbench.report import summary_table
from segbench.runner import (
    ROLES,
    CaseSummary,
    PairedRun,
    Runtime,
    build_runtime,
    check_providers,
)
from segbench.volumes import DEFAULT_MAX_VOXELS

SESSION_NAME = "segbench-session"
INI_KEYS = ("suite", "model", "config", "data", "shared_data", "cache_dir")
CONFIG_NAME = "benchmarks.json"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _injection_item(text: str) -> str:
    try:
        parse_injection([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _suite(text: str) -> str:
    if text not in SUITES:
        raise argparse.ArgumentTypeError(f"choose one of {', '.join(SUITES)}, got {text!r}")
    return text


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("segbench", "segbench: PyTorch vs ONNX Runtime segmentation gates")
    ini = {  # the options that are also ini keys (INI_KEYS)
        "suite": "built-in cases: quick (4 phantoms + the shared example CT), seed20 (the study's "
        "20 grids) or none (default: quick)",
        "model": f"model to benchmark: {', '.join(BUILTIN)}, or nnunet:PATH, "
        "torchscript:MODEL.pt[:CARD.json], entrypoint:pkg.mod:factory, totalsegmentator:NAME "
        "(TotalSegmentator's installed weights: fast, fastest, total_organs, ...) "
        "(default: demo)",
        "config": f"gate file (default: {CONFIG_NAME} in the rootdir if present, else built-ins)",
        "data": "folder whose .nii/.nii.gz files and DICOM series subfolders become cases; "
        "<case>_seg.nii.gz beside a case is its ground truth (default: none)",
        "shared_data": "folder holding ct/example_ct_sm.nii.gz (default: ../shared/data beside "
        "the rootdir, or $SEGBENCH_SHARED_DATA)",
        "cache_dir": "where phantoms and ONNX exports are cached (default: pytest's cache dir)",
    }
    group.addoption("--segbench-suite", type=_suite, default=None, help=ini["suite"])
    group.addoption("--segbench-model", default=None, help=ini["model"])
    group.addoption("--segbench-config", default=None, help=ini["config"])
    group.addoption("--segbench-data", default=None, help=ini["data"])
    group.addoption("--segbench-shared-data", default=None, help=ini["shared_data"])
    group.addoption("--segbench-cache-dir", default=None, help=ini["cache_dir"])
    group.addoption(
        "--segbench-onnx",
        default=None,
        help="use this ONNX file as the candidate instead of exporting the model "
        "(is my production model.onnx still equivalent to my checkpoint?)",
    )
    group.addoption(
        "--segbench-rounds",
        type=_positive_int,
        default=None,
        help="timed rounds per backend and case (default: benchmarks.json, 3)",
    )
    group.addoption(
        "--segbench-warmup",
        type=_non_negative_int,
        default=None,
        help="warm-up rounds before timing (default: benchmarks.json, 2)",
    )
    group.addoption(
        "--segbench-dice-min",
        type=_fraction,
        default=None,
        help="override the mean-Dice gate for every case (default: benchmarks.json)",
    )
    group.addoption(
        "--segbench-speedup-min",
        type=_non_negative_float,
        default=None,
        help="override the speed-up gate for every case (default: benchmarks.json)",
    )
    group.addoption(
        "--segbench-max-voxels",
        type=_positive_int,
        default=DEFAULT_MAX_VOXELS,
        help="refuse volumes with more voxels than this, up front, with a memory estimate "
        f"(default: {DEFAULT_MAX_VOXELS})",
    )
    group.addoption(
        "--segbench-report-dir",
        default=None,
        help="where a case that fails the Dice gate gets a PNG of its worst slice "
        "(default: reports/segbench in the rootdir; needs matplotlib, segbench[report])",
    )
    group.addoption(
        "--segbench-require-gpu",
        action="store_true",
        default=False,
        help="fail when the candidate does not run on a GPU provider (onnxruntime-gpu falls back "
        "to the CPU silently when CUDA libraries are missing)",
    )
    group.addoption(
        "--segbench-baseline",
        default=None,
        help="a saved run (--benchmark-json / --benchmark-autosave file) of the same CPU type: "
        "each case's speed-up must stay within speedup_drop_max of its speed-up there "
        "(default: none, only speedup_min applies)",
    )
    group.addoption(
        "--segbench-inject",
        action="append",
        type=_injection_item,
        default=[],
        metavar="KIND=VALUE",
        help="inject a regression into the candidate, to see a gate fail (repeatable): "
        "delay=SECONDS per window, slowdown=FRACTION (0.3: 30%% slower), perturb=SCALE "
        "(noise on the last conv's ONNX weights), shift=VOXELS (window output misplaced), "
        "no-gaussian (default: none)",
    )
    for key, text in ini.items():
        parser.addini(f"segbench_{key}", text, default=None)


@dataclass(frozen=True)
class Options:
    """Every segbench option, resolved once: command line, then ini file, then default."""

    suite: str
    model: str
    config_path: Path | None
    data: Path | None
    shared_data: Path | None
    cache_dir: Path
    onnx: Path | None
    rounds: int | None
    warmup: int | None
    dice_min: float | None
    speedup_min: float | None
    baseline: Path | None
    injection: Injection
    max_voxels: int
    report_dir: Path
    require_gpu: bool

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        root = config.rootpath

        def get(name: str) -> Any:
            value = config.getoption(f"segbench_{name}")
            return value if value is not None else config.getini(f"segbench_{name}")

        def path(name: str) -> Path | None:
            """Command-line paths are relative to the working directory, ini paths to the
            rootdir."""
            value = config.getoption(f"segbench_{name}")
            if value is not None:
                return Path(value).resolve()
            ini = config.getini(f"segbench_{name}") if name in INI_KEYS else None
            return (root / str(ini)).resolve() if ini else None

        model = get("model") or "demo"
        try:
            parse_model_name(model)
        except ModelError as exc:
            raise pytest.UsageError(f"--segbench-model / segbench_model: {exc}") from exc
        suite = get("suite") or "quick"
        if suite not in SUITES:
            raise pytest.UsageError(
                f"segbench_suite = {suite!r}: choose one of {', '.join(SUITES)}"
            )
        config_path = path("config")
        if config_path is None and (root / CONFIG_NAME).is_file():
            config_path = root / CONFIG_NAME
        env_shared = os.environ.get("SEGBENCH_SHARED_DATA")
        shared = path("shared_data") or (Path(env_shared).resolve() if env_shared else None)
        if shared is None:
            shared = root.parent / "shared" / "data"
        cache = path("cache_dir")
        if cache is None:
            cache_provider = getattr(config, "cache", None)
            cache = (
                Path(cache_provider.mkdir("segbench")) if cache_provider else default_cache_dir()
            )
        return cls(
            suite=suite,
            model=model,
            config_path=config_path,
            data=path("data"),
            shared_data=shared if shared.is_dir() else None,
            cache_dir=cache,
            onnx=path("onnx"),
            rounds=config.getoption("segbench_rounds"),
            warmup=config.getoption("segbench_warmup"),
            dice_min=config.getoption("segbench_dice_min"),
            speedup_min=config.getoption("segbench_speedup_min"),
            baseline=path("baseline"),
            injection=parse_injection(config.getoption("segbench_inject")),
            max_voxels=config.getoption("segbench_max_voxels"),
            report_dir=path("report_dir") or root / "reports" / "segbench",
            require_gpu=config.getoption("segbench_require_gpu"),
        )


def _apply_overrides(cfg: BenchConfig, opts: Options) -> BenchConfig:
    timing = cfg.timing
    if opts.rounds is not None:
        timing = replace(timing, rounds=opts.rounds)
    if opts.warmup is not None:
        timing = replace(timing, warmup_rounds=opts.warmup)
    gate_overrides: dict[str, Any] = {
        k: v
        for k, v in (("dice_min", opts.dice_min), ("speedup_min", opts.speedup_min))
        if v is not None
    }
    return replace(
        cfg,
        timing=timing,
        gates=replace(cfg.gates, **gate_overrides),
        case_gates={k: replace(g, **gate_overrides) for k, g in cfg.case_gates.items()},
    )


class SegbenchSession:
    """Session state: options, gate settings, cases, the runtime (built lazily, once), the
    paired runs and the summary rows."""

    def __init__(self, config: pytest.Config) -> None:
        self.options = Options.from_config(config)
        try:
            self.bench = _apply_overrides(load_config(self.options.config_path), self.options)
            if self.options.data is not None:
                self.cases: list[Case] = folder_cases(self.options.data)
            else:
                self.cases = builtin_cases(self.options.suite, self.options.shared_data)
            self.baselines = (
                {} if self.options.baseline is None else load_baselines(self.options.baseline)
            )
        except SegbenchError as exc:
            raise pytest.UsageError(str(exc)) from exc
        self._runtime: Runtime | None = None
        self._runtime_error: Exception | None = None
        self._pairs: dict[str, PairedRun] = {}
        self.summaries: dict[str, CaseSummary] = {}

    @property
    def runtime(self) -> Runtime:
        if self._runtime_error is not None:
            raise self._runtime_error
        if self._runtime is None:
            try:
                self._runtime = build_runtime(
                    get_card(self.options.model),
                    self.bench,
                    self.options.cache_dir,
                    onnx=self.options.onnx,
                    injection=self.options.injection,
                )
                check_providers(self._runtime, self.options.require_gpu)
            except Exception as exc:  # every case fails with the same message, once built
                self._runtime_error = exc
                raise
        return self._runtime

    def pair(self, case: Case) -> PairedRun:
        if case.id not in self._pairs:
            runtime = self.runtime
            image, truth = case.files(self.options.cache_dir)
            self._pairs[case.id] = PairedRun(
                case.id,
                image,
                truth,
                runtime,
                self.bench,
                self.bench.gates_for(case.id),
                max_voxels=self.options.max_voxels,
                baseline=self.baselines.get(case.id),
                truth_names=case.truth_names,
            )
        return self._pairs[case.id]

    def release(self, case: Case) -> None:
        self._pairs.pop(case.id, None)

    # hooks of the session object ------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "segbench_case" in metafunc.fixturenames:
            metafunc.parametrize("segbench_case", self.cases, ids=[c.id for c in self.cases])

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Mark the per-volume tests ``segbench`` and run each case's reference right before its
        candidate, so both are timed in the same machine state."""
        order = {c.id: i for i, c in enumerate(self.cases)}
        slots: list[int] = []
        ours: list[tuple[int, int, pytest.Item]] = []
        for index, item in enumerate(items):
            case = _case_of(item)
            if case is not None:
                item.add_marker(pytest.mark.segbench)
                slots.append(index)
                ours.append((order.get(case.id, 0), len(ours), item))
        for slot, (_, _, item) in zip(slots, sorted(ours), strict=True):
            items[slot] = item

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.summaries:
            return
        profiles = self.bench.reference.backend.value, self.bench.candidate.backend.value
        terminalreporter.write_sep(
            "=",
            f"segbench: {self.options.model} model, "
            f"{profiles[0]} (reference) vs {profiles[1]} (candidate)",
        )
        terminalreporter.write_line(summary_table(list(self.summaries.values()), *profiles))
        timing = self.bench.timing
        terminalreporter.write_line(
            f"speed-up = reference / candidate latency, {timing.estimator} of {timing.rounds} "
            f"interleaved rounds after {timing.warmup_rounds} warm-ups; gates from "
            f"{self.bench.source}"
            + (f"; baseline {self.options.baseline}" if self.options.baseline else "")
        )
        if self.options.injection.active:
            terminalreporter.write_line(
                f"INJECTED into the candidate: {self.options.injection.describe()}"
            )


def load_baselines(path: Path) -> dict[str, BaselineSpeedup]:
    """Per-case speed-ups of a saved run, refused when it was measured on another CPU type:
    the ratio of two backends depends on the CPU (vector units, caches), not only on the code."""
    from segbench.runs import load_run

    run = load_run(path)
    here = current_cpu()
    if run.cpu and here and run.cpu != here:
        raise ConfigError(
            f"--segbench-baseline {path}: saved on {run.cpu!r}, but this machine is {here!r}; "
            "speed-ups of different CPU types do not compare. Fix: save a baseline on this "
            "runner type (pytest --benchmark-only --benchmark-json=baseline.json)"
        )
    source = f"{path.name}" + (f", {run.datetime[:19]}" if run.datetime else "")
    return {
        row.case: BaselineSpeedup(speed, source)
        for row in run.rows
        if (speed := row.speedup) is not None and row.passed
    }


def current_cpu() -> str | None:
    """This machine's CPU brand as pytest-benchmark records it (py-cpuinfo)."""
    try:
        import cpuinfo
    except ImportError:
        return None
    brand = cpuinfo.get_cpu_info().get("brand_raw")
    return str(brand) if brand else None


def _case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("segbench_case") if callspec is not None else None
    return case if isinstance(case, Case) else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "segbench: a per-volume regression case of segbench")
    if config.pluginmanager.get_plugin(SESSION_NAME) is None:
        config.pluginmanager.register(SegbenchSession(config), SESSION_NAME)


def session_of(config: pytest.Config) -> SegbenchSession:
    plugin = config.pluginmanager.get_plugin(SESSION_NAME)
    assert isinstance(plugin, SegbenchSession)
    return plugin


class CaseCheck:
    """What a regression test does with one case: measure a role, then check the gates."""

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

    def check_gates(self, benchmark: Any) -> CaseSummary:
        """Evaluate the Dice and speed-up gates; fail the test with every failing gate's message."""
        __tracebackhide__ = True
        timed = not bool(getattr(benchmark, "disabled", False))
        pair = self.pair
        summary = pair.evaluate(timed=timed)
        self.session.summaries[self.case.id] = summary
        benchmark.extra_info.update(pair.extra_info("candidate"))
        benchmark.extra_info.update(
            {
                "mean_dice": round(summary.dice.mean, 6) if summary.dice else None,
                "class_dice": {str(c.label): round(c.dice, 6) for c in summary.dice.per_class}
                if summary.dice
                else {},
                "gated_class_dice_min": min(
                    (
                        round(c.dice, 6)
                        for c in summary.dice.per_class
                        if c.voxels >= pair.gates.min_class_voxels
                    ),
                    default=None,
                )
                if summary.dice
                else None,
                "flipped_fraction": summary.dice.flipped_fraction if summary.dice else None,
                "max_abs_logit_diff": pair.logit_diff.max_abs if pair.logit_diff else None,
                "reference_s": summary.reference_s,
                "candidate_s": summary.candidate_s,
                "speedup": summary.speedup,
                "baseline_speedup": pair.baseline.speedup if pair.baseline else None,
                "injected": self.session.options.injection.describe(),
                "gates": {g.name: g.passed for g in summary.gates},
            }
        )
        failed = [g.message for g in summary.gates if not g.passed]
        if any(g.name == "dice" and not g.passed for g in summary.gates):
            failed.insert(0, self._disagreement_png())
        self.session.release(self.case)
        if failed:
            pytest.fail("\n".join(failed), pytrace=False)
        return summary

    def _disagreement_png(self) -> str:
        """Save the slice where the two masks disagree most; return a line for the message."""
        pair = self.pair
        ref, cand = pair.runs["reference"].last, pair.runs["candidate"].last
        if ref is None or cand is None:
            return ""
        from segbench.plots import PlotError, plot_disagreement

        try:
            path = self.session.options.report_dir / f"{self.case.id}-disagreement.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            index = plot_disagreement(
                pair.volume.array,
                ref.labels,
                cand.labels,
                path,
                f"{self.case.id}: reference vs candidate",
                spacing=pair.volume.spacing,
            )
        except PlotError as exc:
            return f"(no PNG of the worst slice: {exc})"
        return f"Worst slice (z={index}, RAS): {path}"


@pytest.fixture(scope="session")
def segbench(request: pytest.FixtureRequest) -> SegbenchSession:
    """The segbench session state (options, gate settings, cases, runtime)."""
    return session_of(request.config)


@pytest.fixture
def segbench_check(segbench: SegbenchSession, segbench_case: Case) -> CaseCheck:
    """The paired reference/candidate runs of the current case (created once per case)."""
    try:
        segbench.pair(segbench_case)
    except Exception as exc:
        segbench.summaries[segbench_case.id] = CaseSummary(segbench_case.id, (), error=str(exc))
        raise
    return CaseCheck(segbench, segbench_case)
