"""Sharded runs: merge the saved runs of several CI machines into one run (the gate decision
over the merged run is :mod:`segbench.results.decision`).

Each session's pytest-benchmark JSON carries a top-level ``"segbench"`` block; its schema,
its writer and its reader are those of :mod:`segbench.results.runfile`. A merged run's block
adds ``merged_from`` (which file, group and machine ran which cases; ``machine`` is not a
setting: shards of one suite may run on different machines) and ``missing_groups``.

Shards merge only when every ``settings`` value is equal (a value that is ``null`` in a shard
that ran no case is not compared), no case is in two shards and, for pytest-split shards, all
split the same suite into the same number of groups. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.errors import SegbenchError
from segbench.results.runfile import FORMAT, MergedShard, RunFileError, SegbenchBlock
from segbench.results.runs import (
    MAX_LISTED,
    ROLES,
    capped,
    machine_label,
    parse_run,
    read_run_json,
)


class MergeError(SegbenchError, ValueError):
    """Shards that cannot be merged into one run (different settings, a case twice...)."""


def _case_of(bench: Any) -> str | None:
    info = bench.get("extra_info") if isinstance(bench, Mapping) else None
    if not isinstance(info, Mapping) or info.get("role") not in ROLES:
        return None
    return str(info.get("case") or bench.get("group") or bench.get("name"))


def differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in a, value in b)`` for every leaf that differs; ``None`` on either
    side matches anything (a setting the shard could not know, e.g. no case ran)."""
    if a is None or b is None:
        return []
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append((sub, a.get(key, "<absent>"), b.get(key, "<absent>")))
            else:
                out += differences(a[key], b[key], sub)
        return out
    return [] if a == b else [(path, a, b)]


def _fill(a: Any, b: Any) -> Any:
    """``a`` with its ``None`` values taken from ``b`` (settings known to one shard only)."""
    if a is None:
        return b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return {k: _fill(a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b])}
    return a


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Shard:
    """One saved run given to ``segbench merge``."""

    path: Path
    data: dict[str, Any]
    block: SegbenchBlock

    @property
    def settings(self) -> Mapping[str, Any]:
        """The block's ``settings`` (:func:`load_shard` refuses a shard without)."""
        assert self.block.settings is not None
        return self.block.settings

    @property
    def cases(self) -> list[str]:
        """Cases with a benchmark in this shard, then cases it selected but saved nothing for."""
        ran = [c for b in self.data["benchmarks"] if (c := _case_of(b)) is not None]
        return list(dict.fromkeys([*ran, *(self.block.cases or ())]))

    @property
    def group(self) -> tuple[int, int] | None:
        """``(splits, group)`` of a pytest-split shard."""
        shard = self.block.shard
        return (shard.splits, shard.group) if shard is not None else None


def load_shard(path: str | Path) -> Shard:
    """Read one shard and check that segbench saved it (its ``"segbench"`` block)."""
    path = Path(path)
    data = read_run_json(path)
    if not (isinstance(data, Mapping) and data.get("benchmarks") == []):
        parse_run(data, path)  # a pytest-benchmark run with segbench's benchmarks
    block = SegbenchBlock.read(data.get("segbench"), path)
    if block.settings is None:
        raise RunFileError(
            path,
            'has no "segbench" block (the settings fingerprint that shards are checked with)',
            "save each shard with this segbench's plugin loaded "
            "(`pytest --benchmark-only --benchmark-json=shard-N.json`); runs saved by older "
            "versions cannot be merged",
        )
    if block.format != FORMAT:
        raise RunFileError(
            path,
            f"has segbench block format {block.format!r}, this segbench merges format {FORMAT}",
            "save all shards with the same segbench version",
        )
    return Shard(path, dict(data), block)


def _check_settings(shards: Sequence[Shard]) -> None:
    first = shards[0]
    problems: list[str] = []
    for other in shards[1:]:
        diffs = differences(first.settings, other.settings)
        problems += [
            f"settings.{key}: {first.path.name} has {_short(a)}, {other.path.name} has {_short(b)}"
            for key, a, b in diffs
        ]
    if problems:
        raise MergeError(
            "shards ran with different settings and cannot make one gate decision:\n  "
            + capped(problems, "\n  ")
            + "\nFix: run every shard of one suite from the same commit, with the same "
            "options, model, ONNX file, benchmarks.json and package versions (one CI workflow "
            "run with one constraints file), then merge those shards"
        )
    commits = {
        s.path.name: str(c["id"])
        for s in shards
        if isinstance(c := s.data.get("commit_info"), Mapping) and c.get("id")
    }
    if len(set(commits.values())) > 1:
        listed = ", ".join(f"{name} {cid[:12]}" for name, cid in commits.items())
        raise MergeError(
            f"shards come from different commits ({listed}). Fix: merge the shards of one "
            "workflow run (download the artifacts of that run only)"
        )


def _check_cases(shards: Sequence[Shard]) -> None:
    owner: dict[str, Path] = {}
    twice: list[str] = []
    for shard in shards:
        for case in shard.cases:
            if case in owner:
                twice.append(f"{case} (in {owner[case].name} and {shard.path.name})")
            else:
                owner[case] = shard.path
    if twice:
        raise MergeError(
            "the same case is in two shards: "
            + capped(twice, "; ")
            + ". Fix: pass each shard once, and shard with `--splits N --group i` (or disjoint "
            "-k selections) so that every case runs in exactly one shard"
        )
    groups = {s.path.name: g for s in shards if (g := s.group) is not None}
    if len({n for n, _ in groups.values()}) > 1:
        listed = ", ".join(f"{name} group {g} of {n}" for name, (n, g) in groups.items())
        raise MergeError(
            f"shards of different --splits ({listed}). Fix: merge the shards of one split"
        )
    split = [s for s in shards if s.group is not None]
    for other in split[1:]:
        a, b = split[0].block.suite, other.block.suite
        if a is not None and b is not None and list(a) != list(b):
            only = [str(c) for c in a if c not in b] + [str(c) for c in b if c not in a]
            listed = ", ".join(only[:MAX_LISTED]) or "the same cases in another order"
            raise MergeError(
                f"{split[0].path.name} and {other.path.name} split different suites (cases in "
                f"one only: {listed}). Fix: give every shard the same cases and options "
                "(--segbench-data / --segbench-suite, -k, -m)"
            )


def merge_shards(paths: Sequence[str | Path]) -> dict[str, Any]:
    """One pytest-benchmark JSON document from the shards at ``paths``: their benchmarks in
    suite order, each candidate/reference with ``extra_info["machine"]`` and ``["shard"]``, the
    first shard's ``machine_info``/``commit_info`` and a merged ``"segbench"`` block (``shards``:
    which file, group and machine ran which cases; ``missing_groups``: pytest-split groups not
    given). Raises :class:`MergeError` or :class:`RunFileError`."""
    shards = _load_distinct(paths)
    _check_settings(shards)
    _check_cases(shards)

    settings: Any = shards[0].settings
    for shard in shards[1:]:
        settings = _fill(settings, shard.settings)
    suite: list[str] = []
    for shard in shards:
        suite += [str(c) for c in shard.block.suite or shard.cases if str(c) not in suite]
    first = shards[0].data
    dates = sorted(str(s.data["datetime"]) for s in shards if s.data.get("datetime"))
    block = SegbenchBlock(
        settings=settings,
        suite=tuple(suite),
        cases=tuple(c for c in suite if any(c in s.cases for s in shards)),
        model_option=shards[0].block.model_option,
        config_source=shards[0].block.config_source,
        machine=shards[0].block.machine,
        merged_from=tuple(_described(index, shard) for index, shard in enumerate(shards)),
        missing_groups=tuple(_missing_groups(shards)),
    )
    return {
        **{k: v for k, v in first.items() if k not in ("benchmarks", "segbench")},
        "datetime": dates[0] if dates else first.get("datetime"),
        "benchmarks": _merged_benchmarks(shards, suite),
        "segbench": block.to_json(),
    }


def _load_distinct(paths: Sequence[str | Path]) -> list[Shard]:
    """The shards at ``paths``, refusing none and a file given twice (by its real path)."""
    if not paths:
        raise MergeError("no shard given. Fix: pass the shard files (segbench merge A.json B.json)")
    seen: dict[Path, str] = {}
    for p in paths:
        if Path(p).resolve() in seen:
            raise MergeError(
                f"{p}: given twice (also as {seen[Path(p).resolve()]}). Fix: pass each shard once"
            )
        seen[Path(p).resolve()] = str(p)
    return [load_shard(p) for p in paths]


def _merged_benchmarks(shards: Sequence[Shard], suite: Sequence[str]) -> list[dict[str, Any]]:
    """Every shard's benchmarks, segbench's in ``suite`` order (by case, then role), each with
    ``extra_info["machine"]`` (kept if the shard set it) and ``["shard"]``; others last."""
    order = {case: i for i, case in enumerate(suite)}
    benchmarks: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    for shard in shards:
        machine = machine_label(shard.data.get("machine_info"))
        for bench in shard.data["benchmarks"]:
            case = _case_of(bench)
            bench = dict(bench)
            if case is not None:
                info = dict(bench["extra_info"])
                info.setdefault("machine", machine)
                info["shard"] = shard.path.name
                bench["extra_info"] = info
                role = ROLES.index(info["role"])
                key = (order.get(case, len(order)), role, len(benchmarks))
            else:
                key = (len(order) + 1, 0, len(benchmarks))
            benchmarks.append((key, bench))
    return [bench for _, bench in sorted(benchmarks, key=lambda kb: kb[0])]


def _described(index: int, shard: Shard) -> MergedShard:
    """The merged block's record of one shard: its file, group, machine and cases."""
    group = shard.group
    return MergedShard(
        file=shard.path.name,
        group=group[1] if group else None,
        splits=group[0] if group else None,
        machine=machine_label(shard.data.get("machine_info")),
        machine_info=shard.data.get("machine_info"),
        segbench_machine=shard.block.machine,
        datetime=shard.data.get("datetime"),
        cases=tuple(shard.cases),
        index=index,
    )


def _missing_groups(shards: Sequence[Shard]) -> list[int]:
    """The pytest-split groups of the split that no shard ran (ascending)."""
    splits = {g[0] for s in shards if (g := s.group) is not None}
    present = {g[1] for s in shards if (g := s.group) is not None}
    return sorted(set(range(1, splits.pop() + 1)) - present) if splits else []
