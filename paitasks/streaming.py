"""Running a child process and passing each line of its output on as it comes.

The docker CLI (engine.py) and the bash hooks (hooks.py) both run this way: stdin
closed, stdout and stderr merged in the order they were written, each line decoded as
UTF-8 (bad bytes replaced) and passed on without its line ending. The child is done
when it exits: its output is read for DRAIN_SECONDS more, then no longer, so something
it left running in the background (a server started with `&`), which keeps the pipe
open, does not keep the caller waiting. Ctrl-C, or any other exception, while the child
runs kills it; so does a line handler that raises, and its exception is re-raised.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence

DRAIN_SECONDS = 2.0  # how long to keep reading after the child exits

LineSink = Callable[[str], None]


class Tail:
    """A line sink that keeps the last `size` lines and passes each on to `on_line`."""

    def __init__(self, on_line: LineSink | None, size: int) -> None:
        self.lines: deque[str] = deque(maxlen=size)
        self._on_line = on_line

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self._on_line is not None:
            self._on_line(line)


class StartError(OSError):
    """The child could not be started: no such program or folder, not executable."""


def run_streaming(
    command: Sequence[str],
    on_line: LineSink,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run `command`, pass each line of its output to `on_line`, return its exit code.

    `env` is the child's whole environment (None: this process's). `on_line` is called
    from a reader thread, one line at a time, and never after this returns. A program
    that cannot be started raises StartError; the caller says what it was for. An
    exception raised by `on_line` kills the child and is raised here.
    """
    try:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        raise StartError(exc.errno, exc.strerror, exc.filename) from None
    reader = _Reader(process, on_line)
    try:
        thread = threading.Thread(target=reader.run, name=f"output of {command[0]}", daemon=True)
        thread.start()
        code = process.wait()
        thread.join(timeout=DRAIN_SECONDS)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        reader.stop()
    if reader.error is not None:
        raise reader.error
    return code


class _Reader:
    """Passes a child's output on, line by line, until EOF or until stopped."""

    def __init__(self, process: subprocess.Popen[bytes], on_line: LineSink) -> None:
        self.process = process
        self.on_line = on_line
        self.error: Exception | None = None
        self._stopped = False
        self._lock = threading.Lock()  # held while a line is passed on

    def run(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        with stream:
            for raw in stream:
                with self._lock:
                    if self._stopped or self.error is not None:
                        continue  # keep reading, so the child never blocks on a full pipe
                    try:
                        self.on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                    except Exception as exc:  # re-raised by run_streaming
                        self.error = exc
                        self.process.kill()

    def stop(self) -> None:
        """Pass no more lines on; returns once a line being passed on is done."""
        with self._lock:
            self._stopped = True
