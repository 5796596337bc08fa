"""Run a component's build-pre.sh / build-post.sh the way OpenPAI does, but safely.

Hooks run with bash whether or not they are executable (the user's files are never
chmod-ed), from the tree's root (OpenPAI runs them from its repository root), with
variables that name the component, its folder and the source folder. Their output is
passed on line by line (through streaming.run_streaming: a hook is done when bash exits,
even if something it started in the background still holds its output); a failure names
the component and the hook and shows the last lines it printed.

A component that lists what its hooks read (`build/hook-inputs`) has its hooks skipped
while their key (contents.hook_key) is the last run's: the folders they left then
(tempfolders.SavedStage) stand in for what they would make.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from paitasks.contents import Contents
from paitasks.errors import HookError
from paitasks.streaming import StartError, Tail, run_streaming
from paitasks.tempfolders import RoundSpec, SavedStage, Stage

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
    sink = Tail(on_line, TAIL_LINES)

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
        last = "\n".join(f"  | {line}" for line in sink.lines) or "  (no output)"
        raise HookError(
            f"component {component}: {hook.name} failed (exit {code}): {hook}\n"
            f"last output lines:\n{last}"
        )


def run_or_skip(contents: Contents, spec: RoundSpec, hook: Path, run: Callable[[], None]) -> bool:
    """Run a hook where it finds its folders real; with declared inputs, skip it when
    its key is the last run's. True when it was skipped."""
    temp = contents.temp
    stage: Stage = "pre" if hook.name == "build-pre.sh" else "post"
    saved = SavedStage(temp.state, spec.name, stage)
    key = None
    if spec.declared is not None:
        key = contents.hook_key(spec, stage)
        if saved.matches(key):
            with temp.settled(spec):
                if temp.is_real(spec):  # someone reads the folders already: keep them exact
                    saved.restore(Path(spec.folder))
            return True
    temp.ensure_real(spec, "copies" if stage == "pre" else "pre")
    run()
    if key is not None:
        saved.store(key, Path(spec.folder))
    return False
