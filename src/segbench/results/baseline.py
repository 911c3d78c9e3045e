"""The baseline a session's speed-ups are held against: a saved run of the same CPU type and
allocator mode, read into per-case :class:`~segbench.scoring.gates.BaselineSpeedup` values."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError
from segbench.results.record import record_key
from segbench.results.runfile import SegbenchBlock
from segbench.results.runs import Run, load_run
from segbench.scoring.gates import BaselineSpeedup


def load_baselines(
    path: Path, malloc: str | None = None, machine: Mapping[str, Any] | None = None
) -> dict[str, BaselineSpeedup]:
    """Per-case speed-ups of a saved run, refused when it was measured on another CPU type:
    the ratio of two backends depends on the CPU (vector units, caches), not only on the code;
    likewise refused when ``malloc`` (this session's, see :mod:`segbench.bench.allocator`) differs
    from the run's (runs saved before the option ran with glibc's defaults: ``system``), and
    when ``machine`` (this session's facts, :func:`segbench.plugin.fingerprint.machine_facts`)
    names other instruction sets or another OpenVINO precision than the run recorded (a run
    that recorded none, saved before, is let through)."""
    run = load_run(path)
    saved = run.segbench.malloc or "system"
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
    check_machine(path, run, machine or {})
    source = f"{path.name}" + (f", {run.datetime[:19]}" if run.datetime else "")
    return {
        record_key(row.case, row.candidate): BaselineSpeedup(speed, source, row.pair_speedups)
        for row in run.rows
        if (speed := row.speedup) is not None and row.passed
    }


def check_machine(path: Path, run: Run, machine: Mapping[str, Any]) -> None:
    """Refuse a baseline ``run`` whose instruction sets or OpenVINO precision differ from this
    session's ``machine`` facts, naming both (unknown on either side is not a difference)."""
    here = Run(path, (), segbench=SegbenchBlock(machine=machine))
    for what, saved, now in (
        ("CPU instruction sets", run.cpu_flags, here.cpu_flags),
        (
            "OpenVINO's default inference precision",
            run.openvino_precisions,
            here.openvino_precisions,
        ),
    ):
        if saved and now and saved != now:
            raise ConfigError(
                f"--segbench-baseline {path}: saved on a machine with {what} "
                f"{', '.join(saved)!r}, but this machine has {', '.join(now)!r}; the kernels "
                "that run (and so the speed-ups) follow them. Fix: save a baseline on this "
                "runner type (pytest --benchmark-only --benchmark-json=baseline.json)"
            )


def current_cpu() -> str | None:
    """This machine's CPU brand as pytest-benchmark records it (py-cpuinfo)."""
    try:
        import cpuinfo
    except ImportError:
        return None
    brand = cpuinfo.get_cpu_info().get("brand_raw")
    return str(brand) if brand else None
