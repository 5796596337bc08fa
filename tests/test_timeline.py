"""The run's timeline: valid Trace Event slices, lanes that never overlap, the critical path."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from paitasks.timeline import (
    CRITICAL,
    HERE,
    Slice,
    critical_path,
    read_critical_path,
    trace_events,
    write_trace,
)

KEYS = {"name", "ph", "ts", "dur", "pid", "tid"}


def test_the_critical_path_follows_what_each_task_waited_for_longest() -> None:
    slices = [
        Slice("prebuild:a", 0.0, 1.0, "done"),
        Slice("build-image:a", 1.0, 5.0, "done", needs=("prebuild:a",)),
        Slice("build-image:quick", 1.0, 2.0, "done", needs=("prebuild:a",)),
        Slice("build-image:b", 5.0, 6.0, "done", needs=("build-image:a", "build-image:quick")),
        Slice("build-image:side", 0.0, 3.0, "done"),
    ]
    path = [item.name for item in critical_path(slices)]
    assert path == ["prebuild:a", "build-image:a", "build-image:b"]
    document = trace_events(slices, began=0.0)
    assert document["otherData"]["critical_path"] == path
    assert document["otherData"]["critical_path_seconds"] == 6.0
    assert critical_path([]) == []


def test_every_slice_has_the_format_fields_and_machines_are_named(tmp_path: Path) -> None:
    slices = [
        Slice("build-image:a", 10.0, 12.5, "done", where="m1"),
        Slice("build-image:b", 10.5, 11.0, "failed"),
        Slice("push:a", 12.5, 13.0, "up to date", needs=("build-image:a",)),
    ]
    path = write_trace(tmp_path, slices, began=10.0)
    document = json.loads(path.read_text())
    complete = [event for event in document["traceEvents"] if event["ph"] == "X"]
    assert all(set(event) >= KEYS for event in complete)
    names = {
        event["pid"]: event["args"]["name"]
        for event in document["traceEvents"]
        if event["ph"] == "M" and event["name"] == "process_name"
    }
    assert set(names.values()) == {HERE, "m1", CRITICAL}
    built_a = next(e for e in complete if e["name"] == "build-image:a" and names[e["pid"]] == "m1")
    assert (built_a["ts"], built_a["dur"], built_a["args"]["result"]) == (0, 2_500_000, "done")
    assert read_critical_path(document) == [("build-image:a", 2.5), ("push:a", 0.5)]


intervals = st.lists(
    st.tuples(
        st.floats(0, 100, allow_nan=False),
        st.floats(0.001, 30, allow_nan=False),
        st.sampled_from([HERE, "m1", "m2"]),
    ),
    max_size=40,
)


@given(intervals)
def test_slices_of_one_lane_never_overlap_and_lanes_stay_within_the_concurrency(
    spans: list[tuple[float, float, str]],
) -> None:
    slices = [
        Slice(f"task:{number}", start, start + length, "done", where=where)
        for number, (start, length, where) in enumerate(spans)
    ]
    document = trace_events(slices, began=0.0)
    machine = {
        e["pid"]: e["args"]["name"] for e in document["traceEvents"] if e["ph"] == "M"
    }
    events = [
        e for e in document["traceEvents"] if e["ph"] == "X" and machine[e["pid"]] != CRITICAL
    ]
    assert len(events) == len(slices)
    lanes: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for event in events:
        lanes.setdefault((machine[event["pid"]], event["tid"]), []).append(
            (event["ts"], event["ts"] + event["dur"])
        )
    for taken in lanes.values():
        taken.sort()
        for (_, end), (next_start, _) in itertools.pairwise(taken):
            assert end <= next_start + 1  # times are rounded to microseconds
    for where in {item.where for item in slices}:
        mine = [item for item in slices if item.where == where]
        at_once = max(sum(1 for o in mine if o.start <= i.start < o.end) for i in mine)
        assert len({tid for name, tid in lanes if name == where}) <= max(at_once, 1)
