"""The ``segbench`` option group: every ``--segbench-NAME`` option is also the ini key
``segbench_NAME``, and both go through the same validating parser. :class:`Options` is the
result, resolved once: command line, then ini file, then default.

Paths given on the command line are relative to the working directory, ini paths to the
rootdir. A bad ini value is a usage error that names the key.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from segbench.errors import ModelError
from segbench.inputs.cases import SUITES
from segbench.inputs.limits import DEFAULT_MAX_VOXELS
from segbench.models import BUILTIN, parse_model_name
from segbench.settings.config import BenchConfig
from segbench.settings.injection import Injection, parse_injection
from segbench.settings.kinds import MALLOC_MODES

CONFIG_NAME = "benchmarks.json"
GROUP = "segbench"
RECORD_PATHS = ("relative", "absolute")
PROGRESS_MODES = ("auto", "on", "off")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def injection_item(text: str) -> str:
    try:
        parse_injection([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"choose one of {', '.join(choices)}, got {text!r}")
        return text

    return check


def model_name(text: str) -> str:
    try:
        parse_model_name(text)
    except ModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def flag(text: str) -> bool:
    """An ini flag: true/false, yes/no, on/off, 1/0."""
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


@dataclass(frozen=True)
class Spec:
    """One option: ``--segbench-<name>`` and the ini key ``segbench_<name>``."""

    name: str  # with underscores
    metavar: str | None  # None: a flag without a value
    help: str
    parse: Callable[[str], Any] = str
    repeat: bool = False  # the option may be given several times (ini: one value a line)

    @property
    def option(self) -> str:
        return "--segbench-" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        return f"segbench_{self.name}"


SPECS = (
    Spec(
        "suite",
        "NAME",
        "built-in cases: quick (4 phantoms + the shared example CT), seed20 (the study's 20 "
        "grids) or none (default: quick)",
        one_of(SUITES),
    ),
    Spec(
        "model",
        "MODEL",
        f"model to benchmark: {', '.join(BUILTIN)}, or nnunet:PATH, "
        "torchscript:MODEL.pt[:CARD.json], entrypoint:pkg.mod:factory, totalsegmentator:NAME "
        "(TotalSegmentator's installed weights: fast, fastest, total_organs, ...) "
        "(default: demo)",
        model_name,
    ),
    Spec(
        "config",
        "FILE",
        f"gate file (default: {CONFIG_NAME} in the rootdir if present, else built-ins)",
    ),
    Spec(
        "data",
        "DIR",
        "folder whose .nii/.nii.gz files and DICOM series subfolders become cases; "
        "<case>_seg.nii.gz beside a case is its ground truth (default: none)",
    ),
    Spec(
        "glob",
        "PATTERN",
        "keep only the cases of --segbench-data whose path relative to it matches this glob "
        "(* and ? within a folder name, **/ any folders: 'chest/*.nii.gz', "
        "'**/*_0000.nii.gz') (default: all)",
    ),
    Spec(
        "shared_data",
        "DIR",
        "folder holding ct/example_ct_sm.nii.gz (default: ../shared/data beside the rootdir, "
        "or $SEGBENCH_SHARED_DATA)",
    ),
    Spec(
        "cache_dir",
        "DIR",
        "where phantoms and ONNX exports are cached (default: pytest's cache dir)",
    ),
    Spec(
        "onnx",
        "FILE",
        "use this ONNX file as the candidate instead of exporting the model "
        "(is my production model.onnx still equivalent to my checkpoint?)",
    ),
    Spec(
        "rounds",
        "N",
        "timed pairs per case, exactly (no adaptive rounds; default: benchmarks.json, 3 and up)",
        positive_int,
    ),
    Spec(
        "warmup",
        "N",
        "warm-up rounds before timing (default: benchmarks.json, 1)",
        non_negative_int,
    ),
    Spec(
        "budget",
        "SECONDS",
        "seconds of interleaved pairs per case before adaptive rounds stop (default: "
        "benchmarks.json timing.budget_s, 25); a baseline saved with more pairs sharpens the "
        "verdicts against it",
        non_negative_float,
    ),
    Spec(
        "busy_max",
        "FRACTION",
        "a pair during which other processes took more than this share of the cores is "
        "contended: left out of the speed-up and re-measured within the budget (default: "
        "benchmarks.json timing.busy_max, 0.015; 1 judges no pair contended)",
        fraction,
    ),
    Spec(
        "dice_min",
        "FRACTION",
        "override the mean-Dice gate for every case (default: benchmarks.json)",
        fraction,
    ),
    Spec(
        "speedup_min",
        "RATIO",
        "override the speed-up gate for every case (default: benchmarks.json)",
        non_negative_float,
    ),
    Spec(
        "max_voxels",
        "N",
        "refuse volumes with more voxels than this, up front, with a memory estimate "
        f"(default: {DEFAULT_MAX_VOXELS})",
        positive_int,
    ),
    Spec(
        "report_dir",
        "DIR",
        "where a case that fails the Dice gate gets a PNG of its worst slice "
        "(default: reports/segbench in the rootdir; needs matplotlib, segbench[report])",
    ),
    Spec(
        "require_gpu",
        None,
        "fail when the candidate does not run on a GPU provider (onnxruntime-gpu falls back "
        "to the CPU silently when CUDA libraries are missing)",
        flag,
    ),
    Spec(
        "baseline",
        "FILE",
        "a saved run (--benchmark-json / --benchmark-autosave file) of the same CPU type: "
        "each case's speed-up must stay within speedup_drop_max of its speed-up there, and the "
        "suite's (geometric mean over the cases) within suite_speedup_drop_max (default: none, "
        "only speedup_min applies)",
    ),
    Spec(
        "inject",
        "KIND=VALUE",
        "inject a regression into the candidate, to see a gate fail (repeatable; ini: one a "
        "line): delay=SECONDS per window, slowdown=FRACTION (0.3: 30%% slower), perturb=SCALE "
        "(noise on the last conv's ONNX weights), shift=VOXELS (window output misplaced), "
        "no-gaussian (default: none)",
        injection_item,
        repeat=True,
    ),
    Spec(
        "malloc",
        "MODE",
        "steady: pin glibc's mmap and trim thresholds for the session, so PyTorch's per-window "
        "allocations cost the same in every round whatever ran before; system: glibc's "
        "adaptive defaults (default: steady)",
        one_of(MALLOC_MODES),
    ),
    Spec(
        "record_paths",
        "MODE",
        "how a saved run (--benchmark-json) names a case's files: relative (to --segbench-data, "
        "or the built-in suite's name for phantoms) or absolute (default: relative)",
        one_of(RECORD_PATHS),
    ),
    Spec(
        "progress",
        "MODE",
        "a live line per case and round (role, round, windows done): auto (in a terminal, "
        "not with -q; one line per round when the output is not a terminal), on, or off "
        "(default: auto)",
        one_of(PROGRESS_MODES),
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Declare every option of the group, and its ini key."""
    group = parser.getgroup(GROUP, "segbench: PyTorch vs ONNX Runtime segmentation gates")
    for spec in SPECS:
        if spec.metavar is None:
            group.addoption(spec.option, action="store_true", default=None, help=spec.help)
        elif spec.repeat:
            group.addoption(
                spec.option,
                action="append",
                type=spec.parse,
                default=[],
                metavar=spec.metavar,
                help=spec.help,
            )
        else:
            group.addoption(
                spec.option, type=spec.parse, default=None, metavar=spec.metavar, help=spec.help
            )
        ini_help = spec.help.replace("%%", "%")
        if spec.repeat:
            parser.addini(spec.key, ini_help, type="linelist", default=None)
        else:
            parser.addini(spec.key, ini_help, default=None)


_BY_NAME = {spec.name: spec for spec in SPECS}


def _value(config: pytest.Config, name: str) -> tuple[Any, str | None]:
    """The parsed value of option ``name`` and where it came from (``"cli"``, ``"ini"``, or
    ``None`` when neither sets it)."""
    spec = _BY_NAME[name]
    given = config.getoption(spec.key)
    if given not in (None, []):
        return given, "cli"
    raw = config.getini(spec.key)
    if raw in (None, "", []):
        return None, None
    items = [str(line) for line in raw] if spec.repeat else [str(raw)]
    parsed = []
    for item in items:
        try:
            parsed.append(spec.parse(item.strip()))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            where = config.inipath or "the ini file"
            raise pytest.UsageError(
                f"{spec.key} = {item!r} in {where}: {exc or 'not a valid value'}. Fix the "
                f"value of {spec.key} (as for {spec.option}={spec.metavar or ''})".rstrip("=")
            ) from None
    return (parsed if spec.repeat else parsed[0]), "ini"


@dataclass(frozen=True)
class Options:
    """Every segbench option, resolved once: command line, then ini file, then default."""

    suite: str
    model: str
    config_path: Path | None
    data: Path | None
    glob: str | None
    shared_data: Path | None
    cache_dir: Path
    onnx: Path | None
    rounds: int | None
    warmup: int | None
    budget: float | None
    busy_max: float | None
    dice_min: float | None
    speedup_min: float | None
    baseline: Path | None
    injection: Injection
    max_voxels: int
    report_dir: Path
    require_gpu: bool
    malloc: str
    record_paths: str = "relative"
    progress: str = "auto"

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        root = config.rootpath

        def get(name: str) -> Any:
            return _value(config, name)[0]

        def path(name: str) -> Path | None:
            value, source = _value(config, name)
            if value is None:
                return None
            return Path(value).resolve() if source == "cli" else (root / str(value)).resolve()

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
            if cache_provider:
                cache = Path(cache_provider.mkdir("segbench"))
            else:
                from segbench.inputs.phantoms import default_cache_dir

                cache = default_cache_dir()
        max_voxels = get("max_voxels")
        return cls(
            suite=get("suite") or "quick",
            model=get("model") or "demo",
            config_path=config_path,
            data=path("data"),
            glob=get("glob"),
            shared_data=shared if shared.is_dir() else None,
            cache_dir=cache,
            onnx=path("onnx"),
            rounds=get("rounds"),
            warmup=get("warmup"),
            budget=get("budget"),
            busy_max=get("busy_max"),
            dice_min=get("dice_min"),
            speedup_min=get("speedup_min"),
            baseline=path("baseline"),
            injection=parse_injection(get("inject") or []),
            max_voxels=DEFAULT_MAX_VOXELS if max_voxels is None else max_voxels,
            report_dir=path("report_dir") or root / "reports" / "segbench",
            require_gpu=bool(get("require_gpu")),
            malloc=get("malloc") or "steady",
            record_paths=get("record_paths") or "relative",
            progress=get("progress") or "auto",
        )

    def apply(self, cfg: BenchConfig) -> BenchConfig:
        """``cfg`` with the command line's timing and gate overrides."""
        timing = cfg.timing
        if self.rounds is not None:
            timing = replace(timing, rounds=self.rounds, max_rounds=self.rounds)
        if self.warmup is not None:
            timing = replace(timing, warmup_rounds=self.warmup)
        if self.budget is not None:
            timing = replace(timing, budget_s=self.budget)
        if self.busy_max is not None:
            timing = replace(timing, busy_max=self.busy_max)
        gate_overrides: dict[str, Any] = {
            k: v
            for k, v in (("dice_min", self.dice_min), ("speedup_min", self.speedup_min))
            if v is not None
        }
        return replace(
            cfg,
            timing=timing,
            gates=replace(cfg.gates, **gate_overrides),
            case_gates={k: replace(g, **gate_overrides) for k, g in cfg.case_gates.items()},
        )
