"""Plots without matplotlib or without a writable folder raise PlotError with the fix."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segbench.results.plots import PlotError, plot_disagreement, prepare_target


def _three() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ct = np.full((6, 6, 4), -1000.0, dtype=np.float32)
    ref = np.zeros((6, 6, 4), dtype=np.uint8)
    cand = ref.copy()
    cand[2, 2, 1] = 1
    return ct, ref, cand


def test_missing_matplotlib_is_a_plot_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(PlotError, match=r"Fix: pip install 'segbench\[report\]'"):
        plot_disagreement(*_three(), tmp_path / "d.png", "case")
    assert not (tmp_path / "d.png").exists()


def test_file_where_the_folder_should_be(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    blocker = tmp_path / "report"
    blocker.write_text("a file, not a folder")
    target = blocker / "sub" / "d.png"
    with pytest.raises(PlotError, match=r"d\.png: cannot write the plot .*Fix: choose a writable"):
        plot_disagreement(*_three(), target, "case")
    with pytest.raises(PlotError, match="--segbench-report-dir"):
        prepare_target(blocker / "latency.png")


def test_parent_folder_is_created(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "new" / "deeper" / "d.png"
    z = plot_disagreement(*_three(), target, "case")
    assert z == 1 and target.stat().st_size > 0


def test_savefig_os_error_is_a_plot_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Figure, "savefig", read_only)
    with pytest.raises(PlotError, match="Read-only file system"):
        plot_disagreement(*_three(), tmp_path / "d.png", "case")
