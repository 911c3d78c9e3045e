"""The CPU's instruction sets that move a speed-up: AVX2, AVX-512 (F, BF16, VNNI) and AMX (tile,
bf16, int8), read from the ``flags`` line of Linux's ``/proc/cpuinfo``.

Two runs of one CPU model can still differ here (a hypervisor that hides AVX-512 or AMX), and the
same code then runs other kernels: PyTorch's oneDNN, onnxruntime's MLAS and OpenVINO each pick
theirs by these flags. :func:`parse_cpu_flags` is pure (tested on sample texts);
:func:`read_cpu_flags` gives ``None`` (unknown) where the file does not exist (macOS, Windows)
or names no flags. Plain Python, so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# the flags recorded, by their /proc/cpuinfo names, in this order
CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # either runs bfloat16 arithmetic natively
UNKNOWN = "unknown"


def parse_cpu_flags(text: str) -> dict[str, bool] | None:
    """``{flag: present}`` for each of :data:`CPU_FLAGS`, from a ``/proc/cpuinfo`` text (the
    first ``flags`` line: every core of one machine lists the same); ``None`` when the text has
    no ``flags`` line (another system's format: unknown, not "none")."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            present = set(value.split())
            return {flag: flag in present for flag in CPU_FLAGS}
    return None


def read_cpu_flags(path: Path = CPUINFO) -> dict[str, bool] | None:
    """:func:`parse_cpu_flags` of ``path``; ``None`` (unknown) where it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return parse_cpu_flags(text)


def has_bf16(flags: Mapping[str, bool] | None) -> bool | None:
    """Whether the CPU runs bfloat16 natively (AVX512_BF16 or AMX-BF16); ``None``: unknown."""
    if flags is None:
        return None
    return any(flags.get(flag, False) for flag in BF16_FLAGS)


def flags_text(flags: Mapping[str, bool] | str | None) -> str:
    """The flags present, by name (``"avx2 avx512f avx512_bf16 avx512_vnni"``), ``"none of
    avx2, ..."`` when none is, ``"unknown"`` when they were not read."""
    if not isinstance(flags, Mapping):
        return UNKNOWN
    names = [*CPU_FLAGS, *sorted(set(flags) - set(CPU_FLAGS))]  # a later version's flags too
    present = [flag for flag in names if flags.get(flag)]
    return " ".join(present) if present else f"none of {', '.join(CPU_FLAGS)}"
