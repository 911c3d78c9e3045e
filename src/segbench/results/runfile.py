"""The ``"segbench"`` block of a saved run: its one schema, one writer
(:meth:`SegbenchBlock.to_json`) and one reader (:meth:`SegbenchBlock.read`).

A session adds the block to pytest-benchmark's JSON (``pytest_benchmark_update_json``: the
plugin's :func:`segbench.plugin.fingerprint.fingerprint` builds the values);
``segbench merge`` writes the merged run's block. Format :data:`FORMAT`::

    {"format": 1,
     "settings": {                          # equal in every shard of one gate decision
         "model", "weights_sha256",
         "card": {"spacing", "patch_size", "tile_step", "classes"} or null,
         "onnx": {"source", "sha256"} or null,
         "config_sha256", "config": {gates, timing, profiles, cases, ...},
         "versions": {segbench, torch, onnxruntime, numpy, scipy},
         "options": {injection, baseline, max_voxels, require_gpu, malloc}},
     "suite": [case ids that reached the splitter], "cases": [case ids this session ran],
     "shard": {"splits": N, "group": i} or null, "model_option", "config_source",
     "paths": {"mode": "relative" | "absolute", "cases_from"},   # a session's block only
     "machine": {"cpu_flags": {avx2, avx512f, ...: bool} or "unknown",
                 "openvino"?: {inference_precision, ...} or "unknown"},
     # a merged run's block only (segbench merge):
     "merged_from": [{"file", "group", "splits", "machine", "machine_info",
                      "segbench_machine", "datetime", "cases", "index"}, ...],
     "missing_groups": [pytest-split groups not given]}

The values of ``settings`` that need the model (``model``, ``weights_sha256``, ``card``,
``onnx``) are ``null`` in a session that ran no case. ``machine`` is not a setting: shards of
one suite may run on different machines; each merged shard keeps its own in ``merged_from``
(``segbench_machine``).

Versions: runs saved without a block, and blocks without the keys added later (``machine``,
``paths``, ``options.malloc``), read as they always did (the missing values are ``None``). A
block of a format newer than :data:`FORMAT` is refused, naming the file, both versions and
the fix. Every key is checked on read by :func:`segbench.results.validate.check_block`.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.errors import SegbenchError
from segbench.results.validate import Malformed, check_block
from segbench.settings.cpu import UNKNOWN, flags_text

FORMAT = 1  # of the "segbench" block; a newer one is refused by SegbenchBlock.read


class RunFileError(SegbenchError, ValueError):
    """A file that is not a saved segbench run (missing, not JSON, not pytest-benchmark's)."""

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}. Fix: {fix}")


def machine_flags(machine: Mapping[str, Any] | None) -> str | None:
    """The instruction sets a ``"machine"`` value records, by name
    (:func:`~segbench.settings.cpu.flags_text`); ``None`` when not recorded."""
    flags = (machine or {}).get("cpu_flags")
    return flags_text(flags) if isinstance(flags, Mapping) else None


def machine_openvino_precision(machine: Mapping[str, Any] | None) -> str | None:
    """OpenVINO's default inference precision a ``"machine"`` value records (``None``: no
    profile ran on OpenVINO, not known, or not recorded)."""
    found = (machine or {}).get("openvino")
    value = found.get("inference_precision") if isinstance(found, Mapping) else None
    return str(value) if value and value != UNKNOWN else None


@dataclass(frozen=True)
class ShardGroup:
    """A pytest-split shard: group ``group`` (1-based) of ``splits``."""

    splits: int
    group: int


@dataclass(frozen=True)
class MergedShard:
    """One entry of a merged run's ``merged_from``: which file, group and machine ran which
    cases (``machine``: :func:`~segbench.results.runs.machine_label`; ``machine_info``:
    pytest-benchmark's; ``segbench_machine``: the shard's ``"machine"`` facts)."""

    file: str
    machine: str
    cases: tuple[str, ...]
    group: int | None = None
    splits: int | None = None
    machine_info: Mapping[str, Any] | None = None
    segbench_machine: Mapping[str, Any] | None = None
    datetime: str | None = None
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "group": self.group,
            "splits": self.splits,
            "machine": self.machine,
            "machine_info": self.machine_info,
            "segbench_machine": self.segbench_machine,
            "datetime": self.datetime,
            "cases": list(self.cases),
            "index": self.index,
        }

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> MergedShard:
        """From a checked entry (:func:`~segbench.results.validate.check_block`)."""
        return cls(
            file=raw["file"],
            machine=raw["machine"],
            cases=tuple(raw["cases"]),
            group=raw.get("group"),
            splits=raw.get("splits"),
            machine_info=raw.get("machine_info"),
            segbench_machine=_mapping(raw.get("segbench_machine")),
            datetime=raw.get("datetime"),
            index=raw.get("index"),
        )


@dataclass(frozen=True)
class SegbenchBlock:
    """A run's ``"segbench"`` block (see the module's schema). ``None`` is a value the run did
    not record (a run saved without a block, or before the key existed); ``paths``,
    ``merged_from`` and ``missing_groups`` left ``None`` are not written."""

    format: int | None = FORMAT
    settings: Mapping[str, Any] | None = None
    suite: tuple[str, ...] | None = None
    cases: tuple[str, ...] | None = None
    shard: ShardGroup | None = None
    model_option: str | None = None
    config_source: str | None = None
    paths: Mapping[str, Any] | None = None
    machine: Mapping[str, Any] | None = None
    merged_from: tuple[MergedShard, ...] | None = None
    missing_groups: tuple[int, ...] | None = None

    # the writer -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The block as the run file holds it (keys in the order segbench has always written)."""
        block: dict[str, Any] = {
            "format": self.format,
            "settings": self.settings,
            "suite": list(self.suite or ()),
            "cases": list(self.cases or ()),
            "shard": {"splits": self.shard.splits, "group": self.shard.group}
            if self.shard
            else None,
            "model_option": self.model_option,
            "config_source": self.config_source,
        }
        if self.paths is not None:
            block["paths"] = self.paths
        block["machine"] = self.machine
        if self.merged_from is not None:
            block["merged_from"] = [s.to_json() for s in self.merged_from]
        if self.missing_groups is not None:
            block["missing_groups"] = list(self.missing_groups)
        return block

    # the reader -----------------------------------------------------------------------------

    @classmethod
    def read(cls, data: Any, path: str | Path = "<in-memory run>") -> SegbenchBlock:
        """The block ``data`` (the run's ``"segbench"`` value; ``None``: a run saved without
        one), checked key by key. Raises :class:`RunFileError` naming ``path``, the key and the
        fix, or the format when it is newer than this segbench reads."""
        try:
            check_block(data)
        except Malformed as exc:
            raise RunFileError(path, f"key {exc.key}: {exc.problem}", exc.fix) from None
        return cls.parse_checked(data, path)

    @classmethod
    def parse_checked(cls, data: Any, path: str | Path = "<in-memory run>") -> SegbenchBlock:
        """:meth:`read` of a block already checked (as part of its whole run, by
        :func:`~segbench.results.validate.check_document`)."""
        if not isinstance(data, Mapping):
            return cls(format=None)
        found = data.get("format")
        _check_format(found, path)
        shard = data.get("shard")
        merged = data.get("merged_from")
        missing = data.get("missing_groups")
        return cls(
            format=found,
            settings=_mapping(data.get("settings")),
            suite=_texts(data.get("suite")),
            cases=_texts(data.get("cases")),
            shard=ShardGroup(int(shard["splits"]), int(shard["group"]))
            if isinstance(shard, Mapping) and shard.get("splits") and shard.get("group")
            else None,
            model_option=data.get("model_option"),
            config_source=data.get("config_source"),
            paths=_mapping(data.get("paths")),
            machine=_mapping(data.get("machine")),
            merged_from=tuple(MergedShard._parse(m) for m in merged)
            if isinstance(merged, list)
            else None,
            missing_groups=tuple(missing) if isinstance(missing, list) else None,
        )

    # what the readers of a run use ----------------------------------------------------------

    @property
    def options(self) -> Mapping[str, Any]:
        """``settings.options`` (empty when not recorded)."""
        return _mapping((self.settings or {}).get("options")) or {}

    @property
    def config(self) -> Mapping[str, Any] | None:
        """``settings.config``: the benchmarks.json the run was measured with."""
        return _mapping((self.settings or {}).get("config"))

    @property
    def injection(self) -> str | None:
        """``settings.options.injection`` (``None``: not recorded, or empty)."""
        value = self.options.get("injection")
        return value if isinstance(value, str) and value else None

    @property
    def malloc(self) -> str | None:
        """``settings.options.malloc`` (``None``: saved before the option existed)."""
        value = self.options.get("malloc")
        return value if isinstance(value, str) and value else None

    @property
    def timing(self) -> Mapping[str, Any] | None:
        """``settings.config.timing``."""
        return _mapping((self.config or {}).get("timing"))

    def gate_values(self, case: str | None = None) -> Mapping[str, Any] | None:
        """The saved gate thresholds: ``case``'s own (``config.cases``) when benchmarks.json set
        some for it, else ``config.gates``; ``None`` when not recorded."""
        config = self.config or {}
        cases = _mapping(config.get("cases")) or {}
        if case is not None and isinstance(cases.get(case), Mapping):
            return _mapping(cases[case])
        return _mapping(config.get("gates"))

    @property
    def candidate_names(self) -> list[str]:
        """The named candidates of ``settings.config.profiles`` (empty: one unnamed candidate,
        or not recorded)."""
        profiles = _mapping((self.config or {}).get("profiles")) or {}
        named = profiles.get("candidates")
        return [str(n) for n in named] if isinstance(named, Mapping) else []

    @property
    def expected_cases(self) -> list[str]:
        """The suite each session saw before sharding, else the cases it selected."""
        cases: list[str] = []
        for values in (self.suite, self.cases):
            cases += [c for c in dict.fromkeys(values or ()) if c not in cases]
            if cases:
                break
        return cases

    def machines(self) -> list[Mapping[str, Any]]:
        """The ``"machine"`` facts of each merged shard that recorded some, else the run's own
        (empty when not recorded)."""
        shards = [
            s.segbench_machine for s in self.merged_from or () if s.segbench_machine is not None
        ]
        if shards:
            return shards
        return [self.machine] if self.machine is not None else []


def _check_format(found: int | None, path: str | Path) -> None:
    """Refuse a block whose ``format`` this segbench cannot read (``None``: a block saved
    without the key, read as format 1)."""
    if found is None or 1 <= found <= FORMAT:
        return
    known = f"format {FORMAT}" if FORMAT == 1 else f"formats 1 to {FORMAT}"
    if found > FORMAT:
        fix = (
            "upgrade segbench (pip install -U segbench) to read it, or read it with the "
            "segbench version that saved it"
        )
    else:
        fix = 'save the run again: no segbench version writes that "format"'
    raise RunFileError(
        path, f'has a "segbench" block of format {found}; this segbench reads {known}', fix
    )


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _texts(value: Any) -> tuple[str, ...] | None:
    return tuple(str(v) for v in value) if isinstance(value, list) else None
