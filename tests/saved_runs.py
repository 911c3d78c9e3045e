"""Synthetic saved runs for the results tests: a run of three cases in pytest-benchmark's layout
with segbench's extra_info (:func:`make_run`), a shard of it with a segbench block
(:func:`shard`), and the command line called in-process (:func:`run_cli`)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from segbench.cli import main

# (case, shape, reference s, candidate s, class Dice, Dice vs truth or None)
CASES = [
    ("phantom_a_s1.nii.gz", (64, 64, 40), 2.5, 1.25, {"1": 1.0, "2": 0.99871, "3": 0.99995}, 0.91),
    ("phantom_b_s2.nii.gz", (96, 80, 32), 1.2, 1.0, {"1": 0.99990, "2": 1.0}, 0.85),
    ("scan_c.nii.gz", (48, 48, 24), 0.6, 0.5, {"1": 0.99950, "3": 0.99700}, None),
]


def _bench(case: str, role: str, info: dict[str, Any], latency: float) -> dict[str, Any]:
    return {
        "group": case,
        "name": f"{role}[{case}]",
        "fullname": f"tests/test_regression.py::test_{role}[{case}]",
        "params": {"segbench_case": f"UNSERIALIZABLE[{case}]"},
        "param": case,
        "extra_info": info,
        "options": {"min_rounds": 3, "timer": "perf_counter", "warmup": False},
        "stats": {
            "min": latency + 1e-4,
            "max": latency * 1.2,
            "mean": latency * 1.1,
            "median": latency * 1.05,
            "rounds": 3,
            "iterations": 1,
            "data": [latency + 1e-4, latency * 1.05, latency * 1.2],
        },
    }


def make_run(
    slow_candidate: float = 1.0, dice_drop: float = 0.0, failed_dice: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A saved run in pytest-benchmark's layout with segbench's extra_info on both roles."""
    benches = []
    for case, shape, ref_s, cand_s, class_dice, truth in CASES:
        cand_s *= slow_candidate
        dice = {k: max(0.0, v - dice_drop) for k, v in class_dice.items()}
        mean = round(sum(dice.values()) / len(dice), 6)
        common = {
            "case": case,
            "model": "synthetic",
            "shape": list(shape),
            "spacing": [1.5, 1.5, 3.0],
            "voxels": int(np.prod(shape)),
            "network_shape": [s // 2 for s in shape],
            "estimator": "min",
        }
        ref = {
            **common,
            "role": "reference",
            "backend": "torch",
            "provider": "cpu",
            "stages_s": {
                "preprocess": 0.05,
                "inference": ref_s - 0.1,
                "postprocess": 0.05,
                "total": ref_s,
            },
            "latency_s": ref_s,
        }
        cand = {
            **common,
            "role": "candidate",
            "backend": "onnx",
            "provider": "CPUExecutionProvider",
            "stages_s": {
                "preprocess": 0.05,
                "inference": cand_s - 0.1,
                "postprocess": 0.05,
                "total": cand_s,
            },
            "latency_s": cand_s,
            "mean_dice": mean,
            "class_dice": dice,
            "flipped_fraction": 1e-5,
            "max_abs_logit_diff": 0.02,
            "reference_s": ref_s,
            "candidate_s": cand_s,
            "speedup": ref_s / cand_s,
            "gates": {"dice": case not in failed_dice, "speedup": ref_s / cand_s >= 1.0},
        }
        if truth is not None:
            ref["dice_vs_ground_truth"] = truth
            cand["dice_vs_ground_truth"] = truth + 0.001
        benches += [_bench(case, "reference", ref, ref_s), _bench(case, "candidate", cand, cand_s)]
    return {
        "machine_info": {
            "node": "ci",
            "machine": "x86_64",
            "python_version": "3.11.7",
            "cpu": {"brand_raw": "Test CPU", "count": 2},
        },
        "commit_info": {"id": "0123456789abcdef0123", "branch": "main", "dirty": False},
        "benchmarks": benches,
        "datetime": "2026-01-01T00:00:00+00:00",
        "version": "5.3.1",
    }


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([str(a) for a in argv], out=out)
    return code, out.getvalue()


SUITE = [c[0] for c in CASES]


def settings() -> dict[str, Any]:
    """A shard's settings fingerprint (the plugin writes the same layout)."""
    return {
        "model": "synthetic",
        "weights_sha256": "ab" * 32,
        "card": {
            "spacing": [3.0, 3.0, 3.0],
            "patch_size": [64, 64, 64],
            "tile_step": 0.8,
            "classes": 4,
        },
        "onnx": {"source": "export", "sha256": "cd" * 32},
        "config_sha256": "ef" * 32,
        "config": {
            "gates": {
                "dice_min": 0.99,
                "class_dice_min": 0.95,
                "min_class_voxels": 1000,
                "speedup_min": 1.0,
            },
            "timing": {"rounds": 3, "warmup_rounds": 2, "estimator": "min"},
            "profiles": {},
            "cases": {},
        },
        "versions": {
            "segbench": "0.1.0",
            "torch": "2.13.0+cpu",
            "onnxruntime": "1.32.0",
            "numpy": "2.4.6",
            "scipy": "1.17.1",
        },
        "options": {
            "injection": "none",
            "baseline": None,
            "max_voxels": 314572800,
            "require_gpu": False,
        },
    }


def shard(
    cases: list[str], group: int | None, splits: int = 2, node: str = "ci-1", **run_kw: Any
) -> dict[str, Any]:
    """The saved run of one shard: ``cases`` of the synthetic suite, with a segbench block."""
    data = make_run(**run_kw)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["case"] in cases]
    data["machine_info"] = {**data["machine_info"], "node": node}
    data["segbench"] = {
        "format": 1,
        "settings": settings(),
        "suite": list(SUITE),
        "cases": list(cases),
        "shard": {"splits": splits, "group": group} if group else None,
        "model_option": "synthetic",
        "config_source": "benchmarks.json",
    }
    return data
