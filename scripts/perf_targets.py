"""Measure the performance targets (issue "Performance") and print them as a Markdown table.

    python scripts/perf_targets.py --out reports/perf            # everything, ~25 min on 2 cores
    python scripts/perf_targets.py --out reports/perf --only main tsfast

Each target is measured by a pytest-benchmark run of the suite (benchmarks measure; nothing is
asserted here) whose command is printed beside its figure, so any row can be rerun by hand:

- main:    the default main job (demo model): speed-up and mean Dice per case, pre + post share
           of end to end, wall time of the session;
- tsfast:  ``ts-fast`` on example_ct_sm, nnU-Net's padding to the whole patch: ORT latency and
           achieved GFLOP/s (FLOPs counted from the network) against this CPU's float32 matmul
           rate (numpy sgemm, the practical peak), peak RSS;
- lean:    the same with the ``lean`` profiles (``fit_patch`` on both sides, onnxruntime without
           its CPU memory arena);
- largest: ``ts-fast`` on the largest seed20 grid (512 x 512 x 112) with the lean profiles: RSS;
- seed20:  the demo model on the 20 seed grids: wall time;
- fp16:    (optional, not in the default run) the main job with a float16 ONNX candidate
           (``"precision": "fp16"``): its accuracy-speed row.
Run it on an otherwise idle machine: a neighbour's load slows PyTorch several-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

LEAN = {
    "profiles": {
        "reference": {"backend": "torch", "fit_patch": True},
        "candidate": {"backend": "onnx", "fit_patch": True, "mem_arena": False},
    }
}
FP16 = {"profiles": {"candidate": {"backend": "onnx", "precision": "fp16"}}}
LARGEST = "spleen512x112"


def run(name: str, out: Path, args: list[str]) -> tuple[dict[str, Any], float, str]:
    """One pytest session; returns its saved run, wall seconds and the command line."""
    path = out / f"{name}.json"
    cmd = ["pytest", "--benchmark-only", "-q", *args, f"--benchmark-json={path}"]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    data = json.loads(path.read_text()) if path.is_file() else {"benchmarks": []}
    return data, wall, " ".join(cmd[:-1])


def candidates(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("role") == "candidate"
    ]


def sgemm_gflops(n: int = 3072, repeats: int = 5) -> float:
    """This CPU's float32 matrix-multiply rate (numpy's BLAS, all cores): the practical peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def share(info: dict[str, Any]) -> float:
    stages = info["stages_s"]
    return (stages["preprocess"] + stages["postprocess"]) / stages["total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/perf"))
    parser.add_argument(
        "--only",
        nargs="*",
        default=["main", "tsfast", "lean", "largest", "seed20"],
        choices=["main", "tsfast", "lean", "largest", "seed20", "fp16"],
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lean = args.out / "lean-profiles.json"  # not lean.json: that name is the lean run's
    lean.write_text(json.dumps(LEAN))
    rows: list[tuple[str, str, str]] = []
    if "main" in args.only:
        data, wall, cmd = run("main", args.out, [])
        infos = candidates(data)
        for info in infos:
            rows.append(
                (
                    f"speed-up >= 1.5x, mean Dice >= 0.999: {info['case']}",
                    f"{info['speedup']:.2f}x, Dice {info['mean_dice']:.5f}",
                    cmd,
                )
            )
            rows.append(
                (
                    f"pre + post <= 10 %: {info['case']}",
                    f"{share(info):.1%} ({info['stages_s']['preprocess']:.3f} + "
                    f"{info['stages_s']['postprocess']:.3f} of {info['stages_s']['total']:.3f} s)",
                    cmd,
                )
            )
        rows.append(("default main job <= 3 min", f"{wall:.0f} s", cmd))
    peak = sgemm_gflops() if {"tsfast", "lean"} & set(args.only) else None
    if peak is not None:
        rows.append(
            (
                "machine: numpy float32 sgemm (practical peak)",
                f"{peak:.0f} GFLOP/s",
                "python scripts/perf_targets.py",
            )
        )
    for name, extra in (("tsfast", []), ("lean", [f"--segbench-config={lean}"])):
        if name not in args.only:
            continue
        data, wall, cmd = run(
            name, args.out, ["--segbench-model=ts-fast", "--segbench-suite=none", *extra]
        )
        for info in candidates(data):
            gflops = info.get("inference_gflops")
            rows.append(
                (
                    f"ts-fast ORT >= 85 % of peak ({name}, window {info.get('window')})",
                    f"{gflops} GFLOP/s = {gflops / peak:.0%} of sgemm" if gflops and peak else "-",
                    cmd,
                )
            )
            rows.append(
                (
                    f"example_ct_sm ts-fast ORT end to end <= 5 s ({name})",
                    f"{info['candidate_s']:.2f} s (torch {info['reference_s']:.2f} s), "
                    f"peak RSS {info['peak_rss_mb'] / 1024:.1f} GiB",
                    cmd,
                )
            )
    if "largest" in args.only:
        data, wall, cmd = run(
            "largest",
            args.out,
            [
                "--segbench-model=ts-fast",
                "--segbench-suite=seed20",
                "-k",
                LARGEST,
                f"--segbench-config={lean}",
            ],
        )
        peaks: dict[str, float] = {}  # per case, the larger of its two tests' peaks
        for bench in data["benchmarks"]:
            info = bench["extra_info"]
            peaks[info["case"]] = max(peaks.get(info["case"], 0.0), info["peak_rss_mb"])
        for case, peak_mb in peaks.items():
            rows.append(
                (
                    f"ts-fast peak RSS <= 4 GB: {case} (lean)",
                    f"{peak_mb / 1024:.2f} GiB ({peak_mb * 2**20 / 1e9:.2f} GB)",
                    cmd,
                )
            )
    if "seed20" in args.only:
        data, wall, cmd = run("seed20", args.out, ["--segbench-suite=seed20"])
        speedups = [i["speedup"] for i in candidates(data) if i.get("speedup")]
        rows.append(
            (
                "seed20 with the demo model <= 15 min",
                f"{wall / 60:.1f} min, {len(speedups)} cases, speed-up median "
                f"{statistics.median(speedups):.2f}x"
                if speedups
                else f"{wall / 60:.1f} min",
                cmd,
            )
        )
    if "fp16" in args.only:
        fp16 = args.out / "fp16-profiles.json"
        fp16.write_text(json.dumps(FP16))
        data, wall, cmd = run("fp16", args.out, [f"--segbench-config={fp16}"])
        for info in candidates(data):
            rows.append(
                (
                    f"fp16 candidate (accuracy-speed): {info['case']}",
                    f"{info.get('speedup') or 0:.2f}x, Dice {info['mean_dice']:.5f}, "
                    f"max logit diff {info.get('max_abs_logit_diff') or 0:.3g}",
                    cmd,
                )
            )
    print(f"\nmachine: {os.cpu_count()} CPUs\n")
    print("| target | measured | command |")
    print("| --- | --- | --- |")
    for target, figure, cmd in rows:
        print(f"| {target} | {figure} | `{cmd}` |")


if __name__ == "__main__":
    main()
