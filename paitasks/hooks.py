"""Run a component's build-pre.sh / build-post.sh the way OpenPAI does, but safely.

Hooks run with bash whether or not they are executable (the user's files are never
chmod-ed), from the tree's root (OpenPAI runs them from its repository root), with
variables that name the component, its folder and the source folder. Their output is
passed on line by line; a failure names the component and the hook and shows the last
lines it printed.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

from paitasks.errors import HookError

TAIL_LINES = 30
DRAIN_SECONDS = 2.0  # how long to keep reading after the hook exits


def hook_environment(component: str, folder: Path, src: Path, root: Path) -> dict[str, str]:
    """Variables a hook can rely on, on top of the caller's environment."""
    env = dict(os.environ)
    env.update(
        {
            "PAI_COMPONENT": component,
            "PAI_COMPONENT_DIR": str(folder),
            "PAI_SRC_DIR": str(src),
            "PAI_ROOT_DIR": str(root),
        }
    )
    return env


def run_hook(
    hook: Path,
    *,
    component: str,
    folder: Path,
    src: Path,
    root: Path,
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Run `hook` with bash; raise HookError (with its last output lines) if it fails."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        process = subprocess.Popen(
            ["bash", str(hook)],
            cwd=root,
            env=hook_environment(component, folder, src, root),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        raise HookError(f"component {component}: cannot run {hook}: {exc.strerror}") from None
    # A reader thread passes the output on; the hook is done when bash exits, even if
    # something it started in the background still holds the pipe open.
    reader = threading.Thread(
        target=_pass_lines, args=(process.stdout, tail, on_line), daemon=True
    )
    reader.start()
    try:
        code = process.wait()
    except BaseException:
        process.kill()
        raise
    reader.join(timeout=DRAIN_SECONDS)
    if code != 0:
        last = "\n".join(f"  | {line}" for line in tail) or "  (no output)"
        raise HookError(
            f"component {component}: {hook.name} failed (exit {code}): {hook}\n"
            f"last output lines:\n{last}"
        )


def _pass_lines(
    stream: IO[bytes], tail: deque[str], on_line: Callable[[str], None] | None
) -> None:
    with stream:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line)
            if on_line is not None:
                on_line(line)
