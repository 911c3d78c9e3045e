"""Shared setup of segbench's unit tests.

Plain builders live in importable modules beside the tests (never in a test module):
``helpers`` (the tiny model, synthetic volumes and DICOM series, phantom folders, the subprocess
runner of pytest :func:`helpers.run_pytest`), ``saved_runs`` (synthetic saved runs and shards),
``hostile_files`` and ``hostile_folder`` (refused inputs), ``nnunet_folders`` (fake nnU-Net
results folders). This conftest puts them on ``sys.path`` whatever pytest's import mode, and
provides the session fixtures built once per session: the tiny network's ONNX export
(:func:`tiny_export`, :func:`tiny_onnx`), and :func:`plugin_session`, a plugin session through
pytest's own ``pytester``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers import ROOT, SUITE, session_args  # noqa: E402 (needs the path above)

from segbench.inputs.phantoms import default_cache_dir  # noqa: E402

if TYPE_CHECKING:
    from segbench.pipeline.export import ExportResult

pytest_plugins = ["pytester"]

# read before any test runs: pytester points HOME at its temporary folder
CACHE_DIR = default_cache_dir()


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    """The tiny U-Net (:func:`helpers.build_tiny_net`, 3 classes, seed 0) exported to ONNX once
    per session, in its own folder. Read it, never change it: copy it first."""
    pytest.importorskip("onnx")
    from helpers import build_tiny_net, tiny_card

    from segbench.pipeline.export import export_onnx

    return export_onnx(build_tiny_net(), tiny_card(), tmp_path_factory.mktemp("tiny-onnx"))


@pytest.fixture(scope="session")
def tiny_onnx(tiny_export: ExportResult) -> Path:
    """The path of :func:`tiny_export`'s ONNX file (read-only by convention)."""
    return tiny_export.path


@pytest.fixture
def plugin_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., pytest.RunResult]:
    """``run(*args, suite=SUITE, settings=True, timeout=600)``: a plugin session through
    pytest's ``pytester`` (:meth:`~pytest.Pytester.runpytest_subprocess`: the plugin loads
    torch, which an in-process run would keep for the rest of the session) in its temporary
    folder, on this checkout's sources, with :func:`helpers.session_args`."""
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    )

    def run(
        *args: str, suite: Path | None = SUITE, settings: bool = True, timeout: float = 600
    ) -> pytest.RunResult:
        argv = session_args(
            pytester.path, *args, suite=suite, settings=settings, cache_dir=CACHE_DIR
        )
        return pytester.runpytest_subprocess(*argv, timeout=timeout)

    return run
