"""The reporter's progress lines: plain in logs, coloured on a terminal, counted right."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from paitasks.reporter import PaiReporter, _closure, display_name


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def task(name: str, actions: bool = True, task_dep: list[str] | None = None) -> Any:
    return SimpleNamespace(
        name=name, actions=["x"] if actions else [], task_dep=task_dep or [], values={},
        title=lambda: name,
    )


def reporter(stream: io.StringIO, tmp_path: Path) -> PaiReporter:
    cls = type("R", (PaiReporter,), {"root": tmp_path})
    return cls(stream, {})


@pytest.mark.parametrize(("stream", "coloured"), [(io.StringIO(), False), (Terminal(), True)])
def test_colour_only_on_a_terminal(
    stream: io.StringIO, coloured: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    report = reporter(stream, tmp_path)
    report._total = 2
    built = task("build-image:a")
    report.execute_task(built)
    report.add_success(built)
    text = stream.getvalue()
    assert "[1/2] " in text and "build-image:a" in text
    assert ("\033[" in text) is coloured
    assert "\r" not in text  # line-oriented: no carriage-return animation


def test_closure_counts_only_tasks_with_actions() -> None:
    tasks = {
        "build": task("build", actions=False, task_dep=["build:a", "build:b"]),
        "build:a": task("build:a", actions=False, task_dep=["build-image:a"]),
        "build:b": task("build:b", actions=False, task_dep=["prebuild:b", "build:a"]),
        "build-image:a": task("build-image:a"),
        "prebuild:b": task("prebuild:b"),
        "push:a": task("push:a", task_dep=["build-image:a"]),
    }
    assert _closure(tasks, ["build"]) == {"build-image:a", "prebuild:b"}
    assert _closure(tasks, ["push:a"]) == {"push:a", "build-image:a"}


def test_hidden_publish_tasks_show_as_pushes() -> None:
    assert display_name("_publish:base") == "push:base"
    assert display_name("build-image:base") == "build-image:base"
