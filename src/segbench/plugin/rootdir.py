"""The space form of a path option (``--segbench-data /data/scans``) must not move the rootdir.

pytest chooses its rootdir and ini file from the command line before any plugin's options are
known: an unknown option's value that is an existing path counts as a test path then, so the
rootdir becomes the common parent of the project and the data, and the project's
``benchmarks.json``, ``[tool.pytest.ini_options]`` and cache are lost, and the node ids change.
By ``pytest_load_initial_conftests`` the options are known: the choice is made again without
segbench's values, and a session that would differ stops with the fix (the ``=`` form).
"""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from segbench.plugin.options import CONFIG_NAME, SPECS

VALUED = {spec.option for spec in SPECS if spec.metavar is not None}


def space_forms(args: Sequence[str]) -> list[tuple[str, str]]:
    """``(option, value)`` of every segbench option written ``--segbench-X VALUE`` whose value
    is an existing path (pytest took it for a test path)."""
    found = []
    for option, value in itertools.pairwise(args):
        if option == "--":
            break
        if option in VALUED and not value.startswith("-") and os.path.exists(value):
            found.append((option, value))
    return found


def recomputed(config: pytest.Config) -> tuple[Path, Path | None] | None:
    """(rootdir, ini file) as pytest chooses them from the command line now that segbench's
    options are parsed, or None when this pytest's ``determine_setup`` cannot be called so."""
    from _pytest.config import findpaths

    ns = config.known_args_namespace
    given: dict[str, Any] = {
        "inifile": getattr(ns, "inifilename", None),
        "override_ini": getattr(ns, "override_ini", None),
        "args": list(getattr(ns, "file_or_dir", None) or []),
        "rootdir_cmd_arg": getattr(ns, "rootdir", None) or None,
        "invocation_dir": config.invocation_params.dir,
    }
    try:
        accepted = inspect.signature(findpaths.determine_setup).parameters
        if not {"args", "invocation_dir"} <= set(accepted):
            return None
        rootdir, inipath, *_ = findpaths.determine_setup(
            **{k: v for k, v in given.items() if k in accepted}
        )
    except (TypeError, ValueError, AttributeError):
        return None
    return Path(rootdir), (Path(inipath) if inipath is not None else None)


def _inside(path: str, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def check_rootdir(config: pytest.Config, args: Sequence[str]) -> None:
    """Stop with a usage error when a segbench option's space form moved pytest's rootdir or
    ini file (see the module)."""
    forms = space_forms(args)
    if not forms:
        return
    chosen = (config.rootpath, config.inipath)
    again = recomputed(config)
    if again is None:  # another pytest: refuse the space forms that point outside the rootdir
        forms = [(o, v) for o, v in forms if not _inside(v, config.rootpath)]
        if not forms:
            return
        would = None
    elif again == chosen:
        return
    else:
        would = again
    written = ", ".join(f"{o} {v}" for o, v in forms)
    fixes = " ".join(f"{o}={v}" for o, v in forms)
    inifile = chosen[1] or "none"
    message = (
        f"{written}: pytest chose its rootdir ({chosen[0]}) and ini file ({inifile}) from the "
        "command line before segbench's options were known, taking "
        f"{' and '.join(v for _, v in forms)} for a test path"
    )
    if would is not None:
        lost = []
        if would[0] != chosen[0] and (would[0] / CONFIG_NAME).is_file():
            lost.append(str(would[0] / CONFIG_NAME))
        if would[1] is not None and would[1] != chosen[1]:
            what = "[tool.pytest.ini_options]" if would[1].name == "pyproject.toml" else "settings"
            lost.append(f"the {what} of {would[1]}")
        if would[0] != chosen[0]:
            lost.append(f"its rootdir {would[0]} (node ids, the cache)")
        if lost:
            listed = ", ".join(lost[:-1]) + (" and " if len(lost) > 1 else "") + lost[-1]
            message += f"; this session would lose {listed}"
    raise pytest.UsageError(f"{message}. Fix: write {fixes}")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    check_rootdir(early_config, args)
