"""The session's output file, checked when the session starts: pytest-benchmark opens
``--benchmark-json`` only when the session ends, so a folder given there (or a folder that does
not exist) would cost the whole session's measurements."""

from __future__ import annotations

import os
from pathlib import Path

from segbench.errors import ConfigError


def check_json_target(path: Path | None, option: str = "--benchmark-json") -> None:
    """Raise :class:`ConfigError` when ``path`` is a folder, or its folder is missing or not
    writable: one line naming the option, what is wrong and the fix."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{option}={path} is a folder, not a file name: the run could not be saved. "
            f"Fix: name the file, e.g. {option}={path / 'run.json'}"
        )
    parent = path.parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise ConfigError(
            f"{option}={path}: its folder {parent} {what}. Fix: create the folder first, or "
            "choose another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option}={path}: its folder {parent} is not writable. Fix: choose a writable folder"
        )
