"""Whether two saved runs were measured alike: the differences of their settings fingerprints
(the ``"segbench"`` block, compared with :func:`segbench.results.merge.differences`, the check
``segbench merge`` applies to shards) and of their CPU types.

Some differences make a latency comparison meaningless and refuse it (``refuses``): the CPU
type and its instruction sets (AVX-512, AMX; OpenVINO's default precision), an injection, the
malloc mode, the timing (rounds, warm-up rounds, estimator), the model and its weights. The
others are worth a word but leave latencies comparable (package versions, gates, profiles, the
ONNX file). Nothing here imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segbench.errors import SegbenchError
from segbench.results.merge import differences
from segbench.results.runs import Run

INJECTED_NOTE = "this run was deliberately made worse; its verdict is not the code's"

# dotted settings key (or its prefix) -> (label, refuses the comparison)
KEYS: tuple[tuple[str, str, bool], ...] = (
    ("cpu", "CPU", True),
    ("cpu_flags", "CPU instruction sets", True),
    ("openvino_precision", "OpenVINO's default inference precision", True),
    ("options.injection", "injected:", True),
    ("options.malloc", "malloc", True),
    ("config.timing.rounds", "rounds", True),
    ("config.timing.warmup_rounds", "warm-up rounds", True),
    ("config.timing.estimator", "estimator", True),
    # how many pairs the speed-up gates add (adaptive rounds) does not touch the timed rounds
    ("config.timing.budget_s", "pair budget", False),
    ("config.timing.max_rounds", "max pairs", False),
    ("config.timing.precision", "pair precision", False),
    ("config.timing", "timing", True),
    ("model", "model", True),
    ("weights_sha256", "weights", True),
    ("card", "model card", True),
    ("onnx.sha256", "ONNX file", False),
    ("onnx", "ONNX", False),
    ("versions", "version of", False),
    ("config.gates", "gate", False),
    ("config.cases", "case gate", False),
    ("config.profiles", "profile", False),
    ("options.baseline", "baseline", False),
    ("options", "option", False),
)


def injected_banner(injection: str) -> str:
    """The line every output of an injected run starts with."""
    return f"INJECTED: {injection} - {INJECTED_NOTE}"


@dataclass(frozen=True)
class Difference:
    """One setting that differs between an old and a new run."""

    key: str  # dotted settings key, or "cpu"
    old: Any
    new: Any

    @property
    def _entry(self) -> tuple[str, str, bool]:
        for prefix, label, refuses in KEYS:
            if self.key == prefix or self.key.startswith(prefix + "."):
                return prefix, label, refuses
        return self.key, self.key, False

    @property
    def refuses(self) -> bool:
        """Whether this difference makes the latency comparison meaningless (a setting one run
        did not record is unknown, not different: it does not refuse)."""
        return self._entry[2] and "<absent>" not in (self.old, self.new)

    @property
    def label(self) -> str:
        prefix, label, _ = self._entry
        rest = self.key[len(prefix) + 1 :] if self.key != prefix else ""
        return f"{label} {rest}" if rest else label

    def text(self) -> str:
        """``"rounds 3 vs 1"``, ``"CPU 'X' vs 'Y'"``, ``"injected: slowdown=0.5 vs none"``."""
        plain = self.key == "options.injection"
        return f"{self.label} {_show(self.old, plain)} vs {_show(self.new, plain)}"


def _show(value: Any, plain: bool = False) -> str:
    if value == "<absent>":
        return "absent"
    if value is None:
        return "none"
    if isinstance(value, str):
        if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
            value = value[:12] + "..."  # a SHA-256
        return value if plain else repr(value)
    if isinstance(value, tuple):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, bool | int | float):
        return str(value)
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _derived(run: Run) -> dict[str, Any]:
    """The settings a run shows without a ``segbench`` block: from its cases' extra_info."""
    models = sorted({r.model for r in run.rows if r.model != "-"})
    estimators = sorted({r.estimator for r in run.rows})
    return {
        "model": ", ".join(models) or None,
        "config": {"timing": {"estimator": ", ".join(estimators) or None}},
        "options": {"injection": run.injection},
    }


def run_differences(old: Run, new: Run) -> list[Difference]:
    """Every setting that differs between ``old`` and ``new`` (old value first), CPU first.
    A run saved without a ``segbench`` block is checked on what its cases record (model,
    estimator, injection) and its CPU."""
    found: list[Difference] = []
    if old.cpus and new.cpus and old.cpus != new.cpus:
        found.append(Difference("cpu", _one(old.cpus), _one(new.cpus)))
    for key, olds, news in (
        ("cpu_flags", old.cpu_flags, new.cpu_flags),
        ("openvino_precision", old.openvino_precisions, new.openvino_precisions),
    ):  # a run that did not record them (saved before, no /proc/cpuinfo) is not different
        if olds and news and olds != news:
            found.append(Difference(key, _one(olds), _one(news)))
    a, b = old.settings, new.settings
    if a is None or b is None:
        a, b = _derived(old), _derived(new)
    else:
        a, b = dict(a), dict(b)
        if a.get("config") is not None and b.get("config") is not None:
            a.pop("config_sha256", None)  # the digest of "config", whose leaves are compared
            b.pop("config_sha256", None)
        for side, run in ((a, old), (b, new)):  # an injection the cases recorded, if the
            options = dict(side.get("options") or {})  # fingerprint lacks it
            options.setdefault("injection", run.injection)
            side["options"] = options
    found += [Difference(key, x, y) for key, x, y in differences(a, b)]
    return found


def _one(values: Sequence[str]) -> Any:
    return values[0] if len(values) == 1 else tuple(values)


class RunsNotComparable(SegbenchError, ValueError):
    """Two runs measured so differently that comparing their latencies means nothing."""

    def __init__(self, old: Run, new: Run, refused: Sequence[Difference]) -> None:
        self.refused = tuple(refused)
        super().__init__(
            f"{old.path} and {new.path} were measured differently, so their latencies do not "
            "compare (old vs new):\n  "
            + "\n  ".join(d.text() for d in refused)
            + "\nFix: compare runs made the same way (same CPU type and instruction sets, no "
            "--segbench-inject, the same --segbench-malloc, rounds, warm-up rounds, estimator, "
            "model and weights), or pass --force to compare anyway (the report then says FORCED "
            "and lists these differences)"
        )


def check_comparable(old: Run, new: Run, force: bool = False) -> list[Difference]:
    """The differences of the two runs; raises :class:`RunsNotComparable` when one refuses the
    comparison and ``force`` is false."""
    found = run_differences(old, new)
    refused = [d for d in found if d.refuses]
    if refused and not force:
        raise RunsNotComparable(old, new, refused)
    return found


def describe(found: Sequence[Difference]) -> str:
    return "; ".join(d.text() for d in found)
