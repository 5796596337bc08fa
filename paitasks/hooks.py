"""Run a component's build-pre.sh / build-post.sh the way OpenPAI does, but safely.

Hooks run with bash whether or not they are executable (the user's files are never
chmod-ed), from the tree's root (OpenPAI runs them from its repository root), with
variables that name the component, its folder and the source folder. Their output is
passed on line by line (through streaming.run_streaming: a hook is done when bash exits,
even if something it started in the background still holds its output); a failure names
the component and the hook and shows the last lines it printed.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

from paitasks.errors import HookError
from paitasks.streaming import StartError, run_streaming

TAIL_LINES = 30


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

    def sink(line: str) -> None:
        tail.append(line)
        if on_line is not None:
            on_line(line)

    try:
        code = run_streaming(
            ["bash", str(hook)],
            sink,
            cwd=root,
            env=hook_environment(component, folder, src, root),
        )
    except StartError as exc:
        raise HookError(f"component {component}: cannot run {hook}: {exc.strerror}") from None
    if code != 0:
        last = "\n".join(f"  | {line}" for line in tail) or "  (no output)"
        raise HookError(
            f"component {component}: {hook.name} failed (exit {code}): {hook}\n"
            f"last output lines:\n{last}"
        )
