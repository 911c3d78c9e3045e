"""A session interrupted (Ctrl-C, KeyboardInterrupt) in the middle of a case ends cleanly: the
cases that finished stay in the table and in the saved run, and one line says what was cut.

pytest-benchmark records a benchmark's statistics when ``pedantic`` starts; a round cut short
leaves one with no timing at all, and writing the run then fails inside pytest-benchmark
(``ValueError: min() arg is an empty sequence``), losing every finished case with it.
:func:`drop_unfinished` marks such benchmarks as errors, pytest-benchmark's own flag for "do not
save or show", before pytest-benchmark writes the run.
"""

from __future__ import annotations

from typing import Any

import pytest


def drop_unfinished(config: pytest.Config) -> list[str]:
    """Mark the benchmarks with no timed round as errors (pytest-benchmark then leaves them
    out of the saved run and its table); return their names."""
    session = getattr(config, "_benchmarksession", None)
    dropped = []
    for bench in getattr(session, "benchmarks", None) or []:
        stats: Any = getattr(bench, "stats", None)
        fixture: Any = getattr(bench, "fixture", None)  # the flag is the fixture's
        if stats is None or getattr(stats, "data", None) or fixture is None:
            continue
        if not fixture.has_error:
            fixture.has_error = True
            dropped.append(str(getattr(bench, "name", "?")))
    return dropped


def interrupted_line(dropped: list[str], finished: int, json_path: object | None) -> str:
    """The one line of an interrupted session: what was cut, what is kept and where."""
    cut = f"; left out, unfinished: {', '.join(dropped)}" if dropped else ""
    saved = f" and saved to {json_path}" if json_path else ""
    cases = f"{finished} finished case{'s' if finished != 1 else ''}"
    return (
        f"segbench: interrupted (KeyboardInterrupt): the {cases} "
        f"{'is' if finished == 1 else 'are'} kept in the table{saved}"
        f"{cut}. Fix: run the session again to measure the rest (-k selects cases)"
    )
