"""doit's console reporter: progress lines, a summary table and `.paitasks/report.json`.

Output is line-oriented (`[k/N]` lines as tasks finish, through `progress`'s display,
which colours their status in the live view only) and ends with a table of every image,
in the words report.json uses. A failed task's line gives its reason and the few output
lines around its first error (all of it with verbose=1); its whole output goes to
`.paitasks/logs/<task>.log`. The reporter owns the end of the run: after the table come
only the causes several images share and the logs folder, not doit's failure blocks.
doit tells only its reporter when a run starts and ends
(also after a failure or Ctrl-C), so the reporter passes those two events on to the run
(`Run.begin`, `Run.end`); it owns nothing else of the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doit.exceptions import InvalidTask
from doit.reporter import ConsoleReporter

from paitasks.disk import remove, write_atomically, write_json
from paitasks.errors import PaiTasksError
from paitasks.failures import TAIL_MARK, excerpt, grouped, reason
from paitasks.fingerprint import LABEL
from paitasks.freshness import Lookahead, untag_stale
from paitasks.progress import Display, Span, display_for
from paitasks.run import Run
from paitasks.timeline import Slice, write_trace

ENGINE_TASKS = ("build-image:", "push:", "_publish:", "_upload:")
PUBLISH = "_publish:"  # hidden tasks behind `push`; shown as the push:<image> they do
UPLOAD = "_upload:"  # and as upload:<image>
PUSH_TASKS = ("push:", PUBLISH, UPLOAD)
REPORT_FILE = "report.json"
LOGS_DIR = "logs"  # each failed task's whole output: .paitasks/logs/<task>.log
CHECKS = "up-to-date checks"  # the timeline's process for doit's checks
ENGINE = "engine"  # the timeline's process for images paitasks loads or exports itself
REGISTRY_UP_TO_DATE = "up to date in the registry"


@dataclass
class Outcome:
    """What happened to one task in this run."""

    # running, done, reused, pulled, up to date, up to date in the registry, failed,
    # not built
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    seconds: float | None = None
    values: dict[str, Any] = field(default_factory=dict)
    blocked_by: list[str] = field(default_factory=list)
    reason: str = ""  # a failure's innermost cause, in one line (failures.py)


def display_name(name: str) -> str:
    if name.startswith(PUBLISH):
        return f"push:{name[len(PUBLISH):]}"
    return f"upload:{name[len(UPLOAD):]}" if name.startswith(UPLOAD) else name


def _printed_as(name: str) -> tuple[str, ...]:
    """The names a task's output lines are kept under (output.py): an upload prints as
    the push it is part of."""
    shown = display_name(name)
    return (shown, f"push:{name[len(UPLOAD):]}") if name.startswith(UPLOAD) else (shown,)


class PaiReporter(ConsoleReporter):  # type: ignore[misc]
    """Progress, a summary, a report and a timeline; the run's start and end go to `run`."""

    run: Run  # set by `reporter_for`: doit instantiates the class itself
    ahead: Lookahead  # the run's registry questions, asked when it begins

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        super().__init__(outstream, options)
        self._began_run = False
        self._outcomes: dict[str, Outcome] = {}
        self._needs: dict[str, tuple[str, ...]] = {}
        self._total = 0
        self._done = 0
        self._began = time.time()
        self._display: Display | None = None
        self._logs: dict[str, Path] = {}  # failed task (display name) -> its whole output
        self._tasks: Any = {}  # doit's tasks by name
        self._waits: dict[str, tuple[str, ...]] = {}  # what each task waits for (memo)

    # -- start and end ----------------------------------------------------------------

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        planned = _closure(tasks, selected_tasks)
        self._total = len(planned)
        self._needs = {name: _waits_for(tasks, name, self._waits) for name in planned}
        self._tasks = tasks
        self._began_run = True
        try:
            # With engine tasks and no engine, say so before any hook runs (doit reports
            # InvalidTask and stops).
            images = sorted(n.split(":", 1)[1] for n in planned if n.startswith("build-image:"))
            pushes = sorted({n.split(":", 1)[1] for n in planned if n.startswith(PUSH_TASKS)})
            check = any(n.startswith(ENGINE_TASKS) for n in planned)
            removed = self.run.begin(check_engine=check)
            if check:
                self.run.pushing = tuple(pushes)
                self.ahead.start(images, pushes)
        except PaiTasksError as exc:
            raise InvalidTask(str(exc)) from None
        for path in removed:
            self.write(f"paitasks: removed {path}, left by an interrupted run\n")
        if (self.run.state / LOGS_DIR).is_dir():  # a log stays while its task's last run
            for name in planned:  # failed: this run's tasks' logs go
                remove(self._log_path(name))
        self._display = display_for(self.outstream)
        self.run.output.watch(self._display)
        self._display.start(self._total)
        super().initialize(tasks, selected_tasks)

    def complete_run(self) -> None:
        try:
            if self._display is not None:
                self._display.stop()  # the summary is still written through it
                self.run.output.watch(None)
            if self._began_run:
                self.ahead.finish()
                untag_stale(self.run)
                self.run.end()
            if self._outcomes:
                report = self._report()
                for line, span in summary_lines(report):
                    self.write(line + "\n", span)
                self._write_report(report)
                self._write_trace()
        except OSError as exc:
            sys.stderr.write(f"paitasks: could not tidy up after the run: {exc}\n")
        finally:
            self._display = None
            if self.runtime_errors:  # doit's own (not a task's): as doit says them
                self.write("Execution aborted.\n" + "\n".join(self.runtime_errors) + "\n")

    def write(self, text: str, span: Span | None = None) -> None:
        """Through the display (lines above the live view), else straight out."""
        if self._display is not None:
            self._display.write(text, span)
        else:
            super().write(text)

    # -- task events (doit's own `.  task` / `-- task` lines are not written) ----------

    def execute_task(self, task: Any) -> None:
        if task.actions:
            self._outcomes[task.name] = Outcome(status="running", started=time.time())
            if self._display is not None:
                self._display.started(display_name(task.name))

    def skip_uptodate(self, task: Any) -> None:
        self._skipped(task, self._up_to_date(task.name))

    def skip_ignore(self, task: Any) -> None:
        self._skipped(task, "ignored")

    def _skipped(self, task: Any, status: str) -> None:
        if task.actions:
            self._outcomes[task.name] = outcome = Outcome(status=status)
            self._finished(task.name, outcome)

    def add_success(self, task: Any) -> None:
        if not task.actions:  # groups (build, build:C, push) finish silently
            return
        self.run.output.take(*_printed_as(task.name))
        outcome = self._outcomes.setdefault(task.name, Outcome())
        outcome.values = dict(getattr(task, "values", None) or {})
        # A hook skipped on its declared inputs reused what it made last time.
        outcome.status = "reused" if outcome.values.get("skipped") else "done"
        if outcome.values.get("pulled"):
            outcome.status = "pulled"
        if outcome.values.get("kept"):  # `:tag` serves a newer commit's image: left there
            outcome.status = "kept"
        self._finished(task.name, outcome)

    def add_failure(self, task: Any, fail: Any) -> None:
        """A failed task: its line, with its reason and the lines around its first error;
        its whole output in its log. A group (`build:C`) that did not run says nothing:
        the tasks it waited for said why."""
        if fail.report:
            self.failures.append({"task": task, "exception": fail})
        if not task.actions:
            return
        outcome = self._outcomes.setdefault(task.name, Outcome())
        if type(fail).__name__ == "UnmetDependency":
            outcome.status = "not built"
            outcome.blocked_by = self._failed_among(str(fail.message).split())
            self._finished(task.name, outcome)
            return
        message = str(getattr(fail, "message", "") or fail.get_msg())
        outcome.status = "failed"
        outcome.reason = reason(message)
        self._finished(task.name, outcome)
        said = message.rstrip().splitlines() if self.run.settings.verbose else excerpt(message)
        if said:
            self.write("".join(f"    {line}\n" for line in said))
        self._save_log(task.name, outcome.reason, message)

    def _failed_among(self, waited: list[str]) -> list[str]:
        """The tasks of `waited` that failed, a group (`build`, `_upload`) standing for
        those of its tasks that did; all of `waited` if none is known to have."""
        tasks: list[str] = []
        for name in waited:
            if name in self._tasks and not self._tasks[name].actions:
                tasks.extend(_waits_for(self._tasks, name, self._waits))
            else:
                tasks.append(name)
        failed = [name for name in dict.fromkeys(tasks)
                  if name in self._outcomes and self._outcomes[name].status == "failed"]
        return [display_name(name) for name in failed or waited]

    def _save_log(self, name: str, why: str, message: str) -> None:
        """`.paitasks/logs/<task>.log`: what the task printed, whole, then its error."""
        printed = self.run.output.take(*_printed_as(name))
        path = self._log_path(name)
        text = f"{display_name(name)} failed: {why}\n\n"
        if printed:  # whole: the lines the message quotes are among them
            text += "\n".join(printed) + "\n\n"
            message = "\n".join(line for line in message.splitlines()
                                if not line.startswith(TAIL_MARK))
        try:
            write_atomically(path, text + message.rstrip() + "\n")
        except OSError as exc:
            self.write(f"paitasks: could not keep the output of {display_name(name)}: {exc}\n")
            return
        self._logs[display_name(name)] = path

    def _log_path(self, name: str) -> Path:
        return self.run.state / LOGS_DIR / f"{display_name(name).replace('/', '_')}.log"

    def _up_to_date(self, name: str) -> str:
        """"up to date", or "up to date in the registry" for an image found only there."""
        if name.startswith("build-image:"):
            found = self.run.findings.latest(name.split(":", 1)[1])
            if found is not None and found.where == "registry":
                return REGISTRY_UP_TO_DATE
        return "up to date"

    def _finished(self, name: str, outcome: Outcome) -> None:
        outcome.ended = time.time()
        if outcome.started is not None:
            outcome.seconds = outcome.ended - outcome.started
        self._done += 1
        took = f" {outcome.seconds:.1f}s" if outcome.seconds is not None else ""
        status = outcome.status
        builder = outcome.values.get("builder")
        where = f" on {builder}" if builder else ""
        count = f"[{self._done:>{len(str(self._total))}}/{self._total}] "
        why = f": {outcome.reason}" if outcome.reason else ""
        if outcome.blocked_by:
            why = f": {', '.join(outcome.blocked_by)} failed"
        line = f"{count}{status} {display_name(name)}{where}{took}{why}\n"
        span = (len(count), len(count) + len(status), outcome.status)
        if self._display is not None:
            self._display.finished(display_name(name), line, span)
        else:
            self.write(line, span)

    # -- summary and report -----------------------------------------------------------

    def _report(self) -> dict[str, Any]:
        """What `.paitasks/report.json` holds: per image and component, what this run did."""
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
            if outcome.reason:
                entry["reason"] = outcome.reason
            if display_name(name) in self._logs:
                entry["log"] = str(self._logs[display_name(name)])
            if outcome.values.get("builder"):
                entry["builder"] = outcome.values["builder"]
            if kind == "build-image":
                local = _safe_get(self.run, subject)
                entry["id"] = outcome.values.get("id") or (local.id if local else None)
                entry["fingerprint"] = (
                    outcome.values.get("fingerprint")
                    or self.run.findings.fingerprint(subject)
                    or (local.labels.get(LABEL) if local else None)
                )
                images.setdefault(subject, {}).update(entry)
            elif kind == "push":
                push = {**entry, "name": outcome.values.get("name"),
                        "digest": outcome.values.get("digest")}
                if outcome.values.get("kept"):
                    push["kept"] = outcome.values["kept"]
                images.setdefault(subject, {})["push"] = push
            elif kind == "upload":
                upload = {**entry, "digest": outcome.values.get("digest")}
                images.setdefault(subject, {})["upload"] = upload
            elif kind in ("copy-deps", "prebuild", "postbuild"):
                components.setdefault(subject, {})[kind] = entry
        report: dict[str, Any] = {
            "started": _iso(self._began),
            "finished": _iso(time.time()),
            "seconds": round(time.time() - self._began, 3),
            "result": "failure" if self.failures else "success",
            "images": images,
            "components": components,
        }
        for image, why in self.run.distrusted.items():
            images.setdefault(image, {})["ignored"] = why
        journal = self.run.journal
        if journal is not None:
            for image, entry in images.items():
                entry["retries"] = journal.retries.get(image, 0)
            report["registry"] = {
                "requests": len(journal.exchanges),
                "retried": sum(1 for item in journal.exchanges if item.tries > 1),
                "busy_seconds": round(journal.busy(), 3),
                "waited_seconds": round(journal.waited, 3),
            }
        return report

    def _write_report(self, report: dict[str, Any]) -> None:
        path = self.run.state / REPORT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, report, indent=2)

    def _write_trace(self) -> None:
        """`.paitasks/trace.json`: every task that ran or was checked, as a timeline."""
        slices = []
        now = time.time()
        for name, outcome in self._outcomes.items():
            start = outcome.started if outcome.started is not None else outcome.ended
            if start is None:
                continue
            slices.append(
                Slice(
                    name=display_name(name),
                    start=start,
                    end=outcome.ended if outcome.ended is not None else now,  # interrupted
                    result=_report_status(outcome.status),
                    where=str(outcome.values.get("builder") or "this machine"),
                    needs=tuple(display_name(n) for n in self._needs.get(name, ())),
                )
            )
        waits = [
            Slice(name=f"check {display_name(task)}", start=start, end=end, result=result,
                  where=CHECKS)
            for task, start, end, result in list(self.run.output.checks)
        ]
        waits += [Slice(name=what, start=start, end=end, result=result, where=ENGINE)
                  for what, start, end, result in list(self.run.output.engine_work)]
        journal = self.run.journal
        for item in list(journal.exchanges) if journal is not None else ():
            tries = f" ({item.tries} tries)" if item.tries > 1 else ""
            waits.append(Slice(name=f"{item.what}{tries}", start=item.start, end=item.end,
                               result=item.outcome, where=f"registry {item.registry}"))
        write_trace(self.run.state, slices, self._began, waits)


def summary_lines(report: Mapping[str, Any]) -> list[tuple[str, Span | None]]:
    """The table of every image of a report (report.json's form), in its words, aligned
    whatever the names: each line with the span of its status, if it has one."""
    rows = []
    for image, entry in sorted((report.get("images") or {}).items()):
        if "status" not in entry:  # only its push was part of the run
            continue
        status = str(entry["status"])
        if entry.get("builder"):
            status = f"{status} (on {entry['builder']})"
        seconds = entry.get("seconds")
        took = f"{seconds:.1f}s" if seconds is not None else ""
        push = entry.get("push") or {}
        pushed = ""
        if push.get("status") == "done":
            pushed = f"pushed {push.get('name')}@{push.get('digest')}"
        elif push.get("status") == "kept":
            pushed = f"kept {push.get('name')}: {push.get('kept')}"
        elif str(push.get("status", "")).startswith("up to date"):
            pushed = "already in the registry"
        elif push:
            pushed = f"push {push.get('status')}"
        if entry.get("reason") or push.get("reason"):
            pushed = f"{pushed}: {push['reason']}" if push.get("reason") else entry["reason"]
        elif status == "not built":
            pushed = f"{', '.join(entry.get('blocked_by') or ())} failed"
        rows.append((image, status, took, pushed))
    if not rows:
        return [(line, None) for line in _after_table(report)]
    width = max(len("image"), *(len(row[0]) for row in rows))
    status_width = max(len("result"), *(len(row[1]) for row in rows))
    header = f"{'image'.ljust(width)}  {'result'.ljust(status_width)}  {'time'.rjust(6)}"
    lines: list[tuple[str, Span | None]] = [("", None), (header, None)]
    for image, status, took, pushed in rows:
        line = f"{image.ljust(width)}  {status.ljust(status_width)}  {took.rjust(6)}  {pushed}"
        lines.append((line.rstrip(), (width + 2, width + 2 + len(status), status.split(" (")[0])))
    counts: dict[str, int] = {}
    for _, status, _, _ in rows:
        key = status.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    total = report.get("seconds")
    took = f" ({total:.1f}s)" if isinstance(total, int | float) else ""
    lines.append((f"{len(rows)} images: {parts}{took}", None))
    lines.extend((line, None) for line in _after_table(report))
    return lines


def _after_table(report: Mapping[str, Any]) -> list[str]:
    """The causes several images share, and where each failed task's whole output is."""
    failed: dict[str, str] = {}
    blocked: dict[str, list[str]] = {}
    logs: list[str] = []
    for image, entry in (report.get("images") or {}).items():
        for kind, part in (("build-image", entry), ("push", entry.get("push") or {}),
                           ("upload", entry.get("upload") or {})):
            if part.get("reason"):
                failed[f"{kind}:{image}"] = str(part["reason"])
            logs.extend([str(part["log"])] if part.get("log") else [])
        if entry.get("status") == "not built":
            blocked[image] = list(entry.get("blocked_by") or ())
    for component, hooks in (report.get("components") or {}).items():
        for kind, part in hooks.items():
            if part.get("reason"):
                failed[f"{kind}:{component}"] = str(part["reason"])
            logs.extend([str(part["log"])] if part.get("log") else [])
    lines = grouped(failed, blocked)
    lines.extend(f"{image}: {entry['ignored']}" for image, entry in
                 sorted((report.get("images") or {}).items()) if entry.get("ignored"))
    if logs:
        folder = Path(logs[0]).parent
        lines.append(f"the whole output of each failed task ({len(logs)}): {folder}/")
    return lines


def _report_status(status: str) -> str:
    return "interrupted" if status == "running" else status


def _safe_get(run: Run, name: str) -> Any:
    try:
        return run.images.get(name)
    except Exception:  # the report must not fail a finished run
        return None


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _waits_for(tasks: Any, name: str, memo: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The tasks with actions that `name` waits for, through groups (`build:C`...)."""
    if name not in memo:
        memo[name] = ()  # a loop cannot happen in doit; this only guards the recursion
        found: list[str] = []
        for dep in tasks[name].task_dep:
            if dep not in tasks:
                continue
            found.extend((dep,) if tasks[dep].actions else _waits_for(tasks, dep, memo))
        memo[name] = tuple(dict.fromkeys(found))
    return memo[name]


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


def reporter_for(run: Run, ahead: Lookahead) -> type[PaiReporter]:
    """A reporter class bound to one run (doit instantiates the class itself)."""
    return type("PaiReporter", (PaiReporter,), {"run": run, "ahead": ahead})
