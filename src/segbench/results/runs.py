"""Saved runs: a pytest-benchmark JSON file read back into one typed :class:`CaseRecord` per case,
and the comparison of two runs (:func:`compare_runs`).

A saved run holds two benchmarks per case, grouped by case id: the reference (PyTorch) and the
candidate (ONNX Runtime), each with segbench's ``extra_info``; a run with several named
candidates holds one candidate benchmark per case and candidate (``candidate_name``), and one
row per case and candidate, each with the case's one reference benchmark. Latencies come from that
extra_info (segbench's own estimator, ``min`` or ``median`` of the timed rounds) and, where it is
missing, from pytest-benchmark's ``stats.min``. Nothing here imports torch or matplotlib.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.results.record import CaseRecord
from segbench.results.runfile import (
    RunFileError,
    SegbenchBlock,
    machine_flags,
    machine_openvino_precision,
)
from segbench.results.validate import Malformed, check_document
from segbench.settings.kinds import ROLES

MAX_RUN_BYTES = 512 * 2**20  # a saved run larger than this is not one segbench wrote


@dataclass(frozen=True)
class Run:
    """A saved run: where it came from and its cases in the order they ran."""

    path: Path
    rows: tuple[CaseRecord, ...]
    datetime: str | None = None
    commit: str | None = None
    machine: str | None = None
    cpu: str | None = None  # machine_info.cpu.brand_raw: speed-ups compare on one CPU type
    segbench: SegbenchBlock = field(default_factory=lambda: SegbenchBlock(format=None))

    def by_case(self) -> dict[str, CaseRecord]:
        """The rows by case id (with several candidates: a case's last row)."""
        return {r.case: r for r in self.rows}

    def by_key(self) -> dict[tuple[str, str | None], CaseRecord]:
        """The rows by case and candidate name (``None``: the one unnamed candidate)."""
        return {r.key: r for r in self.rows}

    @property
    def candidates(self) -> list[str | None]:
        """The candidates' names in the run, in order (``[None]`` for a single candidate)."""
        return list(dict.fromkeys(r.candidate for r in self.rows))

    @property
    def machines(self) -> list[str]:
        """The distinct machines that ran the cases, in case order."""
        return list(dict.fromkeys(r.machine for r in self.rows if r.machine))

    @property
    def settings(self) -> Mapping[str, Any] | None:
        """The settings fingerprint of the ``segbench`` block (``None`` for runs saved without
        one)."""
        return self.segbench.settings

    @property
    def injection(self) -> str:
        """What ``--segbench-inject`` put into the candidate (``"slowdown=0.5"``), ``"none"``
        for a normal run: the fingerprint's ``options.injection``, else the cases' ``injected``
        extra_info."""
        if self.segbench.injection is not None:
            return self.segbench.injection
        found = list(dict.fromkeys(r.injected for r in self.rows if r.injected))
        active = [i for i in found if i != "none"]
        return ", ".join(active) if active else "none"

    @property
    def injected(self) -> bool:
        return self.injection != "none"

    @property
    def cpus(self) -> tuple[str, ...]:
        """The CPU types that ran the cases: each merged shard's, else the run's own."""
        found = [
            brand
            for shard in self.segbench.merged_from or ()
            if (brand := _cpu_brand(shard.machine_info))
        ]
        if not found and self.cpu:
            found = [self.cpu]
        return tuple(sorted(set(found)))

    @property
    def cpu_flags(self) -> tuple[str, ...]:
        """The instruction sets of the machines that ran the cases (the flags present, by name:
        :func:`~segbench.settings.cpu.flags_text`): each merged shard's, else the run's own;
        empty where not recorded (a run saved before, or no ``/proc/cpuinfo``: unknown)."""
        return self._machine_values(machine_flags)

    @property
    def openvino_precisions(self) -> tuple[str, ...]:
        """OpenVINO's default inference precision on the machines that ran the cases, as its CPU
        plugin reported it (empty: no profile ran on OpenVINO, or a run saved before)."""
        return self._machine_values(machine_openvino_precision)

    def _machine_values(self, read: Callable[[Mapping[str, Any]], str | None]) -> tuple[str, ...]:
        """``read`` of each merged shard's ``"machine"`` facts, else of the run's own."""
        found = {v for m in self.segbench.machines() if (v := read(m)) is not None}
        return tuple(sorted(found))

    @property
    def expected_candidates(self) -> list[str]:
        """The named candidates the run's settings list (empty: one unnamed candidate, or a run
        saved without settings)."""
        return self.segbench.candidate_names

    @property
    def expected_cases(self) -> list[str]:
        """The cases the run should hold: the suite each session saw before sharding, else the
        cases it selected (from the ``segbench`` block; empty for runs saved without one)."""
        return self.segbench.expected_cases


def parse_run(data: Any, path: str | Path = "<in-memory run>") -> Run:
    """Typed rows from an already decoded pytest-benchmark JSON document."""
    if not isinstance(data, Mapping) or not isinstance(data.get("benchmarks"), list):
        raise RunFileError(
            path,
            'is not a pytest-benchmark run (no top-level "benchmarks" list)',
            "pass the file written by `pytest --benchmark-only --benchmark-json=run.json` or one "
            "saved under .benchmarks/ by --benchmark-autosave",
        )
    try:
        check_document(data)
    except Malformed as exc:
        raise RunFileError(path, f"key {exc.key}: {exc.problem}", exc.fix) from None
    cases: dict[str, dict[str, Mapping[str, Any]]] = {}
    named: dict[str, dict[str, Mapping[str, Any]]] = {}  # case -> candidate name -> benchmark
    for index, bench in enumerate(data["benchmarks"]):
        info = bench.get("extra_info") if isinstance(bench, Mapping) else None
        if not isinstance(info, Mapping) or info.get("role") not in ROLES:
            continue
        case = str(info.get("case") or bench.get("group") or bench.get("name"))
        name = info.get("candidate_name")
        if info["role"] == "candidate" and isinstance(name, str) and name:
            slot, role = named.setdefault(case, {}), name
            cases.setdefault(case, {})
        else:
            slot, role = cases.setdefault(case, {}), str(info["role"])
        if role in slot:
            raise _duplicate(path, index, case, role)
        slot[role] = bench
    if not cases:
        raise RunFileError(
            path,
            f"holds {len(data['benchmarks'])} benchmarks but none with segbench's extra_info "
            '("role": reference/candidate)',
            "save the run of segbench's own suite (tests/test_regression.py, "
            "`pytest --benchmark-only --benchmark-json=run.json`), not another benchmark suite",
        )
    machine = data.get("machine_info")
    commit = data.get("commit_info")
    block = SegbenchBlock.parse_checked(data.get("segbench"), path)
    rows = tuple(
        CaseRecord.from_benchmarks(case, pair)
        for case, benches in cases.items()
        for pair in _pairs(benches, named.get(case, {}))
    )
    machines = list(dict.fromkeys(r.machine for r in rows if r.machine))
    return Run(
        path=Path(path),
        rows=rows,
        datetime=str(data["datetime"]) if data.get("datetime") else None,
        commit=str(commit.get("id"))[:12]
        if isinstance(commit, Mapping) and commit.get("id")
        else None,
        machine=f"{len(machines)} machines (per case below)"
        if len(machines) > 1
        else (_machine_text(machine) if isinstance(machine, Mapping) else None),
        cpu=_cpu_brand(machine),
        segbench=block,
    )


def _duplicate(path: str | Path, index: int, case: str, role: str) -> RunFileError:
    """A case (and candidate) recorded twice: which of the two decides is anyone's guess, so
    the run is refused, as ``segbench merge`` refuses a case in two shards."""
    from segbench.results.escape import terminal

    return RunFileError(
        path,
        f"key benchmarks[{index}]: a second {role} benchmark of case {terminal(case)!r} (each "
        "case and candidate is recorded once)",
        "save each case once: rerun the suite, or merge shards with `segbench merge`, which "
        "refuses a case in two shards",
    )


def _pairs(
    benches: dict[str, Mapping[str, Any]], named: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Mapping[str, Any]]]:
    """A case's benchmarks by role, one mapping per row: the unnamed candidate's, or one per
    named candidate, each with the case's reference."""
    if not named:
        return [benches]
    ref = {"reference": benches["reference"]} if "reference" in benches else {}
    return [{**ref, "candidate": bench} for bench in named.values()]


def _cpu_brand(machine: Any) -> str | None:
    cpu = machine.get("cpu") if isinstance(machine, Mapping) else None
    brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
    return str(brand) if brand else None


def machine_label(machine: Any) -> str:
    """A short name of pytest-benchmark's ``machine_info``: host name, CPU, CPU count and
    Python version (``"runner-7 (AMD EPYC 7763, 4 CPUs, Python 3.11.9)"``)."""
    if not isinstance(machine, Mapping):
        return "-"
    text = _machine_text(machine)
    node = machine.get("node")
    return f"{node} ({text})" if node else text


def _machine_text(machine: Mapping[str, Any]) -> str:
    cpu = machine.get("cpu")
    brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
    count = cpu.get("count") if isinstance(cpu, Mapping) else None
    parts = [
        str(brand) if brand else str(machine.get("machine") or ""),
        f"{count} CPUs" if count else "",
        f"Python {machine['python_version']}" if machine.get("python_version") else "",
    ]
    return ", ".join(p for p in parts if p) or "-"


def load_run(path: str | Path) -> Run:
    """Read a saved run. Raises :class:`RunFileError` naming the file and the fix."""
    return parse_run(read_run_json(path), path)


def read_run_json(path: str | Path) -> Any:
    """The decoded JSON of a saved run (not yet checked for segbench's content)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_RUN_BYTES:
            raise RunFileError(
                path,
                f"has {size} bytes, more than the {MAX_RUN_BYTES} a saved run may have",
                "pass the JSON file that pytest-benchmark wrote for one run",
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFileError(
            path,
            "does not exist",
            "give the path of a saved run (--benchmark-json=FILE, or .benchmarks/*/NNNN_*.json)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(
            path, f"cannot be read ({type(exc).__name__}: {exc})", "check the path and permissions"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFileError(
            path,
            f"is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
            "pass the JSON file that pytest-benchmark wrote; a run cut short by a killed job "
            "is truncated: rerun the benchmark",
        ) from exc
    except RecursionError:
        raise RunFileError(
            path, "nests too deeply to be a saved run", "pass the JSON file pytest-benchmark wrote"
        ) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        what = "an integer of more than 4300 digits" if "digits" in str(exc) else "a value"
        raise RunFileError(
            path,
            f"holds {what}, which JSON cannot read as a number",
            "pass the JSON file pytest-benchmark wrote",
        ) from None
    return data


MAX_LISTED = 6  # items named in one message; the rest are counted


def capped(items: Sequence[str], sep: str) -> str:
    """The first :data:`MAX_LISTED` of ``items`` joined by ``sep``, then ``(and N more)``."""
    more = len(items) - MAX_LISTED
    return sep.join(items[:MAX_LISTED]) + (f" (and {more} more)" if more > 0 else "")
