"""The pytest plugin (the ``pytest11`` entry point): its hook functions and fixtures.

The pieces: :mod:`~segbench.plugin.options` (the option group and :class:`Options`),
:mod:`~segbench.plugin.session` (the session state), :mod:`~segbench.plugin.collection`
(parametrisation by case id, pytest-split), :mod:`~segbench.plugin.fingerprint` (the saved run's
``"segbench"`` block), :mod:`~segbench.plugin.terminal` (the table),
:mod:`~segbench.plugin.fixtures` and :mod:`~segbench.plugin.check` (:class:`CaseCheck`),
:mod:`~segbench.plugin.progress` (the live line) and :mod:`~segbench.plugin.rootdir` (the space
form of a path option must not move pytest's rootdir).
Importing the plugin imports no torch: the first case builds the runtime.
"""

from __future__ import annotations

import pytest

from segbench.plugin.check import CaseCheck
from segbench.plugin.fixtures import segbench, segbench_case, segbench_check
from segbench.plugin.options import Options, add_options
from segbench.plugin.rootdir import pytest_load_initial_conftests
from segbench.plugin.session import SESSION_NAME, SegbenchSession, session_of

__all__ = [
    "SESSION_NAME",
    "CaseCheck",
    "Options",
    "SegbenchSession",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "segbench",
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
