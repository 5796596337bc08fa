"""doit's console reporter: progress lines, a summary table and `.paitasks/report.json`.

Output is line-oriented (doit's `.  task` and `-- task` lines, then `[k/N]` lines as
tasks finish), coloured only on a terminal, and ends with a table of every image, in the
words report.json uses. doit tells only its reporter when a run starts and ends (also
after a failure or Ctrl-C), so the reporter passes those two events on to the run
(`Run.begin`, `Run.end`); it owns nothing else of the run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from doit.exceptions import InvalidTask
from doit.reporter import ConsoleReporter

from paitasks.errors import PaiTasksError
from paitasks.inputs import LABEL
from paitasks.run import Run

ENGINE_TASKS = ("build-image:", "push:", "_publish:")
PUBLISH = "_publish:"  # hidden tasks behind `push`; shown as the push:<image> they do
REPORT_FILE = "report.json"
REGISTRY_UP_TO_DATE = "up to date in the registry"
COLOURS = {
    "done": "32", "reused": "32", "pulled": "32", "failed": "31", "not built": "33",
    "interrupted": "33",
}


@dataclass
class Outcome:
    """What happened to one task in this run."""

    # running, done, reused, pulled, up to date, up to date in the registry, failed,
    # not built
    status: str = "pending"
    started: float | None = None
    seconds: float | None = None
    values: dict[str, Any] = field(default_factory=dict)
    blocked_by: list[str] = field(default_factory=list)


def display_name(name: str) -> str:
    return f"push:{name[len(PUBLISH):]}" if name.startswith(PUBLISH) else name


class PaiReporter(ConsoleReporter):  # type: ignore[misc]
    """Progress, a summary and a report; the run's start and end go to `run`."""

    run: Run  # set by `reporter_for`: doit instantiates the class itself

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        super().__init__(outstream, options)
        self._began_run = False
        self._outcomes: dict[str, Outcome] = {}
        self._total = 0
        self._done = 0
        self._began = time.time()
        self._colour = bool(getattr(outstream, "isatty", lambda: False)()) and not os.environ.get(
            "NO_COLOR"
        )

    # -- start and end ----------------------------------------------------------------

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        planned = _closure(tasks, selected_tasks)
        self._total = len(planned)
        self._began_run = True
        try:
            # With engine tasks and no engine, say so before any hook runs (doit reports
            # InvalidTask and stops).
            images = sorted(n.split(":", 1)[1] for n in planned if n.startswith("build-image:"))
            removed = self.run.begin(
                check_engine=any(n.startswith(ENGINE_TASKS) for n in planned), images=images
            )
        except PaiTasksError as exc:
            raise InvalidTask(str(exc)) from None
        for path in removed:
            self.write(f"paitasks: removed {path}, left by an interrupted run\n")
        super().initialize(tasks, selected_tasks)

    def complete_run(self) -> None:
        try:
            if self._began_run:
                self.run.end()
            if self._outcomes:
                self._summary()
                self._write_report()
        except OSError as exc:
            sys.stderr.write(f"paitasks: could not tidy up after the run: {exc}\n")
        finally:
            super().complete_run()

    # -- task events ------------------------------------------------------------------

    def execute_task(self, task: Any) -> None:
        if task.actions:
            self._outcomes[task.name] = Outcome(status="running", started=time.time())
        if task.actions and task.name.startswith(PUBLISH):
            self.write(f".  {display_name(task.name)}\n")
        else:
            super().execute_task(task)

    def skip_uptodate(self, task: Any) -> None:
        if task.actions:
            self._outcomes[task.name] = Outcome(status=self._up_to_date(task.name))
            self._done += 1
        if task.name.startswith(PUBLISH):
            self.write(f"-- {display_name(task.name)}\n")
        else:
            super().skip_uptodate(task)

    def add_success(self, task: Any) -> None:
        if not task.actions:  # groups (build, build:C, push) finish silently
            super().add_success(task)
            return
        outcome = self._outcomes.setdefault(task.name, Outcome())
        outcome.values = dict(getattr(task, "values", None) or {})
        # A hook skipped on its declared inputs reused what it made last time.
        outcome.status = "reused" if outcome.values.get("skipped") else "done"
        if outcome.values.get("pulled"):
            outcome.status = "pulled"
        self._finished(task.name, outcome)
        super().add_success(task)

    def add_failure(self, task: Any, fail: Any) -> None:
        if not task.actions:
            super().add_failure(task, fail)
            return
        outcome = self._outcomes.setdefault(task.name, Outcome())
        if type(fail).__name__ == "UnmetDependency":
            outcome.status = "not built"
            outcome.blocked_by = [display_name(n) for n in str(fail.message).split()]
        else:
            outcome.status = "failed"
        self._finished(task.name, outcome)
        super().add_failure(task, fail)

    def _up_to_date(self, name: str) -> str:
        """"up to date", or "up to date in the registry" for an image found only there."""
        if name.startswith("build-image:"):
            found = self.run.result(name.split(":", 1)[1])
            if found is not None and found.where == "registry":
                return REGISTRY_UP_TO_DATE
        return "up to date"

    def _finished(self, name: str, outcome: Outcome) -> None:
        if outcome.started is not None:
            outcome.seconds = time.time() - outcome.started
        self._done += 1
        took = f" {outcome.seconds:.1f}s" if outcome.seconds is not None else ""
        status = outcome.status
        if status == "not built":
            status = f"not built: {', '.join(outcome.blocked_by)} failed"
        width = len(str(self._total))
        self.write(
            f"[{self._done:>{width}}/{self._total}] "
            f"{self._paint(status, status.split(':')[0])} {display_name(name)}{took}\n"
        )

    # -- summary and report -----------------------------------------------------------

    def _image_rows(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for name, outcome in sorted(self._outcomes.items()):
            if not name.startswith("build-image:"):
                continue
            image = name.split(":", 1)[1]
            status = _report_status(outcome.status)
            if outcome.status == "not built":
                status = f"not built ({', '.join(outcome.blocked_by)} failed)"
            elif outcome.values.get("engine"):
                status = f"{status} (on {outcome.values['engine']})"
            took = f"{outcome.seconds:.1f}s" if outcome.seconds is not None else ""
            rows.append((image, status, took, self._pushed(image)))
        return rows

    def _pushed(self, image: str) -> str:
        for prefix in ("push:", PUBLISH):
            outcome = self._outcomes.get(prefix + image)
            if outcome is None:
                continue
            if outcome.status == "done":
                return f"pushed {outcome.values.get('name')}@{outcome.values.get('digest')}"
            if outcome.status.startswith("up to date"):
                return "already in the registry"
            return "push " + _report_status(outcome.status)
        return ""

    def _summary(self) -> None:
        rows = self._image_rows()
        if not rows:
            return
        width = max(len("image"), *(len(row[0]) for row in rows))
        status_width = max(len("result"), *(len(row[1]) for row in rows))
        header = f"{'image'.ljust(width)}  {'result'.ljust(status_width)}  {'time'.rjust(6)}"
        self.write(f"\n{header}\n")
        for image, status, took, pushed in rows:
            painted = self._paint(status.ljust(status_width), status.split(" (")[0])
            self.write(f"{image.ljust(width)}  {painted}  {took.rjust(6)}  {pushed}".rstrip())
            self.write("\n")
        counts: dict[str, int] = {}
        for _, status, _, _ in rows:
            key = status.split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
        parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        self.write(f"{len(rows)} images: {parts} ({time.time() - self._began:.1f}s)\n")

    def _write_report(self) -> None:
        """`.paitasks/report.json`: per image and component, what this run did."""
        images: dict[str, Any] = {}
        components: dict[str, Any] = {}
        for name, outcome in sorted(self._outcomes.items()):
            kind, _, subject = display_name(name).partition(":")
            entry: dict[str, Any] = {
                "status": _report_status(outcome.status),
                "seconds": outcome.seconds,
            }
            if outcome.blocked_by:
                entry["blocked_by"] = outcome.blocked_by
            if outcome.values.get("engine"):
                entry["engine"] = outcome.values["engine"]
            if kind == "build-image":
                local = _safe_get(self.run, subject)
                entry["id"] = outcome.values.get("id") or (local.id if local else None)
                entry["fingerprint"] = (
                    outcome.values.get("fingerprint")
                    or self.run.fingerprint(subject)
                    or (local.labels.get(LABEL) if local else None)
                )
                images.setdefault(subject, {}).update(entry)
            elif kind == "push":
                push = {**entry, "name": outcome.values.get("name"),
                        "digest": outcome.values.get("digest")}
                images.setdefault(subject, {})["push"] = push
            elif kind in ("copy-deps", "prebuild", "postbuild"):
                components.setdefault(subject, {})[kind] = entry
        report = {
            "started": _iso(self._began),
            "finished": _iso(time.time()),
            "result": "failure" if self.failures else "success",
            "images": images,
            "components": components,
        }
        path = self.run.state / REPORT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{REPORT_FILE}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, path)

    def _paint(self, text: str, status: str) -> str:
        code = COLOURS.get(status)
        if not self._colour or code is None:
            return text
        return f"\033[{code}m{text}\033[0m"


def _report_status(status: str) -> str:
    return "interrupted" if status == "running" else status


def _safe_get(run: Run, name: str) -> Any:
    try:
        return run.images.get(name)
    except Exception:  # the report must not fail a finished run
        return None


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _closure(tasks: Any, selected: Any) -> set[str]:
    """The tasks with actions this run may execute: the selection and its task_dep."""
    seen: set[str] = set()
    stack = list(selected or [])
    while stack:
        name = stack.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        stack.extend(tasks[name].task_dep)
    return {name for name in seen if tasks[name].actions}


def reporter_for(run: Run) -> type[PaiReporter]:
    """A reporter class bound to one run (doit instantiates the class itself)."""
    return type("PaiReporter", (PaiReporter,), {"run": run})
