"""What a run shows while it runs: a live view on a terminal, plain lines elsewhere.

On a terminal (`LiveDisplay`, with `rich`): finished tasks scroll up, one line each,
above a bar of finished/total tasks with the elapsed time and one line per task in
flight: its name, its builder when there are several, how long it has run and the last
line of its output. Elsewhere (`PlainDisplay`: CI logs, pipes): the same finished lines,
nothing else, and while tasks are in flight a line every `HEARTBEAT` seconds naming them,
so a quiet log never looks hung. Both take lines from worker threads. A line may say which
of its characters are a status (`Span`): the live view colours them (not with NO_COLOR),
plain lines never carry colour codes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

HEARTBEAT = 30.0  # seconds between "still running" lines in plain mode
LAST_LINE = 100  # characters of a task's last output line shown live
Span = tuple[int, int, str]  # start, end, the status those characters of a line say
STYLES = {
    "done": "green", "reused": "green", "pulled": "green", "failed": "red",
    "not built": "yellow", "interrupted": "yellow",
}


@dataclass
class Running:
    since: float
    builder: str | None = None
    last: str = ""


def elapsed(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Display:
    """What both displays share: the tasks in flight (fed by worker threads) and the
    finished lines; each says how it starts, writes and stops."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, Running] = {}
        self.done = 0
        self.total = 0

    def start(self, total: int) -> None:
        self.total = total

    def started(self, task: str) -> None:
        with self._lock:
            self._running[task] = Running(self.clock())

    def output(self, task: str, line: str, builder: str | None = None) -> None:
        """The last output line of a task in flight, or the builder it runs on."""
        with self._lock:
            found = self._running.get(task)
            if found is not None:
                found.last = line or found.last
                found.builder = builder or found.builder

    def finished(self, task: str, text: str, span: Span | None = None) -> None:
        with self._lock:
            self._running.pop(task, None)
            self.done += 1
        self.write(text, span)

    def running(self) -> list[tuple[str, str, str]]:
        """(`task [on builder]`, how long it has run, its last output line) of each task
        in flight, the oldest first."""
        now = self.clock()
        with self._lock:
            found = sorted(self._running.items(), key=lambda item: (item[1].since, item[0]))
        return [
            (f"{task}{f' on {state.builder}' if state.builder else ''}",
             elapsed(now - state.since), state.last)
            for task, state in found
        ]

    def write(self, text: str, span: Span | None = None) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class PlainDisplay(Display):
    """Plain lines: one per finished task; every `interval` s, the tasks in flight.

    The heartbeat reads `clock` and sleeps with `wait(seconds)`, which is True once the
    display stops (by default, the wait of the event `stop` sets)."""

    def __init__(
        self,
        stream: IO[str],
        interval: float = HEARTBEAT,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        super().__init__(clock)
        self.stream = stream
        self.interval = interval
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self.wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None

    def start(self, total: int) -> None:
        super().start(total)
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        began, beats = self.clock(), 0
        while True:  # on a fixed schedule, so waits and writes never add up to a drift
            beats += 1
            if self.wait(max(0.0, began + beats * self.interval - self.clock())):
                return
            running = self.running()
            if running:
                names = ", ".join(f"{name} ({took})" for name, took, _ in running)
                self.write(f"... running: {names}\n")

    def write(self, text: str, span: Span | None = None) -> None:
        with self._write_lock:
            self.stream.write(text)
            self.stream.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class LiveDisplay(Display):
    """A live view with `rich`: finished lines above, the bar and running tasks below."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__()
        self._began = time.monotonic()
        # rich leaves colour out when NO_COLOR is set
        self.console = Console(file=stream, force_terminal=True, highlight=False, soft_wrap=False)
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

        width = max(20, self.console.width)
        head = Table.grid(padding=(0, 1))
        head.add_row(
            ProgressBar(total=max(self.total, 1), completed=self.done, width=30),
            Text(f"{self.done}/{self.total} tasks, {elapsed(self.clock() - self._began)}"),
        )
        lines: list[Any] = [head]
        for name, took, last in self.running():
            text = Text(f"  {name} {took}", no_wrap=True)
            if last:
                text.append(f"  {last[:LAST_LINE]}", style="dim")
            text.truncate(width)
            lines.append(text)
        return Group(*lines)

    def start(self, total: int) -> None:
        super().start(total)
        self._live.start()

    def write(self, text: str, span: Span | None = None) -> None:
        """A line above the live part (after `stop` too); a task's own output (verbose=1)
        may carry its colour codes, drawn as rich styles."""
        from rich.text import Text

        line = Text.from_ansi(text.rstrip("\n"))
        if span is not None and span[2] in STYLES:
            line.stylize(STYLES[span[2]], span[0], span[1])
        self.console.print(line)

    def stop(self) -> None:
        self._live.stop()


def display_for(stream: IO[str]) -> Display:
    """Live on a terminal that can take it (not TERM=dumb), plain lines elsewhere."""
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    if terminal and os.environ.get("TERM", "") not in ("dumb", ""):
        return LiveDisplay(stream)
    return PlainDisplay(stream)
