"""Live progress on the terminal while a case runs: one line per case and round (role, round
i/n, warm-ups marked, sliding windows done/total), and the one-time announcements of an ONNX
export and of a phantom's generation.

In a terminal (a tty with markup) the line is rewritten in place after pytest's own text and
erased when the measurement ends; elsewhere (CI logs) one line per run is printed, none per
window. ``--segbench-progress=auto`` (the default) shows it unless ``-q``; ``on`` always;
``off`` never. Output bypasses pytest's capture (it is written while a test runs).

The per-window callback runs inside the timed part: it reads a clock and returns, and writes at
most every :data:`INTERVAL` seconds (and at the last window).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from segbench.pipeline.inference import Progress
from segbench.results.escape import terminal as escape_terminal

INTERVAL = 0.1  # seconds between two rewrites of the live line
ROLE_WIDTH = len("reference")


class Terminal:
    """segbench's channel to the terminal during a session (see the module). The terminal
    reporter is looked up at first use: it is registered after segbench's ``pytest_configure``.
    """

    def __init__(self, config: pytest.Config | None, mode: str) -> None:
        self.config = config
        self.mode = mode
        self._ready = False
        self.reporter: Any = None
        self.capman: Any = None
        self._enabled = False
        self._live = False
        self._writer: Any = None
        self._held: tuple[str, Any] | None = None  # pytest's line broken by ours, to restore

    def attach(self, reporter: Any, capman: Any, verbosity: int, worker: bool = False) -> None:
        """Use ``reporter`` (pytest's terminal reporter, or None) and ``capman`` (the capture
        manager, or None)."""
        self.reporter, self.capman = reporter, capman
        self._enabled = (
            self.mode != "off"
            and reporter is not None
            and not worker
            and (self.mode == "on" or verbosity >= 0)
        )
        self._writer = getattr(reporter, "_tw", None)
        self._live = bool(
            self._enabled
            and self._writer is not None
            and reporter.isatty()
            and getattr(reporter, "hasmarkup", False)
        )
        self._ready = True

    def _setup(self) -> None:
        if self._ready:
            return
        config = self.config
        if config is None:
            self.attach(None, None, 0)
            return
        plugins = config.pluginmanager
        self.attach(
            plugins.get_plugin("terminalreporter"),
            plugins.get_plugin("capturemanager"),
            int(config.getoption("verbose", 0) or 0),  # -q: -1
            worker=hasattr(config, "workerinput"),  # a pytest-xdist worker: no terminal
        )

    @property
    def enabled(self) -> bool:
        self._setup()
        return self._enabled

    @property
    def live(self) -> bool:
        """Whether the line is rewritten in place (a terminal with markup)."""
        self._setup()
        return self._live

    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        if self.capman is None:
            yield
        else:
            with self.capman.global_and_fixture_disabled():
                yield

    def announce(self, message: str) -> None:
        """A line that stays: ``segbench: <message>``."""
        if self.enabled:
            self.line(f"segbench: {escape_terminal(message)}")
            self.release()

    def line(self, text: str) -> None:
        """A line that stays, below pytest's current line (see :meth:`release`)."""
        reporter = self.reporter
        with self._uncaptured():
            if self._held is None:
                self._held = (getattr(self._writer, "_current_line", ""), reporter.currentfspath)
            reporter.write_line(text)

    def release(self) -> None:
        """After :meth:`line`: write pytest's line again, so that its next letter or verdict
        goes on a line that says which test it is."""
        held, self._held = self._held, None
        if held is None or not held[0] or not held[1]:
            return
        with self._uncaptured():
            self.reporter.write(held[0])
            self.reporter.currentfspath = held[1]

    def column(self) -> int:
        """Where pytest's text on the current line ends."""
        return int(self._writer.width_of_current_line) if self._writer is not None else 0

    def rewrite(self, column: int, *texts: str) -> None:
        """Write the first of ``texts`` that fits (else the last, cut) from ``column`` on,
        erasing the rest of the line, leaving pytest's text before it (and pytest's idea of the
        line) untouched; ``""`` erases it."""
        room = max(int(self._writer.fullwidth) - column - 1, 0) if self._writer else 0
        text = next((t for t in texts if len(t) <= room), texts[-1][:room])
        move = f"\r\x1b[{column}C" if column > 0 else "\r"
        with self._uncaptured():
            self.reporter.write_raw(f"{move}{text}\x1b[K", flush=True)

    def case(self, case_id: str) -> CaseProgress | None:
        """The observer of ``case_id``'s measurements, or None when progress is off."""
        return CaseProgress(self, case_id) if self.enabled else None


class CaseProgress:
    """One case's progress: a :class:`~segbench.bench.paired.RunObserver`."""

    def __init__(self, terminal: Terminal, case_id: str) -> None:
        self.terminal = terminal
        self.case_id = escape_terminal(case_id)  # a file name: shown escaped
        self._column = -1  # where the live line starts; -1: not shown
        self._windows: dict[str, int] = {}  # role -> windows of its last run

    def label(self, role: str, phase: str, index: int, count: int) -> str:
        run = "run" if phase == "run" else f"{phase} {index}/{count}"
        return f"  {self.case_id}  {role:<{ROLE_WIDTH}}  {run}"

    def start(self, role: str, phase: str, index: int, count: int) -> Progress | None:
        label = self.label(role, phase, index, count)
        terminal = self.terminal
        key = "reference" if phase.startswith("paired") else role
        if not terminal.live:
            known = self._windows.get(key)
            terminal.line(label + (f"  windows {known}" if known else ""))
            windows = self._windows

            def note(done: int, total: int) -> None:  # per window: remember the count only
                if done == total:
                    windows[key] = total

            return note
        if self._column < 0:
            self._column = terminal.column()
        column = self._column
        short = label.replace(f"  {self.case_id}", "", 1)  # without the case when too narrow
        terminal.rewrite(column, label, short)
        clock = time.monotonic
        last = [clock()]

        def show(done: int, total: int) -> None:  # per window, inside the timed part
            now = clock()
            if done != total and now - last[0] < INTERVAL:
                return
            last[0] = now
            windows = f"  windows {done}/{total}"
            terminal.rewrite(column, label + windows, short + windows)

        return show

    def end(self) -> None:
        if not self.terminal.live:
            self.terminal.release()
        elif self._column >= 0:
            self.terminal.rewrite(self._column, "")
            self._column = -1


def announcer(terminal: Terminal) -> Callable[[str], None] | None:
    """The ``announce`` callback of exports and phantom generations, or None when off."""
    return terminal.announce if terminal.enabled else None
