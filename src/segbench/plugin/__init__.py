"""The pytest plugin (the ``pytest11`` entry point): its hook functions and fixtures.

The pieces: :mod:`~segbench.plugin.options` (the option group and :class:`Options`),
:mod:`~segbench.plugin.session` (the session state), :mod:`~segbench.plugin.collection`
(parametrisation by case id, pytest-split), :mod:`~segbench.plugin.fingerprint` (the saved run's
``"segbench"`` block), :mod:`~segbench.plugin.terminal` (the table),
:mod:`~segbench.plugin.fixtures`, :mod:`~segbench.plugin.check` (:class:`CaseCheck`),
:mod:`~segbench.plugin.reporting` (a session's errors once, a case's errors in one line),
:mod:`~segbench.plugin.progress` (the live line), :mod:`~segbench.plugin.savejson`
(``--benchmark-json`` written atomically) and :mod:`~segbench.plugin.rootdir` (the space
form of a path option must not move pytest's rootdir).
Importing the plugin imports no torch: the runtime is built once per-volume tests are collected.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from segbench.plugin.check import CaseCheck
from segbench.plugin.fixtures import segbench, segbench_candidate, segbench_case, segbench_check
from segbench.plugin.interrupts import drop_unfinished
from segbench.plugin.options import Options, add_options
from segbench.plugin.reporting import check_controller, check_session, shorten
from segbench.plugin.rootdir import pytest_load_initial_conftests
from segbench.plugin.savejson import install as install_atomic_json
from segbench.plugin.session import SESSION_NAME, SegbenchSession, session_of

__all__ = [
    "SESSION_NAME",
    "CaseCheck",
    "Options",
    "SegbenchSession",
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "segbench",
    "segbench_candidate",
    "segbench_case",
    "segbench_check",
    "session_of",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "segbench: a per-volume regression case of segbench")
    if config.pluginmanager.get_plugin(SESSION_NAME) is None:
        config.pluginmanager.register(SegbenchSession(config), SESSION_NAME)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Right before pytest-split selects: set aside the candidates (see
    :meth:`segbench.plugin.collection.Collection.before_split`).

    pytest-split selects in the ``trylast`` ``pytest_collection_modifyitems`` of an object it
    registers in ``pytest_configure``. pluggy calls ``trylast`` implementations in the order
    they were registered, and this module is registered when plugins load, before any
    ``pytest_configure``: so this runs after -k, -m and every ordinary plugin, and before the
    split. The session's wrapper then runs after all of them."""
    plugin = config.pluginmanager.get_plugin(SESSION_NAME)
    if isinstance(plugin, SegbenchSession):
        plugin.before_split(items)


def _session(config: pytest.Config) -> SegbenchSession | None:
    plugin = config.pluginmanager.get_plugin(SESSION_NAME)
    return plugin if isinstance(plugin, SegbenchSession) else None


def pytest_sessionstart(session: pytest.Session) -> None:
    plugin = _session(session.config)
    if plugin is not None:
        check_controller(plugin, session.config)
    install_atomic_json(session)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Before pytest-benchmark writes the run (its own wrapper, inside this one): benchmarks a
    Ctrl-C cut short are left out (see :mod:`segbench.plugin.interrupts`), so that the cases
    that finished are saved."""
    plugin = _session(session.config)
    if plugin is not None:
        plugin.unfinished = drop_unfinished(session.config)
        plugin.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    return (yield)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The session's errors (model, weights, ONNX file, runtime, config) as one usage error,
    before any test runs (see :func:`segbench.plugin.reporting.check_session`)."""
    plugin = _session(session.config)
    if plugin is not None:
        check_session(plugin, session.config, session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A case's :class:`~segbench.errors.SegbenchError` in one line (see
    :func:`segbench.plugin.reporting.shorten`)."""
    report = yield
    plugin = _session(item.config)
    if plugin is not None:
        shorten(plugin, item, call, report)
    return report
