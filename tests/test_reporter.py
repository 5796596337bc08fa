"""The reporter's lines: plain in logs, coloured in the live view, counted right, in the
words of report.json, and a summary table that stays aligned."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from paitasks.freshness import Lookahead
from paitasks.progress import LiveDisplay
from paitasks.reporter import PaiReporter, display_name, reporter_for, summary_lines
from paitasks.run import Run
from paitasks.settings import Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def task(name: str, actions: bool = True, task_dep: list[str] | None = None) -> Any:
    return SimpleNamespace(
        name=name, actions=["x"] if actions else [], task_dep=task_dep or [], values={},
        title=lambda: name,
    )


def reporter(stream: io.StringIO, tmp_path: Path) -> PaiReporter:
    (tmp_path / "src").mkdir(exist_ok=True)
    run = Run(Settings(src=tmp_path / "src"))
    return reporter_for(run, Lookahead(run))(stream, {})


HOOKS = {
    "build": task("build", actions=False, task_dep=["build:a", "build:b"]),
    "build:a": task("build:a", actions=False, task_dep=["prebuild:a"]),
    "build:b": task("build:b", actions=False, task_dep=["postbuild:b", "build:a"]),
    "prebuild:a": task("prebuild:a"),
    "postbuild:b": task("postbuild:b"),
}


def one_hook_run(stream: io.StringIO, tmp_path: Path) -> str:
    """What a run of one hook shows on `stream`."""
    report = reporter(stream, tmp_path)
    report.initialize(HOOKS, ["build"])
    report.execute_task(HOOKS["prebuild:a"])
    report.add_success(HOOKS["prebuild:a"])
    report.complete_run()
    return stream.getvalue()


@pytest.mark.parametrize(("stream", "coloured"), [(io.StringIO(), False), (Terminal(), True)])
def test_colour_only_on_a_terminal(
    stream: io.StringIO, coloured: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")  # a terminal that takes the live view
    text = one_hook_run(stream, tmp_path)
    assert "prebuild:a" in text
    assert ("\033[" in text) is coloured
    assert ("\033[32mdone\033[0m prebuild:a" in text) is coloured  # the status, green
    if not coloured:
        assert "\r" not in text  # line-oriented: no carriage-return animation


COLOUR = re.compile(r"\033\[[0-9;]*(?:3|9)[0-7]m")  # a foreground colour


@pytest.mark.parametrize(
    ("environment", "live", "colour"),
    [({"TERM": "xterm"}, True, True), ({"TERM": "xterm", "NO_COLOR": "1"}, True, False),
     ({"TERM": "dumb"}, False, False), ({"TERM": ""}, False, False)],
)
def test_a_terminal_gets_the_live_view_unless_told_otherwise(
    environment: dict[str, str], live: bool, colour: bool, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    text = one_hook_run(Terminal(), tmp_path)
    assert "done prebuild:a" in re.sub(r"\033\[[0-9;]*m", "", text)
    assert ("1/2 tasks" in text) is live  # the bar's words
    assert bool(COLOUR.search(text)) is colour
    if not live:
        assert "\033" not in text  # plain lines never carry colour codes


REPORT = {
    "images": {
        "a": {"status": "done", "seconds": 1.5},
        "b": {"status": "not built", "blocked_by": ["prebuild:a"]},
        "c": {"status": "up to date", "seconds": 0.1},
        "d": {"push": {"status": "done"}},  # only its push ran: no row
    },
    "seconds": 2.0,
}


def test_summary_lines_say_where_each_status_is() -> None:
    lines = summary_lines(REPORT)
    assert [line for line, _ in lines] == [
        "",
        "image  result        time",
        "a      done          1.5s",
        "b      not built           prebuild:a failed",
        "c      up to date    0.1s",
        "3 images: 1 done, 1 not built, 1 up to date (2.0s)",
    ]
    assert [(line[span[0] : span[1]], span[2]) for line, span in lines if span] == [
        ("done", "done"),
        ("not built", "not built"),
        ("up to date", "up to date"),
    ]


def test_the_live_view_colours_the_summary_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    stream = Terminal()
    display = LiveDisplay(stream)  # lines written once its live part has gone
    for line, span in summary_lines(REPORT):
        display.write(line + "\n", span)
    text = stream.getvalue()
    assert "a      \033[32mdone\033[0m" in text
    assert "b      \033[33mnot built\033[0m           prebuild:a failed" in text
    assert "c      up to date" in text  # no colour for a status that needs no eye
    assert re.sub(r"\033\[[0-9;]*m", "", text).splitlines() == [
        line for line, _ in summary_lines(REPORT)
    ]


def test_counts_only_tasks_with_actions_in_report_words(tmp_path: Path) -> None:
    stream = io.StringIO()
    report = reporter(stream, tmp_path)
    report.initialize(HOOKS, ["build"])  # groups (build, build:a) have no actions
    report.execute_task(HOOKS["prebuild:a"])
    report.add_success(HOOKS["prebuild:a"])
    skipped = task("postbuild:b")
    skipped.values = {"skipped": "declared inputs unchanged"}
    report.execute_task(skipped)
    report.add_success(skipped)
    report.complete_run()
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("[1/2] done prebuild:a") for line in lines), lines
    assert any(line.startswith("[2/2] reused postbuild:b") for line in lines), lines
    written = json.loads((tmp_path / ".paitasks" / "report.json").read_text())
    assert written["components"]["a"]["prebuild"]["status"] == "done"
    assert written["components"]["b"]["postbuild"]["status"] == "reused"


@pytest.mark.engine
def test_summary_is_aligned_whatever_the_names(tmp_path: Path, docker_client: Any) -> None:
    """Short names no longer run the header together ("imageresult"); the words are
    report.json's."""
    tasks = {
        "build": task("build", actions=False, task_dep=["build-image:a", "build-image:bb"]),
        "build-image:a": task("build-image:a"),
        "build-image:bb": task("build-image:bb"),
    }
    stream = io.StringIO()
    report = reporter(stream, tmp_path)
    report.initialize(tasks, ["build"])
    report.skip_uptodate(tasks["build-image:a"])
    report.execute_task(tasks["build-image:bb"])
    report.add_success(tasks["build-image:bb"])
    report.complete_run()
    table = stream.getvalue().split("\n\n", 1)[1].splitlines()
    header, first, second = table[0], table[1], table[2]
    assert header.split() == ["image", "result", "time"]
    assert header.index("result") == first.index("up to date") == second.index("done")
    assert table[3].startswith("2 images: 1 done, 1 up to date")


def test_hidden_publish_tasks_show_as_pushes() -> None:
    assert display_name("_publish:base") == "push:base"
    assert display_name("build-image:base") == "build-image:base"
