"""Checks of a decoded saved run before anything reads it: nesting depth, sizes, and the type of
every key that segbench reads from a benchmark's ``extra_info`` (and pytest-benchmark's
``stats.min``) and from the run's ``"segbench"`` block.

A value of the wrong kind is refused, never replaced: a latency that is NaN, infinite,
negative or a string would otherwise give way to another figure (``stats.min``), a gate result
that is the string ``"false"`` would read as passed, an integer beyond a float's range would
crash the arithmetic. :func:`check_document` raises :class:`Malformed` with the dotted key, the
problem and the fix; :mod:`segbench.results.runs` turns it into a
:class:`~segbench.results.runs.RunFileError` naming the file. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from segbench.settings.config import Gates
from segbench.settings.cpu import UNKNOWN
from segbench.settings.kinds import ROLES

MAX_DEPTH = 32  # nesting levels of a saved run (pytest-benchmark's and segbench's use ~8)
MAX_TEXT = 4096  # characters of a name or another saved string
MAX_ITEMS = 1_000_000  # entries of one list or mapping
MAX_INT = 2**53  # beyond it an integer is not a count of anything segbench saves
REWRITE = "save the run again with `pytest --benchmark-only --benchmark-json=FILE`"


class Malformed(Exception):
    """A saved run's key of the wrong kind: ``key`` (dotted), ``problem``, ``fix``."""

    def __init__(self, key: str, problem: str, fix: str = REWRITE) -> None:
        key = key if len(key) <= 80 else key[:60] + "..." + key[-17:]
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"key {key}: {problem}")


def _shown(value: Any) -> str:
    """A short, one-line description of a refused value (its type and the start of it)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    kind = type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, Mapping | list):
        return f"a {'mapping' if isinstance(value, Mapping) else 'list'}"
    text = repr(value)
    return f"{kind} {text[:40] + '...' if len(text) > 40 else text}"


def check_depth(data: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse a document nested deeper than ``limit`` levels or with a list or mapping of more
    than :data:`MAX_ITEMS` entries (iterative: any depth is measured without recursion)."""
    stack: list[tuple[Any, str, int]] = [(data, "(top level)", 0)]
    while stack:
        value, key, depth = stack.pop()
        if isinstance(value, Mapping | list):
            if depth >= limit:
                raise Malformed(key, f"nests deeper than {limit} levels", REWRITE)
            if len(value) > MAX_ITEMS:
                raise Malformed(key, f"holds {len(value)} entries, more than {MAX_ITEMS}")
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for k, v in items:
                sub = f"{key}.{k}" if isinstance(value, Mapping) else f"{key}[{k}]"
                stack.append((v, sub if depth else str(k), depth + 1))
        elif isinstance(value, str) and len(value) > 16 * MAX_TEXT:
            raise Malformed(key, f"is a string of {len(value)} characters")


# one check per kind of value; each raises Malformed or returns ------------------------------


def _number(low: float | None, nan_ok: bool = False) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Malformed(key, f"must be a number, not {_shown(value)}")
        if isinstance(value, int) and abs(value) >= MAX_INT:
            raise Malformed(key, f"must be a number in range, not {_shown(value)}")
        if not math.isfinite(value) and not (nan_ok and math.isnan(value)):
            raise Malformed(key, f"must be a finite number, not {value}")
        if low is not None and value < low:
            raise Malformed(key, f"must be >= {low:g}, not {value}")

    return check


def _integer(low: int = 0) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise Malformed(key, f"must be an integer, not {_shown(value)}")
        if not low <= value < MAX_INT:
            raise Malformed(key, f"must be an integer from {low} to 2**53, not {_shown(value)}")

    return check


def _text(key: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise Malformed(key, f"must be a string, not {_shown(value)}")
    if len(value) > MAX_TEXT:
        raise Malformed(key, f"is a string of {len(value)} characters (at most {MAX_TEXT})")


def _mapping(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise Malformed(key, f"must be a mapping, not {_shown(value)}")


def _list_of(item: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise Malformed(key, f"must be a list, not {_shown(value)}")
        for i, v in enumerate(value):
            if v is None:
                raise Malformed(f"{key}[{i}]", "is null")
            item(f"{key}[{i}]", v)

    return check


def _mapping_of(item: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        _mapping(key, value)
        for k, v in (value or {}).items():
            _text(f"{key}.{k}", k)
            item(f"{key}.{k}", v)

    return check


def _fields(key: str, value: Any, check: Callable[[str, Any], None], names: Sequence[str]) -> None:
    """``value`` a mapping (or absent) whose ``names`` each pass ``check`` (or are absent)."""
    _mapping(key, value)
    fields = value if isinstance(value, Mapping) else {}
    for name in names:
        check(f"{key}.{name}", fields.get(name))


def _boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise Malformed(key, f"must be true or false, not {_shown(value)}")


def _gate_result(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise Malformed(
            key,
            f"must be true or false, not {_shown(value)} (a gate result that is not a boolean "
            "cannot be read as passed)",
        )


def _contention(key: str, value: Any) -> None:
    """The contention figures (:mod:`segbench.results.contention`), where saved."""
    _fields(key, value, _integer(), ("pairs", "left_out", "rerun"))
    _fields(key, value, _number(0.0), ("busy_max", "waited_s", "load_1m"))
    _fields(key, value, _list_of(_number(0.0)), ("left_out_speedups",))
    _fields(key, value, _list_of(_list_of(_number(0.0))), ("per_pair",))
    _fields(key, value, _mapping_of(_number(0.0)), ("cpu_share", "others_share", "steal_share"))


LATENCY = _number(0.0)
FIGURE = _number(None)
RATIO = _number(0.0)

EXTRA_INFO: dict[str, Callable[[str, Any], None]] = {
    **dict.fromkeys(
        ("case", "candidate_name", "model", "backend", "provider", "estimator", "machine"),
        _text,
    ),
    **dict.fromkeys(("injected", "verdict", "shard", "precision"), _text),
    "shape": _list_of(_integer()),
    "spacing": _list_of(FIGURE),
    "voxels": _integer(),
    "threads": _integer(),
    **dict.fromkeys(("latency_s", "reference_s", "candidate_s"), LATENCY),
    **dict.fromkeys(("speedup", "baseline_speedup", "inference_gflops"), RATIO),
    **dict.fromkeys(
        ("mean_dice", "flipped_fraction", "gated_class_dice_min", "dice_vs_ground_truth"), FIGURE
    ),
    "max_abs_logit_diff": _number(None, nan_ok=True),  # NaN logits are saved as NaN
    "class_dice": _mapping_of(FIGURE),
    "gates": _mapping_of(_gate_result),
    "stages_s": _mapping_of(LATENCY),
    "pair_speedups": _list_of(_number(0.0)),
    "baseline_pair_speedups": _list_of(_number(0.0)),
    "speedup_interval": _mapping,
    "baseline_change": _mapping,
    "contention": _contention,
}


def check_benchmark(bench: Any, key: str) -> None:
    """One entry of ``benchmarks``: a mapping; with segbench's ``extra_info`` (a ``role``),
    every key segbench reads of the kind it reads, and ``stats.min`` a latency."""
    if not isinstance(bench, Mapping):
        raise Malformed(key, f"must be a mapping (one benchmark), not {_shown(bench)}")
    info = bench.get("extra_info")
    _mapping(f"{key}.extra_info", info)
    if not isinstance(info, Mapping) or info.get("role") not in ROLES:
        return
    for name in ("group", "name"):
        _text(f"{key}.{name}", bench.get(name))
    for name, check in EXTRA_INFO.items():
        check(f"{key}.extra_info.{name}", info.get(name))
    for name in ("speedup_interval", "baseline_change"):
        FIGURE(f"{key}.extra_info.{name}.confidence", (info.get(name) or {}).get("confidence"))
    stats = bench.get("stats")
    _mapping(f"{key}.stats", stats)
    LATENCY(f"{key}.stats.min", (stats or {}).get("min"))


def _gate_value(key: str, value: Any) -> None:
    """A saved gate threshold: of the kind of :class:`Gates`' field (unknown keys pass): a
    boolean, a number, or a mapping of numbers (``class_nsd_tolerance_mm``)."""
    name = key.rsplit(".", 1)[-1]
    if name not in {f.name for f in fields(Gates)}:
        return
    default = getattr(Gates(), name)
    if isinstance(default, bool):
        _boolean(key, value)
    elif isinstance(default, Mapping):
        _mapping_of(FIGURE)(key, value)
    elif default is not None:
        if value is None:
            raise Malformed(key, "is null; a gate threshold must be a number")
        FIGURE(key, value)


def _merged_record(key: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not value:
        raise Malformed(
            key,
            f"must be a record of one merged shard (file, machine, cases), not {_shown(value)}",
            "merge the shards again with `segbench merge SHARD.json... -o MERGED.json`",
        )
    for name in ("file", "machine"):
        if not isinstance(value.get(name), str):
            raise Malformed(f"{key}.{name}", f"must be a string, not {_shown(value.get(name))}")
        _text(f"{key}.{name}", value[name])
    if not isinstance(value.get("cases"), list):
        raise Malformed(f"{key}.cases", f"must be a list, not {_shown(value.get('cases'))}")
    _list_of(_text)(f"{key}.cases", value["cases"])
    for name in ("group", "splits", "index"):
        _integer()(f"{key}.{name}", value.get(name))
    _text(f"{key}.datetime", value.get("datetime"))
    _mapping(f"{key}.machine_info", value.get("machine_info"))
    _machine(f"{key}.segbench_machine", value.get("segbench_machine"))


def _machine(key: str, value: Any) -> None:
    """A ``"machine"`` value: ``cpu_flags`` a mapping of booleans and ``openvino`` a mapping,
    either ``"unknown"`` where not read (see :func:`segbench.plugin.fingerprint.machine_facts`)."""
    _mapping(key, value)
    value = value or {}
    if value.get("cpu_flags") != UNKNOWN:
        _mapping_of(_boolean)(f"{key}.cpu_flags", value.get("cpu_flags"))
    if value.get("openvino") != UNKNOWN:
        _mapping(f"{key}.openvino", value.get("openvino"))
        precision = (value.get("openvino") or {}).get("inference_precision")
        _text(f"{key}.openvino.inference_precision", precision)


def check_block(block: Any) -> None:
    """The run's ``"segbench"`` block: every key segbench reads, of the kind it reads (the
    schema: :mod:`segbench.results.runfile`)."""
    if block is None:
        return
    _mapping("segbench", block)
    _integer()("segbench.format", block.get("format"))
    for name in ("suite", "cases"):
        _list_of(_text)(f"segbench.{name}", block.get(name))
    _list_of(_integer())("segbench.missing_groups", block.get("missing_groups"))
    _list_of(_merged_record)("segbench.merged_from", block.get("merged_from"))
    for name in ("config_source", "model_option"):
        _text(f"segbench.{name}", block.get(name))
    _machine("segbench.machine", block.get("machine"))
    _fields("segbench.paths", block.get("paths"), _text, ("mode", "cases_from"))
    _fields("segbench.shard", block.get("shard"), _integer(), ("splits", "group"))
    settings = block.get("settings")
    _mapping("segbench.settings", settings)
    _check_settings(settings or {})


def _check_settings(settings: Mapping[str, Any]) -> None:
    _fields("segbench.settings.options", settings.get("options"), _text, ("injection", "malloc"))
    config = settings.get("config")
    _mapping("segbench.settings.config", config)
    config = config or {}
    for name in ("timing", "profiles", "cases"):
        _mapping(f"segbench.settings.config.{name}", config.get(name))
    _mapping_of(_gate_value)("segbench.settings.config.gates", config.get("gates"))
    _mapping_of(_mapping_of(_gate_value))("segbench.settings.config.cases", config.get("cases"))
    timing = config.get("timing") or {}
    for name in ("rounds", "max_rounds", "warmup_rounds"):
        _integer()(f"segbench.settings.config.timing.{name}", timing.get(name))
    _text("segbench.settings.config.timing.estimator", timing.get("estimator"))
    FIGURE("segbench.settings.config.timing.confidence", timing.get("confidence"))
    profiles = config.get("profiles") or {}
    _mapping("segbench.settings.config.profiles.candidates", profiles.get("candidates"))


def check_document(data: Any) -> None:
    """The whole decoded run (a mapping with a ``benchmarks`` list, checked by the caller):
    depth and sizes, each benchmark, the ``"segbench"`` block, ``machine_info``,
    ``commit_info`` and ``datetime``."""
    check_depth(data)
    for i, bench in enumerate(data["benchmarks"]):
        check_benchmark(bench, f"benchmarks[{i}]")
    check_block(data.get("segbench"))
    machine = data.get("machine_info")
    _mapping("machine_info", machine)
    cpu = (machine or {}).get("cpu")
    _mapping("machine_info.cpu", cpu)
    for name in ("brand_raw",):
        _text(f"machine_info.cpu.{name}", (cpu or {}).get(name))
    _integer()("machine_info.cpu.count", (cpu or {}).get("count"))
    for name in ("node", "machine", "python_version"):
        _text(f"machine_info.{name}", (machine or {}).get(name))
    _mapping("commit_info", data.get("commit_info"))
    _text("commit_info.id", (data.get("commit_info") or {}).get("id"))
    _text("datetime", data.get("datetime"))
