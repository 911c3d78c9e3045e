"""Run the main job N times and summarise each gate's verdicts and the measured spread.

    python scripts/gate_study.py --runs 10 --out reports/study/unchanged          # unchanged
    python scripts/gate_study.py --runs 10 --out reports/study/slow -- \
        --segbench-baseline=reports/study/unchanged/run_00.json --segbench-inject=slowdown=0.3
    python scripts/gate_study.py --runs 10 --out reports/study/perturb -- \
        --segbench-inject=perturb=0.02
    python scripts/gate_study.py --runs 10 --out reports/study/shift -- --segbench-inject=shift=1

Everything after ``--`` goes to pytest. Each run writes pytest-benchmark JSON into --out; the
summary (runs in which each gate failed; per case: speed-up min/median/max, mean Dice min, worst
class Dice min, gate failures) is printed as Markdown. With a baseline, the speed-up gates are
also recomputed from each run's saved speed-ups under benchmarks.json's current thresholds
(``speedup_min``, per-case ``speedup_drop_max``, ``suite_speedup_drop_max``), so a study keeps
its meaning when a threshold changes; ``--recompute DIR`` does only that for a finished study.
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


def run_once(index: int, out: Path, extra: list[str]) -> tuple[Path, float, int]:
    path = out / f"run_{index:02d}.json"
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--benchmark-only",
            "-q",
            f"--benchmark-json={path}",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return path, time.perf_counter() - start, proc.returncode


def recompute(runs: list[dict], config: Path) -> str:
    """The speed-up gates' verdicts on saved runs under the thresholds of ``config``."""
    from segbench.scoring.gates import check_suite_speedup
    from segbench.settings.config import load_config

    gates = load_config(config).gates
    case_fails = runs_case = runs_suite = runs_any = total = 0
    for data in runs:
        pairs = {
            i["case"]: (i["speedup"], i["baseline_speedup"])
            for b in data["benchmarks"]
            if (i := b["extra_info"]).get("role") == "candidate"
            and i.get("speedup") is not None
            and i.get("baseline_speedup") is not None
        }
        failed = [
            c
            for c, (s, base) in pairs.items()
            if s < gates.speedup_min or s < base * (1 - gates.speedup_drop_max)
        ]
        suite = check_suite_speedup(pairs, gates.suite_speedup_drop_max)
        suite_failed = suite is not None and not suite.passed
        total += len(pairs)
        case_fails += len(failed)
        runs_case += bool(failed)
        runs_suite += suite_failed
        runs_any += bool(failed) or suite_failed
    return (
        f"speed-up gates recomputed under {config} (speedup_min {gates.speedup_min}, "
        f"speedup_drop_max {gates.speedup_drop_max}, suite_speedup_drop_max "
        f"{gates.suite_speedup_drop_max}): case-runs failing {case_fails}/{total}; runs failing "
        f"per case {runs_case}/{len(runs)}, suite {runs_suite}/{len(runs)}, either "
        f"{runs_any}/{len(runs)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("reports/gate_study"))
    parser.add_argument("--config", type=Path, default=Path("benchmarks.json"))
    parser.add_argument(
        "--recompute",
        type=Path,
        default=None,
        help="only recompute the speed-up gates of the runs saved in this folder",
    )
    args, extra = parser.parse_known_args()
    if args.recompute is not None:
        saved = [json.loads(p.read_text()) for p in sorted(args.recompute.glob("run_*.json"))]
        print(recompute(saved, args.config))
        return
    extra = [a for a in extra if a != "--"]
    args.out.mkdir(parents=True, exist_ok=True)
    speedups: dict[str, list[float]] = defaultdict(list)
    dices: dict[str, list[float]] = defaultdict(list)
    worst: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    runs_failed: dict[str, int] = defaultdict(int)
    walls = []
    saved: list[dict] = []
    for i in range(args.runs):
        path, wall, code = run_once(i, args.out, extra)
        walls.append(wall)
        data = json.loads(path.read_text()) if path.is_file() else {"benchmarks": []}
        saved.append(data)
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

    if any(b["extra_info"].get("baseline_speedup") for d in saved for b in d["benchmarks"]):
        print("\n" + recompute(saved, args.config))


if __name__ == "__main__":
    main()
