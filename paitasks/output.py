"""Where what the run's tasks print goes, and what the timeline learns of its checks and
of the engine work paitasks does itself inside a task.

While a reporter shows the run (progress.py: a live view on a terminal, plain lines
elsewhere), each task's output lines go to it (the live view shows the last one); with
`verbose=1` they are also printed whole, each labelled with its image or hook. doit
captures a python-action's output by swapping `sys.stdout`, which threads share, so under
`-n` captured lines could land in another task's output: labelled whole lines on the
real stdout never mix. Failures carry their own last lines; every line of a task in
flight is also kept, so that the reporter can save a failed task's whole output
(`.paitasks/logs/<task>.log`) and forget a finished one's.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from paitasks.streaming import LineSink

if TYPE_CHECKING:
    from paitasks.progress import Display


class Output:
    """The run's output routing; safe to use from worker threads."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._display: Display | None = None
        self._lock = threading.Lock()
        # Each up-to-date check as it went (task, start, end, result), for the timeline.
        self.checks: list[tuple[str, float, float, str]] = []
        # Images paitasks itself loads into or exports from the engine inside a task
        # (what, start, end, result): the timeline's engine lane.
        self.engine_work: list[tuple[str, float, float, str]] = []
        self._kept: dict[str, list[str]] = {}  # task -> its output lines so far

    def watch(self, display: Display | None) -> None:
        """While a reporter shows the run, tasks tell it what they do."""
        self._display = display

    def lines(self, task: str, label: str) -> LineSink | None:
        """Where the output lines of `task` go: to the display and, with verbose=1,
        printed whole, labelled `label`; None when nobody listens."""
        display = self._display
        printer = self.printer(label) if self.verbose else None
        if display is None and printer is None:
            return None
        with self._lock:
            kept = self._kept.setdefault(task, [])

        def sink(line: str) -> None:
            kept.append(line)  # list.append is atomic: one writer per task anyway
            if display is not None:
                display.output(task, line)
            if printer is not None:
                printer(line)

        return sink

    def take(self, *tasks: str) -> list[str]:
        """The output lines kept of `tasks` (one task's, under the names it printed
        under), forgotten here."""
        with self._lock:
            return [line for task in tasks for line in self._kept.pop(task, ())]

    def tell_builder(self, task: str, builder: str) -> None:
        """Which builder of `builders=` runs `task`, for the display."""
        if self._display is not None:
            self._display.output(task, "", builder)

    def printer(self, label: str) -> LineSink:
        """Print whole lines, labelled, through the display or straight to stdout."""
        display = self._display
        stream = sys.__stdout__ or sys.stderr

        def emit(line: str) -> None:
            if display is not None:
                display.write(f"[{label}] {line}\n")
                return
            with self._lock:
                stream.write(f"[{label}] {line}\n")
                stream.flush()

        return emit

    def note_check(self, task: str, start: float, fresh: bool) -> None:
        """An up-to-date check of `task`, which began at `start`, just ended."""
        with self._lock:
            self.checks.append((task, start, time.time(), "up to date" if fresh else "run"))

    @contextmanager
    def engine_step(self, what: str) -> Iterator[None]:
        """Time engine work done inside a task (a load, an export) for the timeline."""
        start, result = time.time(), "failed"
        try:
            yield
            result = "done"
        finally:
            with self._lock:
                self.engine_work.append((what, start, time.time(), result))
