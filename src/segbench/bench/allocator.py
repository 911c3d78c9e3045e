"""The C allocator is part of what the reference is timed with: pin it for the session.

glibc serves large requests with ``mmap`` and returns freed heap to the system above a trim
threshold, and it moves both thresholds as the process runs. A PyTorch eager forward pass frees
and re-allocates its activations every window, so whether those come back as fresh pages
(page faults, zeroing) or from the heap depends on what ran before in the process: PyTorch's
latency, and with it a case's speed-up, moves with nothing but what ran before it (ONNX Runtime
keeps its own arena). ``steady`` pins both thresholds,
so every round of every case sees the same allocator, whatever ran before in the process;
``system`` leaves glibc's defaults (what a plain ``python`` process gets).
"""

from __future__ import annotations

import ctypes
import ctypes.util

from segbench.settings.kinds import MALLOC_MODES

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
# Requests below the mmap threshold come from the heap; freed heap is kept up to the trim
# threshold. 128 MiB each: PyTorch's demo-model windows (64^3) stay on the heap; ts-fast's
# largest activations stay mmapped, as with glibc's defaults, and peak memory with them (256 /
# 512 MiB raised ts-fast's peak memory on its largest seed grid by about a third).
STEADY_MMAP_THRESHOLD = 128 * 2**20
STEADY_TRIM_THRESHOLD = 128 * 2**20


def configure_malloc(mode: str) -> str:
    """Apply ``mode`` (one of MALLOC_MODES) to this process's allocator, once per session.

    Returns what is in effect: ``"steady"``, ``"system"``, or ``"system (no glibc mallopt)"``
    where the C library has no ``mallopt`` (macOS, musl), which is recorded with the run.
    """
    if mode not in MALLOC_MODES:
        raise ValueError(f"malloc mode must be one of {MALLOC_MODES}, got {mode!r}")
    if mode == "system":
        return "system"
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return "system (no glibc mallopt)"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD) == 1
    done = mallopt(M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD) == 1 and done
    return "steady" if done else "system (mallopt refused)"
