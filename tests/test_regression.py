"""The regression suite: one reference and one candidate test per CT volume.

``pytest --benchmark-only`` runs exactly these. The reference test records the PyTorch
latency history; the candidate test records the ONNX Runtime latency history and applies the
Dice and speed-up gates of benchmarks.json to the pair.
"""

from segbench.plugin import CaseCheck


def test_reference(segbench_check: CaseCheck, benchmark) -> None:
    segbench_check.measure("reference", benchmark)


def test_candidate(segbench_check: CaseCheck, benchmark) -> None:
    segbench_check.measure("candidate", benchmark)
    segbench_check.check_gates(benchmark)
