"""Top-level conftest: load the segbench plugin from a bare checkout (PYTHONPATH=src).

When segbench is installed, its ``pytest11`` entry point loads the plugin already.
"""

from importlib.metadata import entry_points

if not any(ep.value == "segbench.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["segbench.plugin"]
