"""Gate thresholds, timing and the two pipeline profiles: ``benchmarks.json``, validated on load.

Layout of the file (every key optional; unknown keys and bad values are errors that name the
key and the file)::

    {"gates":    {"dice_min": .., "class_dice_min": .., "min_class_voxels": .., "speedup_min": ..,
                  "speedup_drop_max": .., "suite_speedup_drop_max": .., "inconclusive_fails": ..,
                  "confidence": .., "nsd_min": .., "nsd_tolerance_mm": ..,
                  "class_nsd_tolerance_mm": {"<class name>": mm}, "hd95_max_mm": ..,
                  "volume_diff_max_pct": .., "vanished_max": ..},
     "timing":   {"rounds": .., "warmup_rounds": .., "reference_rounds": .., "max_rounds": ..,
                  "budget_s": .., "precision": .., "estimator": "min" | "median",
                  "busy_max": .., "quiet_wait_s": ..},
     "profiles": {"reference": PROFILE, "candidate": PROFILE}
              or {"reference": PROFILE, "candidates": {"<name>": PROFILE, ...}},
     "cases":    {"<case id>": {<any gates key>}}}

    PROFILE = {"backend": "torch" | "onnx", "resample_order": 0-3, "tile_step": (0, 1] | null,
               "threads": int | null, "graph_level": "disable" | "basic" | "extended" | "all",
               "use_gaussian": true | false, "fit_patch": true | false,
               "mem_arena": true | false, "spinning": true | false,
               "precision": "fp32" | "fp16" | "bf16",
               "provider": "auto" | "cpu" | "openvino" | "cuda" | "tensorrt",
               "provider_options": {<option of that provider>: value}}

    ``fit_patch`` shrinks the window to a volume smaller than the patch (see
    :func:`segbench.pipeline.inference.fit_patch`); ``mem_arena`` is onnxruntime's CPU memory arena;
    ``spinning`` (onnx profiles only, default false) lets onnxruntime's thread pools spin
    between runs (see :class:`segbench.pipeline.backends.OrtBackend`);
    ``precision`` ``fp16`` (onnx profiles only) runs a float16 copy of the ONNX file (see
    :func:`segbench.pipeline.export.to_float16`), ``bf16`` (provider openvino only) sets
    OpenVINO's inference precision hint (see :func:`segbench.settings.providers.precision_options`;
    a machine without OpenVINO or bf16 instructions is refused when the session starts,
    :func:`segbench.settings.providers.check_precision`); ``provider`` and ``provider_options``
    (onnx profiles only) choose onnxruntime's execution provider (see
    :mod:`segbench.settings.providers`).

A profile may instead name the user's own deployment (see :mod:`segbench.bench.segmenters`)::

    PROFILE = {"pipeline": "package.module:factory" | "path/to/file.py:factory",
               "options": {..}, "labels": LABELS}
            | {"command": ["prog", "{input}", "{output}", ..], "timeout_s": .., "labels": LABELS}
    LABELS  = {"1": "spleen", ..} | "path/to/dataset.json" (see segbench.settings.labels)

``candidates`` names several candidates (names of ``[a-z0-9_-]``), each gated and benchmarked
against the one reference per case; it replaces ``candidate`` (both together are an error). A
profile's ``threads`` left unset takes the session's one thread count (see
:func:`segbench.bench.runtime.session_threads`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError
from segbench.settings.kinds import ESTIMATORS, GRAPH_LEVELS, PRECISIONS, BackendKind
from segbench.settings.pipeline import PipelineSettings
from segbench.settings.providers import check_options, parse_provider, precision_options


@dataclass(frozen=True)
class Gates:
    """Pass criteria for one case. Dice is candidate vs reference mask; speed-up is reference
    latency / candidate latency, end to end."""

    dice_min: float = 0.995
    class_dice_min: float = 0.99
    min_class_voxels: int = 1000
    speedup_min: float = 1.0
    speedup_drop_max: float = 0.3  # per case, vs a baseline run (--segbench-baseline)
    # the whole suite, vs the baseline: geometric mean over the cases of speed-up / baseline's
    suite_speedup_drop_max: float = 0.05
    # a verdict against the baseline that the pairs cannot settle (see segbench.scoring.stats)
    inconclusive_fails: bool = False
    confidence: float = 0.95  # of the speed-up intervals; one-sided for each verdict
    # with contended pairs left out, the clean pairs' systematic error allowed on top of the
    # interval (measured beside a neighbour in docs/gates.md)
    busy_bias: float = 0.05
    # agreement in millimetres (segbench.scoring.surface), classes of >= min_class_voxels
    # except vanished_max, which counts every class
    nsd_min: float = 0.99  # normalised surface Dice at nsd_tolerance_mm
    nsd_tolerance_mm: float = 1.0
    class_nsd_tolerance_mm: dict[str, float] = field(default_factory=dict, hash=False)
    hd95_max_mm: float = 5.0
    volume_diff_max_pct: float = 1.0
    vanished_max: int = 0  # classes in the reference's mask and not in the candidate's

    def nsd_tolerance(self, class_name: str, label: int) -> float:
        """NSD's tolerance (mm) for a class: ``class_nsd_tolerance_mm`` by name (or label
        number), else ``nsd_tolerance_mm``."""
        table = self.class_nsd_tolerance_mm
        return float(table.get(class_name, table.get(str(label), self.nsd_tolerance_mm)))


@dataclass(frozen=True)
class Timing:
    """How each case is timed. The candidate test times ``rounds`` candidate rounds, each
    right after a reference run (a pair), then adds pairs while the speed-up's interval is
    wider than ``precision`` (its half-width, a fraction, at the gates' ``confidence``) or
    its verdict against a baseline is inconclusive: up to ``max_rounds`` pairs, and while
    the pairs so far and one more fit in ``budget_s`` seconds. The reference test's own
    ``reference_rounds`` make PyTorch's latency history; the gates use the pairs.
    ``estimator`` reduces the latencies (the table's seconds, pytest-benchmark's history);
    the speed-up is the geometric mean of the pair ratios (see :mod:`segbench.scoring.stats`).

    A pair during which other processes took more than ``busy_max`` of the cores (either
    side's run, see :mod:`segbench.bench.contention`) is contended: left out of the speed-up
    and re-measured (``budget_s`` counts the uncontended pairs; all pairs stop at twice it, and
    at twice ``max_rounds`` pairs). After a contended run the next run waits, up to
    ``quiet_wait_s`` seconds per case in all, for a quiet phase to start; once a wait saw a
    neighbour come and go, every paired run does (not again in the case once a wait of 8 s
    found the machine busy throughout).
    """

    rounds: int = 3
    warmup_rounds: int = 1
    reference_rounds: int = 1
    max_rounds: int = 12
    budget_s: float = 25.0
    precision: float = 0.03
    estimator: str = "min"
    busy_max: float = 0.015
    quiet_wait_s: float = 60.0


@dataclass(frozen=True)
class Profile:
    """How one side of the comparison runs."""

    backend: BackendKind
    resample_order: int = 1
    tile_step: float | None = None
    threads: int | None = None
    graph_level: str = "all"
    use_gaussian: bool = True
    fit_patch: bool = False
    mem_arena: bool = True
    spinning: bool = False  # onnx profiles: onnxruntime's threads spin after a run (its default)
    precision: str = "fp32"  # "fp16": the ONNX file converted to float16 (float32 in and out);
    # "bf16": OpenVINO's inference precision hint (provider openvino, a CPU with bf16)
    provider: str = "auto"  # onnx profiles: segbench.settings.providers.Provider's values
    provider_options: dict[str, Any] = field(default_factory=dict, hash=False)
    # the user's own deployment instead of a backend (see segbench.bench.segmenters)
    factory: str | None = None  # "pipeline": "package.module:factory" | "file.py:factory"
    command: tuple[str, ...] | None = None  # "command": argv with {input} and {output}
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # factory(**options)
    timeout_s: float | None = None  # a command's run, at most
    labels: dict[str, str] | None = field(default=None, hash=False)  # its numbering: value: name

    @property
    def kind(self) -> str:
        """What runs: ``"torch"`` or ``"onnx"`` (segbench's pipeline on that backend),
        ``"pipeline"`` (the user's factory) or ``"command"`` (the user's program)."""
        if self.factory is not None:
            return "pipeline"
        if self.command is not None:
            return "command"
        return self.backend.value

    @property
    def pipeline(self) -> PipelineSettings:
        return PipelineSettings(
            resample_order=self.resample_order,
            tile_step=self.tile_step,
            use_gaussian=self.use_gaussian,
            fit_patch=self.fit_patch,
        )


@dataclass(frozen=True)
class BenchConfig:
    gates: Gates = field(default_factory=Gates)
    timing: Timing = field(default_factory=Timing)
    reference: Profile = field(default_factory=lambda: Profile(BackendKind.TORCH))
    candidate: Profile = field(default_factory=lambda: Profile(BackendKind.ONNX))
    case_gates: dict[str, Gates] = field(default_factory=dict)
    source: str = "<defaults>"
    candidates: dict[str, Profile] = field(default_factory=dict)  # named candidates, if any

    @property
    def candidate_profiles(self) -> dict[str | None, Profile]:
        """The session's candidates by name: the named ones, else the one unnamed
        (``None``) ``candidate``."""
        named: dict[str | None, Profile] = {}
        named.update(self.candidates)
        return named or {None: self.candidate}

    def gates_for(self, case_id: str) -> Gates:
        return self.case_gates.get(case_id, self.gates)

    def settings(self) -> dict[str, Any]:
        """The effective settings as plain JSON values (``benchmarks.json``'s layout, overrides
        applied, ``source`` left out): what a saved run records so that shards can be checked
        for equal settings before they are merged."""

        def profile(p: Profile) -> dict[str, Any]:
            return deployment_settings(p) or {**asdict(p), "backend": p.backend.value}

        profiles: dict[str, Any] = {"reference": profile(self.reference)}
        if self.candidates:
            profiles["candidates"] = {n: profile(p) for n, p in self.candidates.items()}
        else:
            profiles["candidate"] = profile(self.candidate)
        return {
            "gates": asdict(self.gates),
            "timing": asdict(self.timing),
            "profiles": profiles,
            "cases": {cid: asdict(g) for cid, g in sorted(self.case_gates.items())},
        }

    def digest(self) -> str:
        """SHA-256 of :meth:`settings` (canonical JSON)."""
        text = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _fail(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: key {key!r} {problem}. Fix the key in {source}")


def _check_keys(data: Any, allowed: set[str], where: str, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(source, where, f"must be an object, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed - {"$comment"})
    if unknown:
        raise _fail(
            source,
            f"{where}.{unknown[0]}" if where else unknown[0],
            f"is unknown (valid keys: {', '.join(sorted(allowed))})",
        )
    return data


def _number(value: Any, key: str, source: str, lo: float, hi: float, integer: bool = False) -> Any:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise _fail(source, key, f"must be {kind} in [{lo}, {hi}], got {value!r}")
    return value


TIMING_NUMBERS = {
    "budget_s": (0.0, 1e6),
    "precision": (0.0, 1.0),
    "busy_max": (0.0, 1.0),
    "quiet_wait_s": (0.0, 1e6),
}


def _gates(data: Any, base: Gates, where: str, source: str) -> Gates:
    names = {f.name for f in fields(Gates)}
    data = _check_keys(data, names, where, source)
    limits = {
        "dice_min": (0.0, 1.0, False),
        "class_dice_min": (0.0, 1.0, False),
        "min_class_voxels": (0, 1e12, True),
        "speedup_min": (0.0, 1e3, False),
        "speedup_drop_max": (0.0, 1.0, False),
        "suite_speedup_drop_max": (0.0, 1.0, False),
        "confidence": (0.5, 0.9999, False),
        "busy_bias": (0.0, 0.5, False),
        "nsd_min": (0.0, 1.0, False),
        "nsd_tolerance_mm": (0.0, 1e3, False),
        "hd95_max_mm": (0.0, 1e6, False),
        "volume_diff_max_pct": (0.0, 1e6, False),
        "vanished_max": (0, 1e6, True),
    }
    flags = {"inconclusive_fails"}
    if where.startswith("cases.") and "suite_speedup_drop_max" in data:
        raise _fail(
            source,
            f"{where}.suite_speedup_drop_max",
            'is a gate of the whole suite: set it under "gates", not per case',
        )
    values: dict[str, Any] = {
        k: _flag(v, f"{where}.{k}", source)
        if k in flags
        else _tolerances(v, f"{where}.{k}", source)
        if k == "class_nsd_tolerance_mm"
        else _number(v, f"{where}.{k}", source, *limits[k])
        for k, v in data.items()
    }
    return replace(base, **values)


def _tolerances(value: Any, key: str, source: str) -> dict[str, float]:
    """``class_nsd_tolerance_mm``: class name (or label number) -> tolerance in mm."""
    if not isinstance(value, dict):
        raise _fail(
            source,
            key,
            f'must be an object of class name: mm, e.g. {{"liver": 2.0}}, got {value!r}',
        )
    return {str(k): float(_number(v, f"{key}.{k}", source, 0.0, 1e3)) for k, v in value.items()}


def _flag(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(source, key, f"must be true or false, got {value!r}")
    return value


def _profile(data: Any, base: Profile, where: str, source: str) -> Profile:
    if isinstance(data, dict) and DEPLOYMENT_KEYS & set(data):
        return parse_deployment(data, base, where, source)
    names = {f.name for f in fields(Profile)} - set(DEPLOYMENT_FIELDS)
    data = _check_keys(data, names, where, source)
    values: dict[str, Any] = {}
    for key, value in data.items():
        k = f"{where}.{key}"
        if key == "backend":
            try:
                values[key] = BackendKind(value)
            except ValueError:
                raise _fail(
                    source, k, f"must be one of {[b.value for b in BackendKind]}, got {value!r}"
                ) from None
        elif key == "resample_order":
            values[key] = _number(value, k, source, 0, 3, integer=True)
        elif key == "tile_step":
            values[key] = None if value is None else _number(value, k, source, 0.01, 1.0)
        elif key == "threads":
            values[key] = None if value is None else _number(value, k, source, 1, 1024, True)
        elif key in ("use_gaussian", "fit_patch", "mem_arena", "spinning"):
            values[key] = _flag(value, k, source)
        elif key == "graph_level":
            if value not in GRAPH_LEVELS:
                raise _fail(source, k, f"must be one of {list(GRAPH_LEVELS)}, got {value!r}")
            values[key] = value
        elif key == "precision":
            if value not in PRECISIONS:
                raise _fail(source, k, f"must be one of {list(PRECISIONS)}, got {value!r}")
            values[key] = value
        elif key == "provider":
            values[key] = parse_provider(value, k, source).value
    if "provider_options" in data or "provider" in values:
        provider = values.get("provider", base.provider)
        opts = data.get("provider_options", base.provider_options)
        check_options(provider, opts, f"{where}.provider_options", source)
        values["provider_options"] = dict(opts)
    profile = replace(base, **values)
    set_keys = [key for key in ("provider", "provider_options", "spinning") if key in data]
    if profile.backend is not BackendKind.ONNX and set_keys:
        raise _fail(
            source,
            f"{where}.{set_keys[0]}",
            f"is set, which only an onnx profile supports (backend {profile.backend.value!r}); "
            f"set backend to onnx or drop {set_keys[0]}",
        )
    if profile.precision != "fp32" and profile.backend is not BackendKind.ONNX:
        raise _fail(
            source,
            f"{where}.precision",
            f"is {profile.precision!r}, which only an onnx profile supports (backend "
            f"{profile.backend.value!r}); set backend to onnx or precision to fp32",
        )
    if profile.backend is BackendKind.ONNX:
        _check_precision(profile, where, source)
    return profile


def _check_precision(profile: Profile, where: str, source: str) -> None:
    """``bf16`` is OpenVINO's inference precision hint: an onnx profile on provider openvino
    only; a precision hint in ``provider_options.load_config`` must agree with ``precision``.
    Whether this machine can run it is checked when the session starts
    (:func:`segbench.settings.providers.check_precision`)."""
    if profile.precision == "bf16" and profile.provider != "openvino":
        raise _fail(
            source,
            f"{where}.precision",
            f"is 'bf16', which runs on the OpenVINO execution provider only (its inference "
            f"precision hint), but provider is {profile.provider!r}; set provider to openvino "
            '(pip install "segbench[openvino]") or precision to fp32',
        )
    options = check_options(profile.provider, profile.provider_options, source=source)
    precision_options(
        profile.provider, options, profile.precision, f"{where}.provider_options", source
    )


DEPLOYMENT_KEYS = {"pipeline", "command"}  # a profile with one of them runs the user's code
DEPLOYMENT_FIELDS = ("factory", "command", "options", "timeout_s", "labels")


def parse_deployment(data: dict[str, Any], base: Profile, where: str, source: str) -> Profile:
    """A profile that names the user's deployment: ``"pipeline"`` (``"module:factory"`` or
    ``"file.py:factory"``, with ``"options"``) or ``"command"`` (argv with ``{input}`` and
    ``{output}``, with ``"timeout_s"``), and optionally ``"labels"`` (see
    :mod:`segbench.settings.labels`). Backend keys are errors: segbench does not run its own
    pipeline for it."""
    from segbench.settings.labels import parse_labels

    allowed = {"pipeline", "options", "labels"} if "pipeline" in data else set()
    allowed |= {"command", "timeout_s", "labels"} if "command" in data else set()
    if {"pipeline", "command"} <= set(data):
        raise _fail(source, f"{where}.command", 'is set together with "pipeline"; use one')
    if "threads" in data and data["threads"] is None:
        data = {k: v for k, v in data.items() if k != "threads"}
    for key in data:
        if key not in allowed and key != "$comment":
            what = "pipeline" if "pipeline" in data else "command"
            raise _fail(
                source,
                f"{where}.{key}",
                f"is not a key of a {what} profile (valid keys: {', '.join(sorted(allowed))}); "
                f"segbench runs your {what} as it is, so drop {key}",
            )
    values: dict[str, Any] = {}
    if "pipeline" in data:
        spec = data["pipeline"]
        if not isinstance(spec, str) or spec.count(":") < 1 or not spec.rpartition(":")[2]:
            raise _fail(
                source,
                f"{where}.pipeline",
                f'must be "package.module:factory" or "path/to/file.py:factory", got {spec!r}',
            )
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise _fail(source, f"{where}.options", f"must be an object, got {options!r}")
        values.update(factory=spec, options=dict(options))
    else:
        argv = data["command"]
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) for a in argv)
            or not any("{output}" in a for a in argv)
        ):
            raise _fail(
                source,
                f"{where}.command",
                'must be a list of strings with "{output}" (and usually "{input}"), e.g. '
                f'["my-segmenter", "-i", "{{input}}", "-o", "{{output}}"], got {argv!r}',
            )
        values["command"] = tuple(argv)
        if "timeout_s" in data:
            timeout = _number(data["timeout_s"], f"{where}.timeout_s", source, 1, 1e6)
            values["timeout_s"] = float(timeout)
    if "labels" in data:
        folder = Path(source).parent if source.endswith(".json") else None
        table = parse_labels(data["labels"], source, f"{where}.labels", folder)
        values["labels"] = {str(v): n for v, n in table.items()}
    return replace(Profile(base.backend), **values)


def deployment_settings(profile: Profile) -> dict[str, Any] | None:
    """A deployment profile's settings as plain JSON values (None for a backend profile)."""
    if profile.kind not in DEPLOYMENT_KEYS:
        return None
    out: dict[str, Any] = {"kind": profile.kind, "labels": profile.labels}
    if profile.factory is not None:
        out.update(pipeline=profile.factory, options=profile.options)
    else:
        out.update(command=list(profile.command or ()), timeout_s=profile.timeout_s)
    return out


def parse_config(data: Any, source: str = "<dict>") -> BenchConfig:
    """Validate a decoded ``benchmarks.json`` and return the settings it describes."""
    top = _check_keys(data, {"gates", "timing", "profiles", "cases"}, "", source)
    cfg = BenchConfig(source=source)
    gates = _gates(top.get("gates", {}), cfg.gates, "gates", source)
    tdata = _check_keys(top.get("timing", {}), {f.name for f in fields(Timing)}, "timing", source)
    timing = cfg.timing
    for key, value in tdata.items():
        if key == "estimator":
            if value not in ESTIMATORS:
                raise _fail(
                    source, "timing.estimator", f"must be one of {list(ESTIMATORS)}, got {value!r}"
                )
            timing = replace(timing, estimator=value)
        elif key in TIMING_NUMBERS:
            lo, hi = TIMING_NUMBERS[key]
            timing = replace(timing, **{key: _number(value, f"timing.{key}", source, lo, hi)})
        else:
            lo = 0 if key == "warmup_rounds" else 1
            timing = replace(
                timing, **{key: _number(value, f"timing.{key}", source, lo, 1000, True)}
            )
    if timing.max_rounds < timing.rounds:
        raise _fail(
            source,
            "timing.max_rounds",
            f"is {timing.max_rounds}, below timing.rounds ({timing.rounds}); raise it to at "
            "least rounds",
        )
    pdata = _check_keys(
        top.get("profiles", {}), {"reference", "candidate", "candidates"}, "profiles", source
    )
    reference = _profile(pdata.get("reference", {}), cfg.reference, "profiles.reference", source)
    candidate = _profile(pdata.get("candidate", {}), cfg.candidate, "profiles.candidate", source)
    candidates = _candidates(pdata, cfg.candidate, source)
    cases_data = top.get("cases", {})
    if not isinstance(cases_data, dict):
        raise _fail(source, "cases", f"must be an object, got {type(cases_data).__name__}")
    case_gates = {cid: _gates(v, gates, f"cases.{cid}", source) for cid, v in cases_data.items()}
    return BenchConfig(gates, timing, reference, candidate, case_gates, source, candidates)


CANDIDATE_NAME = re.compile(r"[a-z0-9_-]+")


def _candidates(pdata: dict[str, Any], base: Profile, source: str) -> dict[str, Profile]:
    """``profiles.candidates``: name -> profile (each on the default candidate profile)."""
    if "candidates" not in pdata:
        return {}
    if "candidate" in pdata:
        raise _fail(
            source,
            "profiles.candidates",
            'is set together with "profiles.candidate"; use one of them (a single candidate '
            'is "candidate", several are named under "candidates")',
        )
    data = pdata["candidates"]
    if not isinstance(data, dict) or not data:
        raise _fail(
            source,
            "profiles.candidates",
            f"must be a non-empty object of name: profile, got {data!r}",
        )
    out: dict[str, Profile] = {}
    for name, value in data.items():
        if not CANDIDATE_NAME.fullmatch(name):
            raise _fail(
                source,
                f"profiles.candidates.{name}",
                "is not a valid candidate name (lower-case letters, digits, '_' and '-' only, "
                "e.g. ort-cpu)",
            )
        out[name] = _profile(value, base, f"profiles.candidates.{name}", source)
    return out


def _no_duplicates(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ConfigError(
                    f"{source}: key {key!r} appears twice in one object (JSON keeps only the "
                    f"last, {value!r}). Fix: keep one {key!r} in {source}"
                )
            seen[key] = value
        return seen

    return hook


def _reject_constant(source: str) -> Any:
    def hook(name: str) -> Any:
        raise ConfigError(
            f"{source}: {name} is not a JSON number. Fix: write a finite number in {source}"
        )

    return hook


def load_config(path: Path | None) -> BenchConfig:
    """Read and validate ``path``; ``None`` gives the built-in defaults.

    The file must be UTF-8 JSON (a byte-order mark is accepted) without repeated keys or
    NaN/Infinity; every problem is a :class:`ConfigError` naming the file."""
    if path is None:
        return BenchConfig()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file. Fix: create it or drop the option") from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a folder, not a file. Fix: pass the benchmarks.json file itself"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({type(exc).__name__}: {exc}). Fix: check its permissions"
        ) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r}). "
            "Fix: save the file as UTF-8 JSON"
        ) from None
    try:
        data = json.loads(
            text,
            object_pairs_hook=_no_duplicates(str(path)),
            parse_constant=_reject_constant(str(path)),
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}). Fix the syntax at that line") from exc
    except ConfigError:  # a repeated key or NaN, from the hooks above
        raise
    except RecursionError:
        raise ConfigError(
            f"{path}: nests too deeply to be a benchmarks.json. Fix: keep the documented layout "
            "(gates, timing, profiles, cases)"
        ) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(
            f"{path}: holds a number that cannot be read ({str(exc).splitlines()[0][:80]}). "
            "Fix: write the value as a plain number"
        ) from None
    return parse_config(data, str(path))


def check_case_keys(config: BenchConfig, case_ids: Iterable[str]) -> None:
    """Raise :class:`ConfigError` when a key of ``"cases"`` in the config names no case of the
    session (a typo would otherwise silently leave the case on the default gates)."""
    known = list(case_ids)
    unknown = sorted(set(config.case_gates) - set(known))
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.75)
    hint = f"closest case ids: {', '.join(map(repr, close))}" if close else "no case id is close"
    more = (
        f" (and {len(unknown) - 1} more unknown: {', '.join(unknown[1:4])})"
        if len(unknown) > 1
        else ""
    )
    raise ConfigError(
        f"{config.source}: key 'cases.{key}' is not a case of this session{more}; {hint}. "
        f"Fix: name one of the {len(known)} case ids in {config.source} (see pytest --collect-only)"
    )
