"""The regression suite's two tests, shipped with the package: one reference and one candidate
test per CT volume. A project's whole suite file is one line::

    from segbench.suite import test_candidate, test_reference

``pytest --benchmark-only`` runs exactly these (parametrised by the segbench plugin, one pair
per case; with several named candidates, one candidate test per case and candidate). The
reference test records the PyTorch latency history; the candidate test records
the ONNX Runtime latency history and applies the Dice and speed-up gates of benchmarks.json to
the pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

    from segbench.plugin import CaseCheck

__all__ = ["test_candidate", "test_reference"]


def test_reference(segbench_check: CaseCheck, benchmark: BenchmarkFixture) -> None:
    segbench_check.measure("reference", benchmark)


def test_candidate(
    segbench_check: CaseCheck, segbench_candidate: str | None, benchmark: BenchmarkFixture
) -> None:
    segbench_check.measure("candidate", benchmark)
    segbench_check.check_gates(benchmark)
