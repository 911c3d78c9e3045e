"""What ``--segbench-inject KIND=VALUE`` asks for: the parsed, validated :class:`Injection` (the
wrappers that apply it are in :mod:`segbench.bench.inject`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

KINDS = ("delay", "slowdown", "perturb", "shift", "no-gaussian")


@dataclass(frozen=True)
class Injection:
    """What to inject into the candidate; the default injects nothing."""

    delay: float = 0.0
    slowdown: float = 0.0
    perturb: float = 0.0
    shift: int = 0
    no_gaussian: bool = False

    @property
    def active(self) -> bool:
        return self != Injection()

    def describe(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("delay", self.delay),
                ("slowdown", self.slowdown),
                ("perturb", self.perturb),
                ("shift", self.shift),
            )
            if value
        ]
        if self.no_gaussian:
            parts.append("no-gaussian")
        return ", ".join(parts) or "none"


def parse_injection(items: list[str]) -> Injection:
    """``["slowdown=0.3", "shift=1"]`` -> Injection. Raises ValueError quoting the bad item."""
    injection = Injection()
    for item in items:
        kind, _, text = item.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown injection {item!r}; choose from {', '.join(KINDS)}")
        if kind == "no-gaussian":
            if text:
                raise ValueError(f"{item!r}: no-gaussian takes no value")
            injection = replace(injection, no_gaussian=True)
            continue
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{item!r}: {kind} needs a number, e.g. {kind}=1") from None
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"{item!r}: {kind} must be > 0")
        if kind == "shift":
            if value != int(value):
                raise ValueError(f"{item!r}: shift is a whole number of voxels")
            injection = replace(injection, shift=int(value))
        elif kind == "delay":
            injection = replace(injection, delay=value)
        elif kind == "slowdown":
            injection = replace(injection, slowdown=value)
        else:
            injection = replace(injection, perturb=value)
    return injection
