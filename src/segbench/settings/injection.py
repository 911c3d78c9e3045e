"""What ``--segbench-inject KIND=VALUE`` asks for: the parsed, validated :class:`Injection` (the
wrappers that apply it are in :mod:`segbench.bench.inject`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

KINDS = ("delay", "slowdown", "perturb", "shift", "no-gaussian", "erode", "drop", "grow")
MASK_KINDS = ("erode", "drop", "grow")  # edits of the candidate's mask, by class
GROW_PCT = 5.0  # grow=<class> without a percentage


@dataclass(frozen=True)
class MaskEdit:
    """An edit of the candidate's mask before it is scored: ``erode`` (the class's boundary
    one voxel inwards), ``drop`` (the class removed) or ``grow`` (the class's volume grown by
    ``percent``). ``target`` is a class name or label number, checked against the model's
    classes when the session starts."""

    kind: str
    target: str
    percent: float = 0.0

    def describe(self) -> str:
        return f"{self.kind}={self.target}" + (f":{self.percent:g}" if self.kind == "grow" else "")


@dataclass(frozen=True)
class Injection:
    """What to inject into the candidate; the default injects nothing."""

    delay: float = 0.0
    slowdown: float = 0.0
    perturb: float = 0.0
    shift: int = 0
    no_gaussian: bool = False
    mask_edits: tuple[MaskEdit, ...] = ()

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
        parts.extend(edit.describe() for edit in self.mask_edits)
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
        if kind in MASK_KINDS:
            edit = parse_mask_edit(item, kind, text.strip())
            injection = replace(injection, mask_edits=(*injection.mask_edits, edit))
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


def parse_mask_edit(item: str, kind: str, text: str) -> MaskEdit:
    """``erode=liver``, ``drop=3``, ``grow=liver:5`` -> MaskEdit (ValueError quoting ``item``)."""
    target, _, amount = text.partition(":") if kind == "grow" else (text, "", "")
    if not target or ":" in target:
        raise ValueError(
            f"{item!r}: {kind} needs a class name or label number, e.g. {kind}=liver"
            + (" or grow=liver:5 (percent of its volume)" if kind == "grow" else "")
        )
    percent = 0.0
    if kind == "grow":
        try:
            percent = float(amount) if amount else GROW_PCT
        except ValueError:
            raise ValueError(
                f"{item!r}: grow's percentage must be a number, e.g. grow=liver:5"
            ) from None
        if not 0 < percent <= 1000 or not math.isfinite(percent):
            raise ValueError(f"{item!r}: grow's percentage must be in (0, 1000]")
    return MaskEdit(kind, target, percent)
