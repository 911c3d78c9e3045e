"""The option group: every ``--segbench-*`` option is also an ini key, parsed by the same
validator from both sources; a bad ini value names its key; help texts name their metavar."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from segbench.inputs.limits import DEFAULT_MAX_VOXELS
from segbench.plugin.options import SPECS, Options
from segbench.settings.injection import Injection


class _Config:
    """What Options.from_config reads of a pytest.Config: options, ini values, the rootdir."""

    def __init__(self, root: Path, cli: dict[str, Any], ini: dict[str, Any]) -> None:
        self.rootpath = root
        self.inipath = root / "pytest.ini"
        self.cache = None
        self._cli = cli
        self._ini = ini

    def getoption(self, name: str, default: Any = None) -> Any:
        spec = next(s for s in SPECS if s.key == name)
        return self._cli.get(name, [] if spec.repeat else None)

    def getini(self, name: str) -> Any:
        spec = next(s for s in SPECS if s.key == name)
        return self._ini.get(name, [] if spec.repeat else "")


def _options(tmp_path: Path, cli: dict[str, Any] | None = None, **ini: Any) -> Options:
    config = _Config(tmp_path, cli or {}, {f"segbench_{k}": v for k, v in ini.items()})
    return Options.from_config(config)  # type: ignore[arg-type]


def test_ini_values_go_through_the_option_parsers(tmp_path: Path) -> None:
    opts = _options(
        tmp_path,
        rounds="5",
        warmup="0",
        dice_min="0.9",
        speedup_min="1.5",
        max_voxels="1000",
        require_gpu="true",
        malloc="system",
        inject=["slowdown=0.3", "shift=1"],
        baseline="runs/base.json",
        report_dir="out",
        cache_dir="cache",
        model="ts-fast",
        suite="none",
    )
    assert (opts.rounds, opts.warmup, opts.dice_min, opts.speedup_min) == (5, 0, 0.9, 1.5)
    assert opts.max_voxels == 1000 and opts.require_gpu and opts.malloc == "system"
    assert opts.injection == Injection(slowdown=0.3, shift=1)
    assert opts.baseline == (tmp_path / "runs" / "base.json").resolve()  # ini: rootdir-relative
    assert opts.report_dir == (tmp_path / "out").resolve()
    assert opts.cache_dir == (tmp_path / "cache").resolve()
    assert (opts.model, opts.suite) == ("ts-fast", "none")


def test_defaults_and_the_command_line_wins(tmp_path: Path) -> None:
    opts = _options(tmp_path, cache_dir="c")
    assert opts.rounds is None and opts.max_voxels == DEFAULT_MAX_VOXELS
    assert opts.malloc == "steady" and not opts.require_gpu and not opts.injection.active
    assert (opts.model, opts.suite) == ("demo", "quick")
    cli = {"segbench_rounds": 2, "segbench_inject": ["delay=1"], "segbench_require_gpu": None}
    opts = _options(tmp_path, cli, cache_dir="c", rounds="7", inject=["shift=2"], require_gpu="0")
    assert opts.rounds == 2 and opts.injection == Injection(delay=1.0) and not opts.require_gpu


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("rounds", "0", "must be >= 1"),
        ("warmup", "x", "segbench_warmup = 'x'"),
        ("dice_min", "1.5", "must be in [0, 1]"),
        ("speedup_min", "-1", "must be >= 0"),
        ("max_voxels", "many", "segbench_max_voxels"),
        ("require_gpu", "maybe", "must be true or false"),
        ("malloc", "jemalloc", "choose one of steady, system"),
        ("suite", "all", "choose one of quick, seed20, none"),
        ("model", "unet9", "unknown model 'unet9'"),
        ("inject", ["slowdown=fast"], "slowdown needs a number"),
    ],
)
def test_bad_ini_value_is_a_usage_error_naming_the_key(
    tmp_path: Path, key: str, value: Any, needle: str
) -> None:
    with pytest.raises(pytest.UsageError, match=f"segbench_{key} = ") as info:
        _options(tmp_path, cache_dir="c", **{key: value})
    assert needle in str(info.value) and str(tmp_path / "pytest.ini") in str(info.value)


def test_every_option_has_an_ini_key_and_a_metavar_in_help(plugin_session: Any) -> None:
    result = plugin_session("--help", suite=None)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    out = result.stdout.str()
    options = set(re.findall(r"--segbench-[a-z-]+", out))
    keys = set(re.findall(r"^  (segbench_[a-z_]+) ", out, re.M))
    assert options == {s.option for s in SPECS}
    assert keys == {s.key for s in SPECS}
    assert "--segbench-data=DIR" in out and "SEGBENCH_DATA" not in out
    assert not re.search(r"\d\.\d+x", out)  # no measured speed-ups in help texts


def test_bad_ini_value_stops_the_session(plugin_session: Any) -> None:
    result = plugin_session("--collect-only", "-o", "segbench_rounds=0")
    assert result.ret != pytest.ExitCode.OK
    err = result.stderr.str()
    assert "segbench_rounds = '0'" in err and "must be >= 1" in err


def test_rounds_and_budget_override_the_timing(tmp_path: Path) -> None:
    from segbench.settings.config import BenchConfig

    timing = _options(tmp_path, rounds="20", budget="60").apply(BenchConfig()).timing
    assert (timing.rounds, timing.max_rounds, timing.budget_s) == (20, 20, 60.0)
    kept = _options(tmp_path).apply(BenchConfig()).timing
    assert kept == BenchConfig().timing
    with pytest.raises(Exception, match="must be >= 0"):
        _options(tmp_path, budget="-1")
