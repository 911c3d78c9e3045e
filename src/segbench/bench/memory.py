"""Memory probes of the running process: a big array parked on disk while the other backend runs,
and the peak resident memory of each test."""

from __future__ import annotations

import os
import resource
import sys
import tempfile

import numpy as np


def park(array: np.ndarray) -> np.ndarray:
    """``array`` written to a temporary ``.npy`` file and mapped back read-only.

    While the other backend runs, a kept K x grid logits array then costs page cache, not
    resident memory: its pages enter the process's RSS only when read (by the logit
    difference). The file is unlinked at once; the mapping keeps it alive until it is dropped.
    """
    with tempfile.NamedTemporaryFile(prefix="segbench-logits-", suffix=".npy", delete=False) as f:
        np.save(f, array)
    mapped = np.load(f.name, mmap_mode="r")
    try:
        os.unlink(f.name)
    except OSError:  # Windows: an open mapping cannot be unlinked; the temp dir keeps it
        pass
    return mapped


def peak_rss_mb() -> float:
    """Peak resident memory in MiB: since the last :func:`reset_peak_rss` where Linux allows
    the reset (``VmHWM``), else the process's peak so far (``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def reset_peak_rss() -> bool:
    """Start a new peak-memory window (Linux: ``clear_refs`` 5 resets ``VmHWM`` to the
    current RSS), so each test reports its own peak; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False
