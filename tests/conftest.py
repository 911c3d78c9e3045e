"""Shared setup of segbench's unit tests: ``helpers`` (the tiny model, synthetic volumes and the
one subprocess runner of pytest, :func:`helpers.run_pytest`) is importable from every test
module, whatever pytest's import mode."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
