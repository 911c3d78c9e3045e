"""The values of a session's ``"segbench"`` block: everything that must be equal for shards to
make one gate decision (``settings``), which cases the session ran, the machine's facts. The
block's schema and writer are :mod:`segbench.results.runfile`'s."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from segbench import __version__ as SEGBENCH_VERSION
from segbench.results.runfile import SegbenchBlock, ShardGroup
from segbench.settings.config import BenchConfig
from segbench.settings.cpu import UNKNOWN, read_cpu_flags

if TYPE_CHECKING:
    from segbench.bench.runtime import Runtime
    from segbench.plugin.options import Options

VERSIONED = ("torch", "onnxruntime", "numpy", "scipy")


def version(module: str) -> str | None:
    """The installed version of ``module``'s distribution (onnxruntime-gpu for onnxruntime)."""
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        if module == "onnxruntime":  # onnxruntime-gpu installs the same module
            try:
                return importlib.metadata.version("onnxruntime-gpu")
            except importlib.metadata.PackageNotFoundError:
                return None
        return None


def fingerprint(
    config: pytest.Config,
    options: Options,
    bench: BenchConfig,
    malloc: str,
    runtime: Runtime | None,
    suite: Sequence[str],
    selected: Sequence[str],
) -> dict[str, Any]:
    """The block for a session (:meth:`SegbenchBlock.to_json`); values that need the runtime
    are ``None`` when no case built it."""
    splits, group = config.getoption("splits", None), config.getoption("group", None)
    return SegbenchBlock(
        settings=session_settings(options, bench, malloc, runtime),
        suite=tuple(suite),
        cases=tuple(selected),
        shard=ShardGroup(splits, group) if splits and group else None,
        model_option=options.model,
        config_source=Path(bench.source).name,
        paths=recorded_paths(options),
        machine=machine_facts(bench),
    ).to_json()


def session_settings(
    options: Options, bench: BenchConfig, malloc: str, runtime: Runtime | None
) -> dict[str, Any]:
    """The block's ``settings``: what must be equal for shards to make one gate decision."""
    card = runtime.card if runtime is not None else None
    versions: dict[str, str | None] = {"segbench": SEGBENCH_VERSION}
    for module in VERSIONED:
        versions[module] = version(module)
    onnx: dict[str, Any] | None = None
    if runtime is not None:
        from segbench.models.card import sha256_file  # the runtime has imported torch already

        onnx = {
            "source": runtime.onnx_source,
            "sha256": sha256_file(runtime.onnx_path) if runtime.onnx_path else None,
        }
    return {
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
        "onnx": onnx,
        "config_sha256": bench.digest(),
        "config": bench.settings(),
        "versions": versions,
        "options": {
            "injection": options.injection.describe(),
            "baseline": options.baseline.name if options.baseline else None,
            "max_voxels": options.max_voxels,
            "require_gpu": options.require_gpu,
            "malloc": malloc,
        },
    }


def machine_facts(bench: BenchConfig) -> dict[str, Any]:
    """What of the machine moves a speed-up beyond its CPU model (which pytest-benchmark's
    ``machine_info`` holds): the instruction sets of :mod:`segbench.settings.cpu` (``"unknown"``
    where ``/proc/cpuinfo`` is not there) and, when a profile runs on OpenVINO, what OpenVINO's
    CPU plugin reports (its default inference precision and capabilities, see
    :mod:`segbench.pipeline.openvino`). ``segbench compare`` and ``--segbench-baseline`` treat a
    change of either as a change of machine."""
    flags = read_cpu_flags()
    facts: dict[str, Any] = {"cpu_flags": flags if flags is not None else UNKNOWN}
    profiles = [bench.reference, *bench.candidate_profiles.values()]
    if any(p.provider == "openvino" for p in profiles):
        from segbench.pipeline.openvino import openvino_cpu_info

        facts["openvino"] = openvino_cpu_info() or UNKNOWN
    return facts


def recorded_paths(options: Options) -> dict[str, Any]:
    """How the run names the cases' files (``--segbench-record-paths``) and where the cases came
    from: the data folder's name (its absolute path only when asked for), else the suite."""
    data = options.data
    if data is None:
        where = f"suite:{options.suite}"
    else:
        where = str(data) if options.record_paths == "absolute" else data.name
    return {"mode": options.record_paths, "cases_from": where}
