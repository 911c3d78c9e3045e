"""pytest glue: the ``segbench`` option group, the session state, fixtures and the table.

Options are parsed once into a frozen :class:`Options`; the session state is a plugin object
registered under the name ``segbench-session`` and fetched by that name.

Sharding (pytest-split's ``--splits N --group i``): a case's reference and candidate tests
always run in the same shard, the shard its reference test goes to. Just before the splitter
selects (the module's ``pytest_collection_modifyitems``), each candidate whose reference is
also selected is set aside; after every plugin has selected, the candidates of the references
that stayed come back and the others are reported deselected. Each saved run
(``--benchmark-json``) gets a ``"segbench"`` block with the settings fingerprint that
``segbench merge`` checks.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from segbench import __version__ as SEGBENCH_VERSION
from segbench.allocator import MALLOC_MODES, configure_malloc
from segbench.cases import SUITES, Case, builtin_cases, folder_cases
from segbench.config import BenchConfig, load_config
from segbench.errors import ConfigError, ModelError, SegbenchError
from segbench.gates import BaselineSpeedup, GateResult, check_suite_speedup
from segbench.inject import Injection, parse_injection
from segbench.models import BUILTIN, get_card, parse_model_name
from segbench.models.card import sha256_file
from segbench.phantoms import default_cache_dir
from segbench.report import TableRow, summary_table, timing_line
from segbench.runner import (
    ROLES,
    CaseSummary,
    PairedRun,
    Runtime,
    build_runtime,
    check_providers,
)
from segbench.runs import machine_label
from segbench.volumes import DEFAULT_MAX_VOXELS

SESSION_NAME = "segbench-session"
INI_KEYS = ("suite", "model", "config", "data", "shared_data", "cache_dir")
CONFIG_NAME = "benchmarks.json"
ROLE_TESTS = {"test_reference": "reference", "test_candidate": "candidate"}
FINGERPRINT_FORMAT = 1  # segbench.shards.FORMAT
VERSIONED = ("torch", "onnxruntime", "numpy", "scipy")


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
        "each case's speed-up must stay within speedup_drop_max of its speed-up there, and the "
        "suite's (geometric mean over the cases) within suite_speedup_drop_max (default: none, "
        "only speedup_min applies)",
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
    group.addoption(
        "--segbench-malloc",
        choices=MALLOC_MODES,
        default="steady",
        help="steady: pin glibc's mmap and trim thresholds for the session, so PyTorch's "
        "per-window allocations cost the same in every round whatever ran before (it moved one "
        "case's speed-up between 1.12x and 1.46x); system: glibc's adaptive defaults "
        "(default: steady)",
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
    malloc: str

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
            malloc=config.getoption("segbench_malloc"),
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
        self.malloc = configure_malloc(self.options.malloc)  # before any volume or window
        try:
            self.bench = _apply_overrides(load_config(self.options.config_path), self.options)
            if self.options.data is not None:
                self.cases: list[Case] = folder_cases(self.options.data)
            else:
                self.cases = builtin_cases(self.options.suite, self.options.shared_data)
            self.baselines = (
                {}
                if self.options.baseline is None
                else load_baselines(self.options.baseline, self.malloc)
            )
        except SegbenchError as exc:
            raise pytest.UsageError(str(exc)) from exc
        self._runtime: Runtime | None = None
        self._runtime_error: Exception | None = None
        self._pairs: dict[str, PairedRun] = {}
        self.suite_gate: GateResult | None = None
        self.summaries: dict[str, CaseSummary] = {}
        self.worker_rows: dict[str, TableRow] = {}  # rows of pytest-xdist workers
        self.suite: list[str] | None = None  # case ids that reached the splitter
        self.selected: list[str] = []  # case ids this session runs
        self._set_aside: dict[tuple[str, str], pytest.Item] = {}

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
            # with pytest-xdist's --dist loadgroup, a case's two tests go to one worker
            xdist = metafunc.config.pluginmanager.hasplugin("xdist")
            params = [
                pytest.param(c, marks=[pytest.mark.xdist_group(c.id)] if xdist else [])
                for c in self.cases
            ]
            metafunc.parametrize("segbench_case", params, ids=[c.id for c in self.cases])

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        """Mark the per-volume tests ``segbench`` and order them case by case, before every
        other plugin selects (-k, -m, pytest-split); afterwards, bring back the candidates set
        aside by :meth:`before_split` whose reference stayed, and order again so that each
        case's reference runs right before its candidate, in the same machine state."""
        for item in items:
            if _case_of(item) is not None:
                item.add_marker(pytest.mark.segbench)
        self._order(items)
        result = yield
        references = {_pair_key(i) for i in items if _role_of(i) == "reference"}
        back = [c for key, c in self._set_aside.items() if key in references]
        gone = [c for key, c in self._set_aside.items() if key not in references]
        self._set_aside = {}
        items.extend(back)
        if gone:  # their reference went to another shard: so do they
            config.hook.pytest_deselected(items=gone)
        self._order(items)
        self.selected = list(dict.fromkeys(c.id for i in items if (c := _case_of(i))))
        if self.suite is None:  # before_split did not run
            self.suite = list(self.selected)
        return result

    def before_split(self, items: list[pytest.Item]) -> None:
        """Called right before the splitter (the module's ``pytest_collection_modifyitems``):
        note the suite, and set aside every candidate whose reference is also selected, so that
        the splitter places cases (by their reference), not single tests. The candidates set
        aside are not reported deselected: the session's wrapper brings them back or does."""
        self.suite = list(dict.fromkeys(c.id for i in items if (c := _case_of(i))))
        references = {_pair_key(i) for i in items if _role_of(i) == "reference"}
        keep: list[pytest.Item] = []
        for item in items:
            if _role_of(item) == "candidate" and _pair_key(item) in references:
                self._set_aside[_pair_key(item)] = item
            else:
                keep.append(item)
        items[:] = keep

    def _order(self, items: list[pytest.Item]) -> None:
        """Sort the per-volume tests, in the slots they occupy, by case, reference first."""
        order = {c.id: i for i, c in enumerate(self.cases)}
        slots: list[int] = []
        ours: list[tuple[int, int, int, pytest.Item]] = []
        for index, item in enumerate(items):
            case = _case_of(item)
            if case is not None:
                slots.append(index)
                role = 0 if _role_of(item) == "reference" else 1
                ours.append((order.get(case.id, 0), role, len(ours), item))
        for slot, (_, _, _, item) in zip(slots, sorted(ours, key=lambda t: t[:3]), strict=True):
            items[slot] = item

    # saved runs: the settings fingerprint -----------------------------------------------------
    def fingerprint(self, config: pytest.Config) -> dict[str, Any]:
        """The ``"segbench"`` block of a saved run: everything that must be equal for shards to
        make one gate decision (``settings``), and which cases this session ran. Values that
        need the runtime are ``None`` when no case built it."""
        runtime = self._runtime
        card = runtime.card if runtime is not None else None
        versions: dict[str, str | None] = {"segbench": SEGBENCH_VERSION}
        for module in VERSIONED:
            versions[module] = _version(module)
        splits, group = config.getoption("splits", None), config.getoption("group", None)
        return {
            "format": FINGERPRINT_FORMAT,
            "settings": {
                "model": card.name if card is not None else None,
                "weights_sha256": runtime.weights_sha256 if runtime is not None else None,
                "card": {
                    "spacing": list(card.spacing),
                    "patch_size": list(card.patch_size),
                    "tile_step": card.tile_step,
                    "classes": card.num_classes,
                }
                if card is not None
                else None,
                "onnx": {
                    "source": runtime.onnx_source,
                    "sha256": sha256_file(runtime.onnx_path) if runtime.onnx_path else None,
                }
                if runtime is not None
                else None,
                "config_sha256": self.bench.digest(),
                "config": self.bench.settings(),
                "versions": versions,
                "options": {
                    "injection": self.options.injection.describe(),
                    "baseline": self.options.baseline.name if self.options.baseline else None,
                    "max_voxels": self.options.max_voxels,
                    "require_gpu": self.options.require_gpu,
                    "malloc": self.malloc,
                },
            },
            "suite": self.suite if self.suite is not None else [c.id for c in self.cases],
            "cases": self.selected,
            "shard": {"splits": splits, "group": group} if splits and group else None,
            "model_option": self.options.model,
            "config_source": Path(self.bench.source).name,
        }

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_json(
        self, config: pytest.Config, output_json: dict[str, Any]
    ) -> None:
        """Add the ``"segbench"`` block, and the machine to each case's extra_info (a merged
        run keeps, per case, the machine that measured it)."""
        output_json["segbench"] = self.fingerprint(config)
        machine = machine_label(output_json.get("machine_info"))
        for bench in output_json.get("benchmarks") or []:
            info = bench.get("extra_info") if isinstance(bench, dict) else None
            if isinstance(info, dict) and info.get("role") in ROLES:
                info.setdefault("machine", machine)

    # the table, also under pytest-xdist ------------------------------------------------------
    def rows(self) -> list[TableRow]:
        """The table's rows: this process's cases and those reported by xdist workers."""
        rows = {case: TableRow.from_summary(s) for case, s in self.summaries.items()}
        rows.update(self.worker_rows)
        order = {c.id: i for i, c in enumerate(self.cases)}
        return [rows[c] for c in sorted(rows, key=lambda c: (order.get(c, len(order)), c))]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: send the rows to the controller
            workeroutput["segbench_rows"] = [
                TableRow.from_summary(s).as_dict() for s in self.summaries.values()
            ]
            return
        self.suite_gate = check_suite_speedup(
            {
                case: (s.speedup, s.baseline_speedup)
                for case, s in self.summaries.items()
                if s.speedup is not None and s.baseline_speedup is not None
            },
            self.bench.gates.suite_speedup_drop_max,
        )
        if self.suite_gate is not None and not self.suite_gate.passed and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist's controller: collect a finished worker's rows."""
        for data in getattr(node, "workeroutput", {}).get("segbench_rows", []):
            row = TableRow.from_dict(data)
            self.worker_rows[row.case] = row

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        rows = self.rows()
        if not rows:
            return
        profiles = self.bench.reference.backend.value, self.bench.candidate.backend.value
        terminalreporter.write_sep(
            "=",
            f"segbench: {self.options.model} model, "
            f"{profiles[0]} (reference) vs {profiles[1]} (candidate)",
        )
        terminalreporter.write_line(summary_table(rows, *profiles))
        timing = self.bench.timing
        terminalreporter.write_line(
            timing_line(
                {
                    "estimator": timing.estimator,
                    "rounds": timing.rounds,
                    "warmup_rounds": timing.warmup_rounds,
                },
                self.bench.source,
                timed=not _benchmarks_disabled(terminalreporter.config),
            )
            + (f"; baseline {self.options.baseline}" if self.options.baseline else "")
            + f"; malloc {self.malloc}"
        )
        if self.suite_gate is not None:
            verdict = "ok" if self.suite_gate.passed else "FAIL"
            terminalreporter.write_line(f"{verdict} suite_speedup: {self.suite_gate.message}")
        if self.options.injection.active:
            terminalreporter.write_line(
                f"INJECTED into the candidate: {self.options.injection.describe()}"
            )


def load_baselines(path: Path, malloc: str | None = None) -> dict[str, BaselineSpeedup]:
    """Per-case speed-ups of a saved run, refused when it was measured on another CPU type:
    the ratio of two backends depends on the CPU (vector units, caches), not only on the code;
    likewise refused when ``malloc`` (this session's, see :mod:`segbench.allocator`) differs
    from the run's (runs saved before the option ran with glibc's defaults: ``system``)."""
    from segbench.runs import load_run

    run = load_run(path)
    options = run.segbench.get("settings", {}).get("options", {}) if run.segbench else {}
    saved = options.get("malloc", "system") if isinstance(options, dict) else "system"
    if malloc is not None and saved != malloc:
        raise ConfigError(
            f"--segbench-baseline {path}: saved with --segbench-malloc {saved!r}, but this "
            f"session runs {malloc!r}; the allocator moves PyTorch's latency. Fix: save a "
            f"baseline with this session's --segbench-malloc, or pass --segbench-malloc={saved}"
        )
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


def _benchmarks_disabled(config: pytest.Config) -> bool:
    """Whether pytest-benchmark times nothing (--benchmark-disable, or switched off by xdist)."""
    bench = getattr(config, "_benchmarksession", None)
    return bool(getattr(bench, "disabled", False))


def _version(module: str) -> str | None:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        if module == "onnxruntime":  # onnxruntime-gpu installs the same module
            try:
                return importlib.metadata.version("onnxruntime-gpu")
            except importlib.metadata.PackageNotFoundError:
                return None
        return None


def _role_of(item: pytest.Item) -> str | None:
    """``reference`` or ``candidate`` for the suite's two test functions, else ``None``."""
    if _case_of(item) is None:
        return None
    return ROLE_TESTS.get(getattr(item, "originalname", "") or item.name.split("[")[0])


def _pair_key(item: pytest.Item) -> tuple[str, str]:
    """The test's container (module or class) and case: a reference and its candidate share it."""
    case = _case_of(item)
    parent = item.parent.nodeid if item.parent is not None else ""
    return parent, case.id if case is not None else ""


def _case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("segbench_case") if callspec is not None else None
    return case if isinstance(case, Case) else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "segbench: a per-volume regression case of segbench")
    if config.pluginmanager.get_plugin(SESSION_NAME) is None:
        config.pluginmanager.register(SegbenchSession(config), SESSION_NAME)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Right before pytest-split selects: set aside the candidates (see
    :meth:`SegbenchSession.before_split`).

    pytest-split selects in the ``trylast`` ``pytest_collection_modifyitems`` of an object it
    registers in ``pytest_configure``. pluggy calls ``trylast`` implementations in the order
    they were registered, and this module is registered when plugins load, before any
    ``pytest_configure``: so this runs after -k, -m and every ordinary plugin, and before the
    split. The session's wrapper then runs after all of them."""
    plugin = config.pluginmanager.get_plugin(SESSION_NAME)
    if isinstance(plugin, SegbenchSession):
        plugin.before_split(items)


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
