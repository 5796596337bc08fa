"""What a run shows while it runs: plain lines with a heartbeat; the live view in tmux."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paitasks.progress import PlainDisplay, elapsed
from tests.support import DODO, PAI_BUILD, doit_on


class Clock:
    """The heartbeat's clock and wait: time moves only when it waits, and each wait ends
    with the next step of a script (what happens meanwhile); after the last, it stops."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.steps: list[Callable[[], object]] = []
        self.waited: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waited.append(seconds)
        self.now += seconds
        if not self.steps:
            return True
        self.steps.pop(0)()
        return False


def test_elapsed_reads_like_a_person_writes_it() -> None:
    assert [elapsed(s) for s in (0, 42.9, 60, 185, 3600, 3725)] == [
        "0s", "42s", "1m00s", "3m05s", "1h00m", "1h02m",
    ]


def test_plain_lines_name_what_runs_at_each_beat_and_only_then() -> None:
    out = io.StringIO()
    clock = Clock()
    display = PlainDisplay(out, interval=30, clock=clock, wait=clock.wait)

    def two_start() -> None:
        display.started("build-image:a")
        display.output("build-image:a", "step 1", builder="m1")
        clock.now += 75
        display.started("prebuild:b")

    clock.steps = [
        lambda: None,  # a beat with nothing in flight: no line
        two_start,
        lambda: display.finished("build-image:a", "[1/3] done build-image:a 75.0s\n"),
    ]
    display.start(total=3)
    display.stop()
    assert out.getvalue().splitlines() == [
        "... running: build-image:a on m1 (1m15s), prebuild:b (0s)",
        "[1/3] done build-image:a 75.0s",
        "... running: prebuild:b (0s)",
    ]
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()


def test_beats_keep_to_the_interval_however_late_one_comes() -> None:
    out = io.StringIO()
    clock = Clock()
    display = PlainDisplay(out, interval=30, clock=clock, wait=clock.wait)

    def late() -> None:
        clock.now += 7

    def stalled() -> None:
        clock.now += 65

    clock.steps = [lambda: display.started("build-image:slow"), late, stalled, late]
    display.start(total=1)
    display.stop()
    # Beats are due 30, 60, 90, 120 s after the start: a late one shortens the next wait
    # and one a stall held up comes at once, so they never drift; never more beats than
    # intervals gone by.
    assert clock.waited == [30, 30, 23, 0, 0]
    assert out.getvalue().count("... running: build-image:slow") == 4


def test_lines_from_many_threads_never_mix() -> None:
    out = io.StringIO()
    display = PlainDisplay(out, interval=60)
    display.start(total=400)

    def finish(number: int) -> None:
        for index in range(50):
            display.finished(f"t{number}-{index}", f"[x/400] done t{number}-{index} 0.0s\n")

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    display.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 400
    assert all(re.fullmatch(r"\[x/400\] done t\d-\d+ 0\.0s", line) for line in lines)


# -- a real run: the live view in a terminal (tmux), plain lines in a pipe, the report ----


def slow_tree(root: Path, base: str, prefix: str, count: int, seconds: int) -> Path:
    """`count` independent components, each an image FROM `base` with a slow RUN."""
    src = root / "src"
    for number in range(count):
        build = src / f"c{number}" / "build"
        build.mkdir(parents=True)
        (build / f"{prefix}-slow{number}.dockerfile").write_text(
            f"FROM {base}\nRUN echo working on {number} && sleep {seconds} && echo done\n"
        )
    return src


def tmux(*arguments: str) -> str:
    result = subprocess.run(["tmux", *arguments], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def screen_until(session: str, wanted: Callable[[str], bool], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if wanted(screen) or time.monotonic() > deadline:
            return screen
        time.sleep(0.2)


BAR = "━"


@pytest.mark.engine
def test_the_live_view_shows_the_builds_in_flight_and_ctrl_c_leaves_a_clean_screen(
    tmp_path: Path, prefix: str, busybox_image: str
) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: scripts/dev-engine up installs it", pytrace=False)
    src = slow_tree(tmp_path, busybox_image, prefix, count=4, seconds=20)
    session = f"{prefix}-live"
    command = (
        f"trap true INT; cd {shlex.quote(str(tmp_path))} && "
        f"{shlex.quote(sys.executable)} -m doit -f {shlex.quote(str(DODO))} -n 2 build "
        f"src={shlex.quote(str(src))}; echo EXIT=$?; sleep 120"
    )
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40",
         f"bash -c {shlex.quote(command)}")
    try:
        running = re.compile(rf"^  build-image:{prefix}-slow\d (\d+)s ", re.MULTILINE)

        def two_builds_for_a_while(screen: str) -> bool:
            return len(running.findall(screen)) == 2 and "working on" in screen

        first = screen_until(session, two_builds_for_a_while)
        assert two_builds_for_a_while(first), first
        assert BAR in first and re.search(r" 0/4 tasks, \d+s", first), first
        time.sleep(2.5)
        second = screen_until(session, two_builds_for_a_while)
        assert two_builds_for_a_while(second), second
        # The same builds, running for longer: the view is live.
        assert sorted(map(int, running.findall(second))) > sorted(map(int, running.findall(first)))
        tmux("send-keys", "-t", session, "C-c")
        final = screen_until(session, lambda screen: "EXIT=" in screen)
        assert "EXIT=130" in final, final
        assert BAR not in final and not running.search(final), final
        assert "interrupted" in final
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


@pytest.mark.engine
def test_a_pipe_gets_one_plain_line_per_task_and_the_report_tells_where_time_went(
    tmp_path: Path, prefix: str, busybox_image: str
) -> None:
    src = slow_tree(tmp_path, busybox_image, prefix, count=3, seconds=1)
    result = doit_on(src, "-n", "2", "build")  # captured: stdout is a pipe
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "\r" not in out and "\033" not in out
    finished = re.findall(r"^\[\d/3\] (\S.*?) (build-image:\S+)", out, re.MULTILINE)
    assert sorted(task for _, task in finished) == [
        f"build-image:{prefix}-slow{n}" for n in range(3)
    ]
    assert not re.search(r"^(\.  |-- )", out, re.MULTILINE), out  # no doit duplicates
    trace = json.loads((tmp_path / ".paitasks" / "trace.json").read_text())
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert all({"name", "ph", "ts", "dur", "pid", "tid"} <= set(e) for e in slices)
    machines = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M"}
    here = [e for e in slices if machines[e["pid"]] == "this machine"]
    assert {e["name"] for e in here} >= {f"build-image:{prefix}-slow{n}" for n in range(3)}
    assert len({e["tid"] for e in here}) <= 2  # -n 2: never more than two at once
    report = subprocess.run(
        [PAI_BUILD, "report", "--src", str(src)], capture_output=True, text=True, timeout=60
    )
    assert report.returncode == 0, report.stderr
    assert "3 images: 3 done" in report.stdout
    assert "critical path" in report.stdout and "slowest image builds" in report.stdout
    slowest = report.stdout.split("slowest image builds:")[1].split()
    assert f"{prefix}-slow0" in slowest
