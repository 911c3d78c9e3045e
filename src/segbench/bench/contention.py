"""What each timed run actually got of the machine: its CPU time against its wall time, and
the CPU time other processes (and the hypervisor, as steal) took on the same cores meanwhile.

A run is measured by two :class:`Snapshot` s, before and after it:

- **cpu_s**: this process's user + system seconds, with those of the child processes it
  waited for (a command deployment's), from :func:`os.times`;
- the machine's cores this process may run on (:func:`os.sched_getaffinity`), from
  ``/proc/stat``: their busy seconds (user, nice, system, irq, softirq), their steal seconds
  and their elapsed seconds (every state), at the kernel's clock tick (10 ms);
- the CPU seconds of the kernel's own threads (khugepaged, kworkers, kcompactd, kdamond),
  summed from ``/proc/<pid>/stat`` (:class:`KernelThreads`) where this process may run on every
  core: their housekeeping, most of it on this process's own memory, is not a neighbour;
- **others_share** = (busy - cpu_s - kernel + steal) / elapsed: the fraction of those cores'
  time that went to another process (or the hypervisor) while the run ran (0 on a quiet
  machine, 0.5 with a neighbour keeping one core of two busy). Where ``/proc/stat`` cannot be
  read it is ``None`` (not judged). A quiet 2-core machine's khugepaged, collapsing the huge
  pages numpy asks for on the big case's arrays, took 0.016-0.025 of the cores over runs of
  3 s: counted as others, it made a third of that case's pairs contended.

A run is **contended** when ``others_share`` is above ``busy_max``; a pair (one reference run
and the candidate round after it) is contended when either side is. A neighbour slows the two
backends unequally (PyTorch loses more to a stolen core than ONNX Runtime), so interleaving
does not cancel it: the speed-up statistics leave contended pairs out
(:meth:`segbench.bench.paired.PairedRun.pair_sample`).

**share** = cpu_s / (wall_s x threads) is the run's CPU time as a fraction of the cores it
asked for: informational (single-threaded stages such as resampling keep it below 1 on a quiet
machine), shown per role in the table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # per second
BUSY_FIELDS = (0, 1, 2, 5, 6)  # user nice system irq softirq (of the cpuN line's numbers)
STEAL_FIELD = 7
ROUNDING = 1e-9  # a share exactly at the floor (3 ticks of 150) is not above it
PF_KTHREAD = 0x00200000  # a kernel thread (linux/sched.h), in /proc/<pid>/stat's flags


@dataclass(frozen=True)
class Snapshot:
    """Clocks read at one instant (seconds): wall, this process's CPU time and, where
    ``/proc/stat`` is readable, the busy, steal and elapsed time of this process's cores."""

    wall: float
    cpu: float
    busy: float | None = None
    steal: float | None = None
    elapsed: float | None = None
    kernel: float | None = None  # the kernel threads' CPU seconds (None: not subtracted)


@dataclass(frozen=True)
class RunCpu:
    """One run's CPU figures (see the module)."""

    wall_s: float
    cpu_s: float
    threads: int
    others_share: float | None  # None: the machine's times could not be read
    resolution: float = 0.0  # the smallest others_share told from the counters' ticks
    steal_share: float | None = None  # the hypervisor's part of others_share

    @property
    def share(self) -> float:
        """CPU time over wall time times the threads asked for (0 for an empty run)."""
        denom = self.wall_s * max(self.threads, 1)
        return self.cpu_s / denom if denom > 0 else 0.0

    def contended(self, busy_max: float) -> bool:
        """Whether others took more than ``busy_max`` of the run's cores (and more than the
        counters can tell from noise: a short run's few ticks, see :func:`_resolution`)."""
        floor = max(busy_max, self.resolution) + ROUNDING
        return self.others_share is not None and self.others_share > floor


def machine_seconds(
    text: str, cpus: Sequence[int], tick: float
) -> tuple[float, float, float] | None:
    """(busy, steal, elapsed) seconds of ``cpus`` summed from ``/proc/stat``'s ``cpuN`` lines
    in ``text``; ``None`` when a CPU's line is missing or malformed."""
    wanted = {f"cpu{c}" for c in cpus}
    busy = steal = elapsed = 0.0
    found = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name not in wanted:
            continue
        try:
            values = [int(v) for v in rest.split()]
        except ValueError:
            return None
        if len(values) <= STEAL_FIELD:
            return None
        busy += sum(values[i] for i in BUSY_FIELDS)
        steal += values[STEAL_FIELD]
        elapsed += sum(values[:8])
        found += 1
    if found != len(wanted) or not wanted:
        return None
    return busy * tick, steal * tick, elapsed * tick


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return []


def process_cpu_s() -> float:
    """This process's user + system seconds, with its waited-for children's."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class KernelThreads:
    """The CPU seconds used so far by the kernel threads visible in ``proc`` (all of them, in
    a process's own PID namespace; none inside a container's). Each pid is classified once
    from its ``stat`` flags (``PF_KTHREAD``), so a reading opens only the kernel threads'
    files and new pids' (about 1 ms for 60 kernel threads)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self.kernel: dict[str, bool] = {}

    def seconds(self, tick: float) -> float:
        total = 0.0
        try:
            pids = [p for p in os.listdir(self.proc) if p.isdigit()]
        except OSError:
            return 0.0
        self.kernel = {p: self.kernel[p] for p in pids if p in self.kernel}
        for pid in pids:
            if self.kernel.get(pid) is False:
                continue
            fields = _stat_fields(self.proc / pid / "stat")
            self.kernel[pid] = fields is not None and bool(int(fields[6]) & PF_KTHREAD)
            if fields is not None and self.kernel[pid]:
                total += (int(fields[11]) + int(fields[12])) * tick
        return total


def _stat_fields(path: Path) -> list[bytes] | None:
    """``/proc/<pid>/stat``'s fields after the command name (state first); ``None`` for a
    process gone or a malformed file."""
    try:
        text = path.read_bytes()
        fields = text[text.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None
    return fields if len(fields) > 12 and fields[6].isdigit() else None


_KERNEL_THREADS = KernelThreads()


def snapshot(stat: Path = PROC_STAT) -> Snapshot:
    """Read the clocks now (about 1 ms)."""
    wall, cpu = time.perf_counter(), process_cpu_s()
    cpus = _cpus()
    try:
        found = machine_seconds(stat.read_text(), cpus, 1.0 / TICKS)
    except (OSError, ValueError):
        found = None
    if found is None:
        return Snapshot(wall, cpu)
    # kernel threads on cores this process may not use are not in ``busy``: subtracted only
    # where it may use them all
    every_core = len(cpus) == os.cpu_count()
    kernel = _KERNEL_THREADS.seconds(1.0 / TICKS) if every_core else None
    return Snapshot(wall, cpu, *found, kernel=kernel)


def run_cpu(before: Snapshot, after: Snapshot, threads: int) -> RunCpu:
    """The figures of the run between two snapshots (``others_share`` clipped to [0, 1])."""
    wall = max(after.wall - before.wall, 0.0)
    cpu = max(after.cpu - before.cpu, 0.0)
    others = stolen = None
    if None not in (before.busy, after.busy, before.elapsed, after.elapsed):
        assert before.busy is not None and after.busy is not None
        assert before.elapsed is not None and after.elapsed is not None
        elapsed = after.elapsed - before.elapsed
        steal = (after.steal or 0.0) - (before.steal or 0.0)
        kernel = 0.0
        if before.kernel is not None and after.kernel is not None:
            kernel = max(after.kernel - before.kernel, 0.0)
        if elapsed > 0:
            taken = after.busy - before.busy - cpu - kernel + steal
            others = min(max(taken / elapsed, 0.0), 1.0)
            stolen = min(max(steal / elapsed, 0.0), 1.0)
    resolution = _resolution(before, after)
    return RunCpu(round(wall, 6), round(cpu, 6), threads, others, resolution, stolen)


@dataclass(frozen=True)
class Waited:
    """What one :func:`wait_quiet` found: the seconds it waited; whether the machine is quiet
    now; whether it saw others busy first (a neighbour that comes and goes)."""

    seconds: float
    quiet: bool
    saw_busy: bool


def wait_quiet(
    busy_max: float,
    limit_s: float,
    sample: Callable[[], Snapshot] = snapshot,
    sleep: Callable[[float], None] = time.sleep,
    window_s: float = 0.1,
    settle_s: float | None = None,
) -> Waited:
    """Wait, up to ``limit_s``, for the start of a quiet phase: a ``window_s`` window during
    which others took at most ``busy_max`` of this process's cores, after one in which they
    took more. Used around contended runs: a quiet window seen before the next busy one may be
    the end of an idle phase; waiting for the next start gives the run the longest quiet
    ahead. ``settle_s``: a machine quiet for that long from the start is taken as quiet (the
    contended run was a blip), not waited for up to ``limit_s``. Quiet throughout counts as
    quiet (the neighbour is gone); busy throughout as not."""
    waited, seen_busy = 0.0, False
    while waited < limit_s:
        before = sample()
        sleep(window_s)
        after = sample()
        waited += max(after.wall - before.wall, window_s)
        found = run_cpu(before, after, 1).others_share
        if found is None:  # the machine's times cannot be read: nothing to wait for
            return Waited(waited, True, False)
        if found > max(busy_max, _resolution(before, after)) + ROUNDING:  # as RunCpu.contended
            seen_busy = True
        elif seen_busy:
            return Waited(waited, True, True)
        elif settle_s is not None and waited + 1e-9 >= settle_s:
            return Waited(waited, True, False)
    return Waited(waited, not seen_busy, seen_busy)


def _resolution(before: Snapshot, after: Snapshot) -> float:
    """The smallest share two snapshots tell from noise: one clock tick per counter read, as
    a share of the cores' elapsed time between them. ``busy`` sums one counter per core, and
    this process's CPU time is another, each read at some point between two of its ticks
    (``SC_CLK_TCK``): cores + 1 ticks (3 on two cores: 0.15 of a 0.1 s window, 0.02 of a
    0.75 s run). A quiet 2-core machine's 0.7 s runs read 3 ticks of others now and then
    (no other process had run), which a two-tick floor called contended."""
    elapsed = (after.elapsed or 0.0) - (before.elapsed or 0.0)
    wall = after.wall - before.wall
    if elapsed <= 0:
        return 0.0
    cores = max(round(elapsed / wall), 1) if wall > 0 else 1
    return (cores + 1) / (TICKS * elapsed)


def load_1m() -> float | None:
    """The 1-minute load average (``None`` where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
