"""Hostile saved runs, gate files and names, round 3: a gate that fails closed, names escaped
for their destination, run files written atomically, malformed runs refused in one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from test_cli import make_run, run_cli, write

from segbench.results.decision import gate_decision, run_gates
from segbench.results.runs import parse_run

NOISY = ([1.0, 2.0, 1.3], [1.6, 1.1, 1.9], [0.9, 1.7, 1.2])  # pairs too noisy to settle
NOISY_BASE = ([1.5, 1.2, 1.8], [1.3, 1.9, 1.2], [1.1, 1.6, 1.4])


def noisy_run(inconclusive_fails: bool) -> dict[str, Any]:
    """A run whose every case passed and whose suite verdict against its baseline is
    inconclusive, saved with ``gates.inconclusive_fails`` as given."""
    data = make_run()
    cands = [b for b in data["benchmarks"] if b["extra_info"]["role"] == "candidate"]
    for bench, pairs, base in zip(cands, NOISY, NOISY_BASE, strict=True):
        bench["extra_info"].update(
            pair_speedups=pairs, baseline_pair_speedups=base, verdict="inconclusive"
        )
        bench["extra_info"]["gates"] = {"dice": True, "speedup": True}
    data["segbench"] = {
        "format": 1,
        "settings": {"config": {"gates": {"inconclusive_fails": inconclusive_fails}}},
    }
    return data


def test_inconclusive_fails_reaches_the_gate_decision(tmp_path: Path) -> None:
    lenient = parse_run(noisy_run(False))
    assert not run_gates(lenient).inconclusive_fails
    decision = gate_decision(lenient)
    assert decision.passed and any("inconclusive" in n for n in decision.notes), decision
    strict = parse_run(noisy_run(True))
    assert run_gates(strict).inconclusive_fails
    decision = gate_decision(strict)
    assert not decision.passed, decision
    assert any("suite: inconclusive" in p and "too noisy" in p for p in decision.problems)
    code, _ = run_cli("gate", str(write(tmp_path / "strict.json", noisy_run(True))))
    assert code == 1
    code, _ = run_cli("gate", str(write(tmp_path / "lenient.json", noisy_run(False))))
    assert code == 0
