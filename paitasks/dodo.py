"""What a dodo.py needs: DOIT_CONFIG and the task generator, for one source tree.

A repository with OpenPAI's layout (`./src`) needs only:

    from paitasks.dodo import tasks_for
    DOIT_CONFIG, task_paitasks = tasks_for(default_src="src")
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from doit import get_var
from doit.exceptions import InvalidDodoFile

from paitasks import tasks
from paitasks.errors import PaiTasksError
from paitasks.freshness import Lookahead
from paitasks.graph import image_order
from paitasks.loader import load_plan
from paitasks.reporter import reporter_for
from paitasks.run import Run, idle_run_mark
from paitasks.settings import FORMERLY, SOURCES, Settings, resolve_settings


def current_settings(default_src: str = "src") -> Settings:
    """Settings from doit's command-line variables and the environment."""
    variables = {}
    for var, _env in (*SOURCES.values(), *FORMERLY.values()):
        value = get_var(var)
        if value is not None:
            variables[var] = str(value)
    return resolve_settings(variables, default_src=default_src)


TaskGenerator = Callable[[], Iterator[Any]]


def tasks_for(default_src: str = "src") -> tuple[dict[str, Any], TaskGenerator]:
    """DOIT_CONFIG and a `task_` generator for the tree at `src=` (default `default_src`)."""
    try:
        settings = current_settings(default_src)
    except PaiTasksError as exc:
        raise InvalidDodoFile(str(exc)) from None
    argv = sys.argv[1:]
    return doit_namespace(settings, list_images=reads_images(argv), pushes=pushes(argv))


# doit's commands that never ask the engine about images (`list` does with --status).
QUIET_COMMANDS = frozenset(
    {"list", "help", "clean", "forget", "ignore", "dumpdb", "tabcompletion", "reset-dep"}
)
DOIT_COMMANDS = QUIET_COMMANDS | {"run", "info", "strace", "auto"}


def reads_images(argv: list[str]) -> bool:
    """Whether a doit command line will ask about the engine's images: a run, `info`,
    `list --status`. Only decides whether to start the listing early."""
    words = [arg for arg in argv if not arg.startswith("-") and "=" not in arg]
    command = next((word for word in words if word in DOIT_COMMANDS), "run")
    if command == "list":
        flags = [arg for arg in argv if arg.startswith("-") and not arg.startswith("--")]
        return "--status" in argv or any("s" in flag for flag in flags)
    return command not in QUIET_COMMANDS


def pushes(argv: Sequence[str]) -> bool:
    """Whether a doit command line names a push (`push`, `push:X`). Only decides which
    registry login to get ready early."""
    return any(arg == "push" or arg.startswith("push:") for arg in argv)


def doit_namespace(
    settings: Settings, list_images: bool = True, pushes: bool = False
) -> tuple[dict[str, Any], TaskGenerator]:
    """DOIT_CONFIG and the task generator for explicit settings (used by `pai-build`),
    sharing one new Run.

    With `list_images`, the engine's images are listed in the background while doit
    loads the tasks, and the registry (with `config=`) is reached and its login got
    ready (for pushing too, with `pushes`): a run needs them first thing."""
    if not settings.src.is_dir():
        # Checked before doit opens its database in `.paitasks/`, which would otherwise
        # create folders at a mistyped path.
        raise InvalidDodoFile(f"source folder {settings.src} does not exist")
    settings.state.mkdir(parents=True, exist_ok=True)
    _quiet_interrupts()
    run = Run(settings)
    ahead = Lookahead(run)
    mark = idle_run_mark(settings.state) if list_images else None
    if mark is not None:  # while another run holds the tree, its images are changing
        run.images.prefetch(mark)
    if list_images and settings.config is not None:
        with contextlib.suppress(PaiTasksError):  # the task generator reports it
            remote = run.remote
            if remote is not None:
                remote.reach()
    config: dict[str, Any] = {
        "default_tasks": ["build"],
        "dep_file": str(settings.state / "doit.db"),
        "backend": "sqlite3",
        "par_type": "thread",
        "reporter": reporter_for(run, ahead),
        "verbosity": 1,
    }

    def task_paitasks() -> Iterator[Any]:
        try:
            if settings.config is not None:  # a bad config fails before any work
                from paitasks.config import load_settings  # PyYAML: only when pushing

                load_settings(settings.config)
            plan = load_plan(settings)
            if list_images and run.remote is not None:
                run.remote.warm(image_order(plan.graph), pushes)  # bases first
        except PaiTasksError as exc:
            raise InvalidDodoFile(str(exc)) from None
        yield from tasks.generate(plan, run, ahead)

    task_paitasks.__doc__ = f"paitasks tasks for {settings.src}"
    return config, task_paitasks


def _quiet_interrupts() -> None:
    """Ctrl-C ends a run with one line, not doit's traceback (cleanup already ran).
    Installed once: a later call (a push's second run, tests) finds its hook in place."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, trace: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.stderr.write("paitasks: interrupted; temp folders removed, the lock released\n")
        else:
            previous(kind, value, trace)

    if getattr(previous, "__code__", None) is not hook.__code__:
        sys.excepthook = hook
