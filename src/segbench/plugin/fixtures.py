"""The fixtures a regression test asks for: the session, the case of its parameter (a case id
string), and the paired runs of that case."""

from __future__ import annotations

import pytest

from segbench.inputs.cases import Case
from segbench.plugin.check import CaseCheck
from segbench.plugin.collection import candidate_of
from segbench.plugin.session import SegbenchSession, session_of


@pytest.fixture(scope="session")
def segbench(request: pytest.FixtureRequest) -> SegbenchSession:
    """The segbench session state (options, gate settings, cases, runtime)."""
    return session_of(request.config)


@pytest.fixture
def segbench_case(segbench: SegbenchSession, segbench_case_id: str) -> Case:
    """The case of the test's ``segbench_case_id`` parameter (a case id string: what a saved
    run records as the test's parameter)."""
    return segbench.case(segbench_case_id)


@pytest.fixture
def segbench_candidate() -> str | None:
    """The candidate a candidate test measures: ``None`` for the one unnamed candidate; with
    named candidates (benchmarks.json's ``profiles.candidates``) the plugin parametrises the
    test by name (see :mod:`segbench.plugin.collection`)."""
    return None


@pytest.fixture
def segbench_check(
    segbench: SegbenchSession, segbench_case: Case, request: pytest.FixtureRequest
) -> CaseCheck:
    """The paired reference/candidate runs of the current case (created once per case). A case
    whose reference test failed with a case error (a :class:`SegbenchError`) is skipped: that
    test reported the error."""
    reported = segbench.case_errors.get(segbench_case.id)
    if reported is not None:
        pytest.skip(f"case error reported by {reported}")
    try:
        segbench.pair(segbench_case)
    except Exception as exc:
        segbench.errors[segbench_case.id] = str(exc)
        raise
    candidate = candidate_of(request)
    return CaseCheck(segbench, segbench_case, candidate)
