"""A run's timeline: one slice per task, in the Trace Event format, with its critical path.

`.paitasks/trace.json` opens in Perfetto (ui.perfetto.dev) or `chrome://tracing`. Each
task is a complete event (`"ph": "X"`) on the machine that ran it (a "process": this
machine, or a builder of `builders=`) and on a lane of it (a "thread": lanes are handed out
so that no two slices of one lane overlap, so a machine never has more lanes than tasks
ran there at once). The critical path (the chain of tasks, each waiting for the one
before it, that ends last) is repeated on a process of its own, and listed in the
file's metadata. Pure logic: the reporter records, this module arranges and writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paitasks.disk import write_atomically

TRACE_FILE = "trace.json"
HERE = "this machine"
CRITICAL = "critical path"


@dataclass(frozen=True)
class Slice:
    """One task of the run, as it ran."""

    name: str
    start: float  # seconds, on any one clock
    end: float
    result: str
    where: str = HERE  # the machine: HERE or a builder's name
    needs: tuple[str, ...] = ()  # tasks it waited for (doit's task_dep)


@dataclass
class Lanes:
    """Lanes of one machine: a slice takes the first lane free at its start."""

    ends: list[float] = field(default_factory=list)

    def take(self, start: float, end: float) -> int:
        for lane, busy_until in enumerate(self.ends):
            if busy_until <= start:
                self.ends[lane] = end
                return lane
        self.ends.append(end)
        return len(self.ends) - 1


def critical_path(slices: Iterable[Slice]) -> list[Slice]:
    """From the task that ended last, back through the task it waited for that ended
    last, to a task that waited for none of this run's tasks: first to last."""
    by_name = {item.name: item for item in slices}
    if not by_name:
        return []
    current: Slice | None = max(by_name.values(), key=lambda item: (item.end, item.name))
    path: list[Slice] = []
    seen: set[str] = set()
    while current is not None and current.name not in seen:
        path.append(current)
        seen.add(current.name)
        waited = [by_name[name] for name in current.needs if name in by_name]
        current = max(waited, key=lambda item: (item.end, item.name)) if waited else None
    return list(reversed(path))


def trace_events(
    slices: Sequence[Slice], began: float, waits: Sequence[Slice] = ()
) -> dict[str, Any]:
    """The Trace Event document of a run's task slices (times in microseconds from
    `began`); `waits` (up-to-date checks, registry requests) go on processes of their
    own, named by their `where`, and never on the critical path."""
    machines = [HERE, *sorted({item.where for item in slices} - {HERE}), CRITICAL]
    machines += sorted({item.where for item in waits} - set(machines))
    pids = {machine: number for number, machine in enumerate(machines, 1)}
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": machine}}
        for machine, pid in pids.items()
    ]
    lanes: dict[str, Lanes] = {}

    def event(item: Slice, pid: int, tid: int) -> dict[str, Any]:
        return {
            "name": item.name,
            "cat": item.name.split(":", 1)[0],
            "ph": "X",
            "ts": round((item.start - began) * 1e6),
            "dur": max(0, round((item.end - item.start) * 1e6)),
            "pid": pid,
            "tid": tid,
            "args": {"result": item.result},
        }

    for item in sorted([*slices, *waits], key=lambda entry: (entry.start, entry.end, entry.name)):
        lane = lanes.setdefault(item.where, Lanes()).take(item.start, item.end)
        events.append(event(item, pids[item.where], lane))
    path = critical_path(slices)
    events.extend(event(item, pids[CRITICAL], 0) for item in path)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "critical_path": [item.name for item in path],
            "critical_path_seconds": round(sum(item.end - item.start for item in path), 3),
        },
    }


def write_trace(
    state: Path, slices: Sequence[Slice], began: float, waits: Sequence[Slice] = ()
) -> Path:
    path = state / TRACE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(trace_events(slices, began, waits), indent=1) + "\n")
    return path


def read_critical_path(document: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(task, seconds) along the critical path of a trace written by `write_trace`."""
    names = (document.get("otherData") or {}).get("critical_path") or []
    events = document.get("traceEvents") or []
    critical = next(
        (e["pid"] for e in events if e.get("ph") == "M" and e["args"].get("name") == CRITICAL),
        None,
    )
    durations = {
        e["name"]: e["dur"] / 1e6 for e in events if e.get("ph") == "X" and e["pid"] == critical
    }
    return [(name, durations.get(name, 0.0)) for name in names]
