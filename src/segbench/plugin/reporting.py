"""How a session reports what goes wrong: the session's errors once, a case's errors in one line.

* The session's errors (the model, its weights, the ONNX file, the runtime build, a ``"cases"``
  key of the config that names no case) are found when collection finishes, before any test
  runs, and become one usage error (exit code 4) instead of one traceback per test
  (:func:`check_session`).
* A case's error (a :class:`~segbench.errors.SegbenchError` while loading or running one volume)
  is reported as its message alone, without the traceback, unless ``--tb=long`` or ``-v`` asks
  for it (:func:`shorten`); the candidate test of a case whose reference test already failed
  that way is skipped, naming the test that reported it. Other exceptions are bugs and keep
  their traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from segbench.errors import SegbenchError
from segbench.plugin.collection import case_id_of, role_of
from segbench.plugin.session import SegbenchSession
from segbench.settings.config import check_case_keys


def will_run(item: pytest.Item) -> bool:
    """A per-volume test that collection left to run (not skipped by a ``skip`` mark, e.g.
    pytest-benchmark's ``--benchmark-skip``)."""
    return case_id_of(item) is not None and item.get_closest_marker("skip") is None


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    dist = getattr(config.option, "dist", "no")
    return not _is_xdist_worker(config) and dist not in (None, "no")


def check_config_cases(session: SegbenchSession) -> None:
    """The config's ``"cases"`` keys against every case id found (selected or not): a typo is
    a usage error naming the file and the closest case ids."""
    try:
        check_case_keys(session.bench, [c.id for c in session.cases])
    except SegbenchError as exc:
        raise pytest.UsageError(str(exc)) from exc


def check_session(
    session: SegbenchSession, config: pytest.Config, items: Sequence[pytest.Item]
) -> None:
    """After collection: when per-volume tests were collected, check the config's case keys;
    when they are also going to run, build the runtime now, so that a session's error is one
    usage error. An xdist worker leaves both to its tests (its errors reach the controller
    per test); the controller checks the case keys at session start (see
    :func:`check_controller`)."""
    if _is_xdist_worker(config) or not any(case_id_of(i) is not None for i in items):
        return
    check_config_cases(session)
    option = config.option
    if option.collectonly or getattr(option, "setupplan", False):
        return
    if not any(will_run(i) for i in items):
        return
    try:
        session.runtime  # noqa: B018 - built here, once, for every case
    except SegbenchError as exc:
        raise pytest.UsageError(str(exc)) from exc


def check_controller(session: SegbenchSession, config: pytest.Config) -> None:
    """pytest-xdist's controller collects nothing: check the config's case keys here."""
    if _is_xdist_controller(config) and session.cases:
        check_config_cases(session)


def wants_traceback(config: pytest.Config) -> bool:
    return config.option.tbstyle == "long" or config.option.verbose > 0


def segbench_error(call: pytest.CallInfo[Any]) -> SegbenchError | None:
    excinfo = call.excinfo
    if excinfo is None or not isinstance(excinfo.value, SegbenchError):
        return None
    return excinfo.value


def shorten(
    session: SegbenchSession,
    item: pytest.Item,
    call: pytest.CallInfo[Any],
    report: pytest.TestReport,
) -> None:
    """A per-volume test that failed with a :class:`SegbenchError`: its message replaces the
    traceback (unless asked for), and a reference test's case error is noted so that the
    candidate test of the case is skipped."""
    case = case_id_of(item)
    error = segbench_error(call)
    if case is None or error is None or not report.failed:
        return
    if role_of(item) == "reference":
        session.case_errors.setdefault(case, item.name)
    if not wants_traceback(item.config):
        report.longrepr = str(error)
