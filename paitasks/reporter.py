"""doit's console reporter, plus the run's start and end: the lock and the temp folders.

The reporter is the one part of doit that sees a run start and end in the main process,
also after a failure or Ctrl-C (doit calls complete_run from a `finally`). Teardown
actions are not enough: they run only for tasks whose actions ran, once per thread, and
not at all in process mode after Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from doit.reporter import ConsoleReporter

from paitasks import runtime, workspace

PUBLISH = "_publish:"  # hidden tasks behind `push`; shown as the push:<image> they do


class PaiReporter(ConsoleReporter):  # type: ignore[misc]
    """Takes the tree's lock and tidies leftovers at the start; cleans up at the end."""

    root: Path = Path(".")

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        super().__init__(outstream, options)
        self._lock = workspace.RunLock(self.root)
        self._locked = False

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        self._lock.acquire(wait=True)
        self._locked = True
        runtime.start_executing()
        for path in workspace.remove_temp_folders(self.root):
            self.write(f"paitasks: removed {path}, left by an interrupted run\n")
        super().initialize(tasks, selected_tasks)

    def execute_task(self, task: Any) -> None:
        if task.actions and task.name.startswith(PUBLISH):
            self.write(f".  push:{task.name[len(PUBLISH):]}\n")
        else:
            super().execute_task(task)

    def skip_uptodate(self, task: Any) -> None:
        if task.name.startswith(PUBLISH):
            self.write(f"-- push:{task.name[len(PUBLISH):]}\n")
        else:
            super().skip_uptodate(task)

    def complete_run(self) -> None:
        try:
            runtime.save_caches()
            if self._locked:
                workspace.remove_temp_folders(self.root)
        except OSError as exc:
            sys.stderr.write(f"paitasks: could not remove temp folders: {exc}\n")
        finally:
            if self._locked:
                self._lock.release()
                self._locked = False
            super().complete_run()


def reporter_for(root: Path) -> type[PaiReporter]:
    """A reporter class bound to one tree (doit instantiates the class itself)."""
    return type("PaiReporter", (PaiReporter,), {"root": root})
