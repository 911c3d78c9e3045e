"""The Makefile's set-up: .venv made on first use, re-installed only when pyproject.toml or
constraints-cpu.txt changed, CPU torch alone from TORCH_INDEX (dry runs, nothing installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry(folder: Path, *args: str) -> list[str]:
    # under `make test` the outer make's variables would make this one a sub-make, which
    # prints "Entering directory" lines: run it as a make of its own
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    joined = out.stdout.replace("\\\n", " ")  # continued recipe lines as one
    return [" ".join(line.split()) for line in joined.splitlines()]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "constraints-cpu.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _age(path: Path, seconds: int) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def test_first_use_makes_the_venv_and_installs(checkout: Path) -> None:
    lines = _dry(checkout, "test")
    assert lines[0].endswith("-m venv .venv")
    torch = next(line for line in lines if "--no-deps" in line)
    assert "--index-url https://download.pytorch.org/whl/cpu torch" in torch
    assert "-c constraints-cpu.txt" in torch
    assert any('-e ".[cpu,dev]"' in line for line in lines)
    assert lines[-1] == ".venv/bin/pytest --benchmark-skip"


def test_current_venv_is_reused_and_a_changed_pin_reinstalls(checkout: Path) -> None:
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").touch()
    for name in ("pyproject.toml", "constraints-cpu.txt"):
        _age(checkout / name, 60)
    (checkout / ".venv" / ".segbench-installed").touch()
    assert _dry(checkout, "bench") == [".venv/bin/pytest --benchmark-only"]
    (checkout / "constraints-cpu.txt").touch()  # newer than the stamp
    lines = _dry(checkout, "bench")
    assert not any("-m venv" in line for line in lines)
    assert sum("pip install" in line for line in lines) == 2
    assert lines[-1] == ".venv/bin/pytest --benchmark-only"


def test_torch_index_can_be_left_to_pip_config(checkout: Path) -> None:
    lines = _dry(checkout, "install", "TORCH_INDEX=")
    torch = next(line for line in lines if "--no-deps" in line)
    assert "--index-url" not in torch and torch.endswith(" torch")


def test_fast_subset_deselects_the_slow_tests(checkout: Path) -> None:
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").touch()
    (checkout / ".venv" / ".segbench-installed").touch()
    assert _dry(checkout, "test-fast") == ['.venv/bin/pytest --benchmark-skip -m "not slow"']
    assert _dry(checkout, "test") == [".venv/bin/pytest --benchmark-skip"]  # the whole suite
