"""Run the main job N times and count each gate's failures: the Dice gate's study.

    python scripts/dice_study.py --runs 10 --out reports/study/unchanged          # unchanged
    python scripts/dice_study.py --runs 10 --out reports/study/perturb -- \
        --segbench-inject=perturb=0.02 --segbench-rounds=1 --segbench-warmup=0
    python scripts/dice_study.py --runs 10 --out reports/study/shift -- \
        --segbench-inject=shift=1 --segbench-rounds=1 --segbench-warmup=0

Everything after ``--`` goes to pytest. Each run writes pytest-benchmark JSON into --out; the
summary (runs in which each gate failed; per case: speed-up min/median/max, mean Dice min, worst
class Dice min, gate failures) is printed as Markdown. The speed-up gate against a baseline has
its own study, with verdicts: ``scripts/gate_study.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path


def main_job(path: Path, extra: list[str]) -> list[str]:
    """The command of one main job (``pytest --benchmark-only``) saving its JSON to ``path``;
    ``scripts/gate_study.py`` runs the same."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "--benchmark-only",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--benchmark-json={path}",
        *extra,
    ]


def run_once(index: int, out: Path, extra: list[str]) -> tuple[Path, float, int]:
    path = out / f"run_{index:02d}.json"
    start = time.perf_counter()
    proc = subprocess.run(main_job(path, extra), capture_output=True, text=True, check=False)
    return path, time.perf_counter() - start, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("reports/gate_study"))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    args.out.mkdir(parents=True, exist_ok=True)
    speedups: dict[str, list[float]] = defaultdict(list)
    dices: dict[str, list[float]] = defaultdict(list)
    worst: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    runs_failed: dict[str, int] = defaultdict(int)
    walls = []
    for i in range(args.runs):
        path, wall, code = run_once(i, args.out, extra)
        walls.append(wall)
        data = json.loads(path.read_text()) if path.is_file() else {"benchmarks": []}
        failed_here = []
        for bench in data["benchmarks"]:
            info = bench["extra_info"]
            if info.get("role") != "candidate" or "gates" not in info:
                continue
            case = info["case"]
            if info.get("speedup") is not None:
                speedups[case].append(info["speedup"])
            if info.get("mean_dice") is not None:
                dices[case].append(info["mean_dice"])
            if info.get("gated_class_dice_min") is not None:
                worst[case].append(info["gated_class_dice_min"])
            for gate, passed in info["gates"].items():
                if not passed:
                    failures[gate] += 1
                    failed_here.append(f"{gate}:{case}")
        for gate in {f.split(":")[0] for f in failed_here}:
            runs_failed[gate] += 1
        print(
            f"run {i + 1}/{args.runs}: exit {code}, {wall:.0f} s, failed gates: "
            f"{', '.join(failed_here) or 'none'}",
            flush=True,
        )
    print(
        f"\npytest args: {' '.join(extra) or '(none)'}; runs: {args.runs}; wall per run "
        f"min/median/max {min(walls):.0f}/{statistics.median(walls):.0f}/{max(walls):.0f} s"
    )
    print(
        f"gate failures (case-runs): dice {failures['dice']}, speedup {failures['speedup']}; "
        f"runs with a failure: dice {runs_failed['dice']}/{args.runs}, speedup "
        f"{runs_failed['speedup']}/{args.runs}\n"
    )
    print("| case | speed-up min | median | max | mean Dice min | worst gated class Dice min |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in sorted(set(speedups) | set(dices)):
        s = speedups.get(case) or [float("nan")]
        print(
            f"| {case} | {min(s):.3f} | {statistics.median(s):.3f} | {max(s):.3f} | "
            f"{min(dices[case]):.5f} | {min(worst[case], default=float('nan')):.4f} |"
        )


if __name__ == "__main__":
    main()
