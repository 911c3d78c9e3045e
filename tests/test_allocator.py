"""segbench.bench.allocator: the session's malloc mode and what it changes (page faults/round)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from segbench.bench.allocator import MALLOC_MODES, configure_malloc

LINUX_GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# allocate, touch and free a 64 MB buffer 5 times, as a forward pass does with its activations;
# print the minor page faults of the first round and the sum of the other 4
PROBE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from segbench.bench.allocator import configure_malloc
    print(configure_malloc(sys.argv[1]))
    faults = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        buf = np.ones(16 * 2**20, dtype=np.float32)
        del buf
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(faults[0], sum(faults[1:]))
    """
)


def _probe(mode: str) -> tuple[str, int, int]:
    """What the mode gave, the first round's page faults and the next four rounds' sum."""
    *words, first, rest = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return " ".join(words), int(first), int(rest)


def test_modes_and_bad_mode() -> None:
    assert MALLOC_MODES == ("steady", "system")
    assert configure_malloc("system") == "system"
    with pytest.raises(ValueError, match="'fast'"):
        configure_malloc("fast")


@pytest.mark.skipif(not LINUX_GLIBC, reason="mallopt thresholds are glibc's")
def test_steady_reuses_the_heap_where_system_faults_every_round() -> None:
    steady, steady_first, steady_rest = _probe("steady")
    system, system_first, system_rest = _probe("system")
    assert (steady, system) == ("steady", "system")
    # (pages may be 4 KiB or transparent huge pages: compare rounds, not a page count)
    assert system_first > 0 and system_rest >= 4 * system_first * 0.9  # mmapped anew each round
    assert steady_first > 0 and steady_rest < steady_first * 0.5  # kept on the heap
