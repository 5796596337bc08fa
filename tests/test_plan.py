"""`pai-build plan` and `doit list --status` predict what a build will do, and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from paitasks.freshness import ImageUpToDate
from paitasks.loader import load_plan
from paitasks.run import Run
from paitasks.settings import resolve_settings
from paitasks.tasks import generate
from tests.support import FIXTURES, PAI_BUILD, REPO, finished, prefixed_tree


def run(*command: str) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def build(src: Path) -> set[str]:
    out = run(sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "-n", "4", "build",
              f"src={src}")
    return {task.split(":", 1)[1] for task, status in finished(out).items()
            if task.startswith("build-image:") and status == "done"}


def planned(src: Path) -> dict[str, str]:
    out = run(PAI_BUILD, "plan", "--src", str(src))
    return {
        line.split(":", 1)[0].removeprefix("rebuild "): line.split(":", 1)[1]
        for line in out.splitlines()
        if line.startswith("rebuild ")
    }


@pytest.mark.engine
def test_plan_predicts_the_build(tmp_path: Path, prefix: str, cleanup: None) -> None:
    src = tmp_path / "src"
    names = prefixed_tree(FIXTURES, src, prefix)
    build(src)
    assert planned(src) == {}

    # A file copy-deps will copy (componentB copies componentA): predicted exactly.
    script = src / "componentA" / "bin" / "hello-a.sh"
    script.write_text(script.read_text() + "# changed\n")
    # A base image: everything built on it follows.
    tools_base = src / "tools" / "build" / f"{names['tools-base']}.dockerfile"
    tools_base.write_text(tools_base.read_text() + "RUN echo more > /more\n")
    plan = planned(src)
    assert set(plan) == {names["component-b"], names["tools-base"], names["tools"],
                         names["argbase"]}
    assert "dependency/componentA/bin/hello-a.sh changed" in plan[names["component-b"]]
    assert f"uses {names['tools']}, which rebuilds" in plan[names["argbase"]]

    status = run(sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "list", "--all",
                 "--status", f"src={src}")
    stale = {line.split()[1].removeprefix("build-image:") for line in status.splitlines()
             if line.startswith("R build-image:")}
    assert names["component-b"] in stale and names["tools-base"] in stale
    assert names["watchdog"] not in stale

    assert build(src) == set(plan)
    assert planned(src) == {}


def _status_checks(src: Path) -> dict[str, ImageUpToDate]:
    """The image checks of one planning of `src`, as a dodo file makes them."""
    settings = resolve_settings({"src": str(src)}, environ={})
    checks = {}
    for task in generate(load_plan(settings), Run(settings)):
        for check in task.get("uptodate", ()):
            if isinstance(check, ImageUpToDate):
                checks[check.spec.name] = check
    return checks


@pytest.mark.engine
def test_each_planning_predicts_afresh(
    tmp_path: Path, prefix: str, cleanup: None
) -> None:
    """Two `doit list --status` in one process (a test, a tool that loads the dodo file
    twice): the second planning answers from the tree as it is then, not from the
    first one's answers."""
    src = tmp_path / "src"
    names = prefixed_tree(FIXTURES, src, prefix)
    build(src)
    image = names["watchdog"]
    first = _status_checks(src)[image]
    assert first(None, None), first
    dockerfile = next((src / "watchdog" / "build").glob("*.dockerfile"))
    dockerfile.write_text(dockerfile.read_text() + "RUN echo more > /more\n")
    second = _status_checks(src)[image]
    assert not second(None, None), second
