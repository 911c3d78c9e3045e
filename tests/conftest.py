"""Shared setup of segbench's unit tests.

Plain builders live in importable modules beside the tests (never in a test module):
``helpers`` (the tiny model, synthetic volumes and DICOM series, phantom folders, the subprocess
runner of pytest :func:`helpers.run_pytest`), ``saved_runs`` (synthetic saved runs and shards),
``hostile_files`` and ``hostile_folder`` (refused inputs), ``nnunet_folders`` (fake nnU-Net
results folders). This conftest puts them on ``sys.path`` whatever pytest's import mode, and
provides the session fixtures built once per session: the tiny network's ONNX export
(:func:`tiny_export`, :func:`tiny_onnx`). ``pytester`` runs plugin sessions in a subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

if TYPE_CHECKING:
    from segbench.pipeline.export import ExportResult

pytest_plugins = ["pytester"]


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
