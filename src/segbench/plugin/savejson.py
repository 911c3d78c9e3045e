"""pytest-benchmark's ``--benchmark-json`` file, written atomically.

pytest-benchmark (5.x) keeps the option as a path and, at the end of the session, opens it
with ``open(path, "wb")``: the previous file is truncated first, so a write that fails (a full
disk, a killed job) leaves a cut file that is not JSON where a good run was. segbench replaces
that one method of the benchmark session with :func:`segbench.cachefiles.write_bytes_atomic`
(same bytes: pytest-benchmark's own ``safe_dumps``): a failed write leaves the previous file
whole, says so in one line and makes the session fail (exit 3), and a symlink is not written
through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segbench.cachefiles import write_bytes_atomic
from segbench.errors import SegbenchError
from segbench.results.escape import terminal


def install(session: pytest.Session) -> None:
    """Make the benchmark session of ``session`` write ``--benchmark-json`` atomically (once;
    nothing when pytest-benchmark is absent or the option is not given)."""
    bench = getattr(session.config, "_benchmarksession", None)
    target = getattr(bench, "json", None)
    if bench is None or not isinstance(target, str | Path) or "save_json" in vars(bench):
        return
    bench.save_json = lambda output_json: save_json(session, bench, Path(target), output_json)


def save_json(session: pytest.Session, bench: Any, path: Path, output_json: Any) -> None:
    """Write ``output_json`` to ``path`` as pytest-benchmark would, atomically; a failure is
    one error line and exit status 3, the previous file kept."""
    from pytest_benchmark.utils import safe_dumps

    data = safe_dumps(output_json, ensure_ascii=True, indent=4).encode()
    try:
        write_bytes_atomic(path, data)
    except (OSError, SegbenchError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        bench.logger.error(
            terminal(
                f"segbench: --benchmark-json={path} was not written ({reason}); the file "
                "there before is unchanged. Fix: free space or choose another path, then rerun"
            )
        )
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    bench.logger.info(f"Wrote benchmark data in: {path}", purple=True)
