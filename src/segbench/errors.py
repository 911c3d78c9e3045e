"""Exceptions. Every message names what was received and ends with the fix."""

from __future__ import annotations

from pathlib import Path


class SegbenchError(Exception):
    """Base class of segbench's errors."""


class InputError(SegbenchError, ValueError):
    """A volume that segbench refuses to score (unreadable, wrong rank, non-finite...)."""

    def __init__(self, source: str | Path | None, problem: str, fix: str) -> None:
        self.source = str(source) if source is not None else "<in-memory image>"
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.source}: {problem}. Fix: {fix}")


class ModelError(SegbenchError):
    """A model that cannot be built, loaded or exported (missing weights, bad checksum...)."""


class ConfigError(SegbenchError, ValueError):
    """Invalid settings: an option, an ini key or a key of benchmarks.json."""


class SegbenchWarning(UserWarning):
    """Something that gives a number but probably not a meaningful one (e.g. MR intensities)."""
