"""What a run shows while it runs: a live view on a terminal, plain lines elsewhere.

On a terminal (`LiveDisplay`, with `rich`): finished tasks scroll up, one line each,
above a bar of finished/total tasks with the elapsed time and one line per task in
flight: its name, its engine when there are several, how long it has run and the last
line of its output. Elsewhere (`PlainDisplay`: CI logs, pipes): the same finished lines,
nothing else, and while tasks are in flight a line every `HEARTBEAT` seconds naming them,
so a quiet log never looks hung. Both take lines from worker threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import RenderableType

HEARTBEAT = 30.0  # seconds between "still running" lines in plain mode
LAST_LINE = 100  # characters of a task's last output line shown live


@dataclass
class Running:
    since: float
    engine: str | None = None
    last: str = ""


class Display(Protocol):
    def start(self, total: int) -> None: ...
    def started(self, task: str) -> None: ...
    def output(self, task: str, line: str, engine: str | None = None) -> None: ...
    def finished(self, task: str, text: str) -> None: ...
    def write(self, text: str) -> None: ...
    def stop(self) -> None: ...


def elapsed(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class _Tasks:
    """The tasks in flight, shared by the display's threads."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.running: dict[str, Running] = {}
        self.done = 0
        self.total = 0

    def started(self, task: str) -> None:
        with self.lock:
            self.running[task] = Running(self.clock())

    def output(self, task: str, line: str, engine: str | None) -> None:
        with self.lock:
            found = self.running.get(task)
            if found is not None:
                if line:
                    found.last = line
                if engine:
                    found.engine = engine

    def finished(self, task: str) -> None:
        with self.lock:
            self.running.pop(task, None)
            self.done += 1

    def snapshot(self) -> list[tuple[str, Running]]:
        with self.lock:
            return sorted(self.running.items(), key=lambda item: (item[1].since, item[0]))


class PlainDisplay:
    """Plain lines: one per finished task; every `interval` s, the tasks in flight."""

    def __init__(
        self,
        stream: IO[str],
        interval: float = HEARTBEAT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.tasks = _Tasks(clock)
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, total: int) -> None:
        self.tasks.total = total
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        began, beats = time.monotonic(), 0
        while True:  # on a fixed schedule, so waits and writes never add up to a drift
            beats += 1
            if self._stop.wait(max(0.0, began + beats * self.interval - time.monotonic())):
                return
            running = self.tasks.snapshot()
            if running:
                now = self.tasks.clock()
                names = ", ".join(
                    f"{task}{f' on {state.engine}' if state.engine else ''} "
                    f"({elapsed(now - state.since)})"
                    for task, state in running
                )
                self.write(f"... running: {names}\n")

    def started(self, task: str) -> None:
        self.tasks.started(task)

    def output(self, task: str, line: str, engine: str | None = None) -> None:
        self.tasks.output(task, line, engine)

    def finished(self, task: str, text: str) -> None:
        self.tasks.finished(task)
        self.write(text)

    def write(self, text: str) -> None:
        with self._write_lock:
            self.stream.write(text)
            self.stream.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class LiveDisplay:
    """A live view with `rich`: finished lines above, the bar and running tasks below."""

    def __init__(self, stream: IO[str], colour: bool) -> None:
        from rich.console import Console
        from rich.live import Live

        self.tasks = _Tasks(time.monotonic)
        self._began = time.monotonic()
        self.console = Console(
            file=stream, force_terminal=True, no_color=not colour, highlight=False,
            soft_wrap=False,
        )
        self._live = Live(
            self, console=self.console, refresh_per_second=4, transient=True,
            redirect_stdout=False, redirect_stderr=False,
        )

    def __rich__(self) -> RenderableType:
        """The live part, drawn anew at each refresh."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        tasks = self.tasks
        now = time.monotonic()
        width = max(20, self.console.width)
        head = Table.grid(padding=(0, 1))
        head.add_row(
            ProgressBar(total=max(tasks.total, 1), completed=tasks.done, width=30),
            Text(f"{tasks.done}/{tasks.total} tasks, {elapsed(now - self._began)}"),
        )
        lines: list[Any] = [head]
        for task, state in tasks.snapshot():
            where = f" on {state.engine}" if state.engine else ""
            text = Text(f"  {task}{where} {elapsed(now - state.since)}", no_wrap=True)
            if state.last:
                text.append(f"  {state.last[:LAST_LINE]}", style="dim")
            text.truncate(width)
            lines.append(text)
        return Group(*lines)

    def start(self, total: int) -> None:
        self.tasks.total = total
        self._live.start()

    def started(self, task: str) -> None:
        self.tasks.started(task)

    def output(self, task: str, line: str, engine: str | None = None) -> None:
        self.tasks.output(task, line, engine)

    def finished(self, task: str, text: str) -> None:
        self.tasks.finished(task)
        self.write(text)

    def write(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text.from_ansi(text.rstrip("\n")), highlight=False)

    def stop(self) -> None:
        self._live.stop()


def display_for(stream: IO[str], colour: bool) -> Display:
    """Live on a terminal that can take it (not TERM=dumb), plain lines elsewhere."""
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    if terminal and os.environ.get("TERM", "") not in ("dumb", ""):
        return LiveDisplay(stream, colour)
    return PlainDisplay(stream)
