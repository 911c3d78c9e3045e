"""Seeded inputs of the record writers (``Measurement``, ``GateFigures``; before them the
keyword functions ``measurement_info`` and ``gate_info``) (every optional key given or left
out, ``None`` or set) and their outputs, one JSON line each, in ``golden.jsonl``, written by
the code before the two writers became :class:`~segbench.results.record.Measurement` and
:class:`~segbench.results.record.GateFigures`; ``tests/test_record_writers.py`` compares::

    PYTHONPATH=src python tests/data/record/generate.py
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segbench.scoring.metrics import ClassDice, DiceResult, LogitDiff
from segbench.scoring.stats import Estimate, PairSample

GOLDEN = Path(__file__).resolve().parent / "golden.jsonl"
CASES = 100


def inputs(n: int = CASES, seed: int = 7) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` pairs of (measurement_info keywords, gate_info keywords)."""
    rng = random.Random(seed)

    def opt(v: Any, p: float = 0.6) -> Any:
        return v if rng.random() < p else None

    for i in range(n):
        stages = {
            "preprocess": rng.random(),
            "inference": rng.choice([0.0, rng.random() * 3]),
            "postprocess": 0.1,
            "total": 2.0,
        }
        kw: dict[str, Any] = dict(
            case=f"c{i}",
            role=rng.choice(["reference", "candidate"]),
            model="m",
            backend="onnx",
            precision="fp32",
            provider=opt("CPU"),
            io_binding=rng.random() < 0.5,
            shape=(rng.randint(1, 99), 3, 4),
            spacing=(rng.random() * 3, 1.23456789, 2.0),
            voxels=rng.randint(1, 10**6),
            network_shape=opt((1, 2, 3)),
            stages_s=opt(stages, 0.8) or {},
            estimator="min",
            latency_s=opt(rng.random()),
            peak_rss_mb=rng.random() * 1000,
            peak_rss_scope="test",
        )
        for k, v in (
            ("candidate_name", opt("ov", 0.3)),
            ("threads", opt(4, 0.4)),
            ("window", opt((64, 64, 32), 0.5)),
            ("windows", opt(rng.randint(1, 50), 0.7)),
            ("gflop_per_window", opt(rng.random() * 100, 0.7)),
            ("ground_truth", opt({"file": "t.nii.gz", "labels": "ok"}, 0.4)),
            ("dice_vs_ground_truth", opt(rng.random(), 0.6)),
        ):
            if rng.random() < 0.8:
                kw[k] = v
        per_class = tuple(
            ClassDice(label, rng.random(), rng.randint(0, 3000), rng.randint(0, 3000))
            for label in range(rng.randint(0, 4))
        )
        gk: dict[str, Any] = dict(
            dice=opt(DiceResult(per_class, rng.random()), 0.8),
            min_class_voxels=1000,
            logits=opt(LogitDiff(rng.random(), 0.1)),
            reference_s=opt(rng.random()),
            candidate_s=opt(rng.random()),
            speedup=opt(1.5),
            baseline_speedup=opt(1.2),
            injected=rng.choice(["none", "slowdown=0.5"]),
            gates={"dice": rng.random() < 0.5, "speedup": True},
        )
        ratios = [rng.random() * 3 for _ in range(rng.randint(0, 4))]
        for k, v in (
            ("pairs", opt(PairSample.from_ratios(ratios), 0.7)),
            ("interval", opt(Estimate(1.2, 1.1, 1.3))),
            ("baseline_pairs", opt(PairSample.from_ratios([1.1, 1.3]), 0.5)),
            ("change", opt(Estimate(0.9, 0.8, 1.0, 0.9))),
            ("verdict", opt("unchanged")),
            ("agreement", opt({"nsd": {"1": 0.99}}, 0.4)),
        ):
            if rng.random() < 0.8:
                gk[k] = v
        yield kw, gk


def outputs() -> list[str]:
    """One JSON line per writer call, measurement then gates, for each of :func:`inputs`."""
    from segbench.results.record import GateFigures, Measurement

    lines = []
    for kw, gk in inputs():
        lines += [json.dumps(Measurement(**kw).to_info()), json.dumps(GateFigures(**gk).to_info())]
    return lines


if __name__ == "__main__":
    GOLDEN.write_text("\n".join(outputs()) + "\n")
