"""`pai-build plan` and `doit list --status` predict what a build will do, and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import FIXTURES, REPO, prefixed_tree

PAI_BUILD = str(Path(sys.executable).parent / "pai-build")


def run(*command: str) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def build(src: Path) -> set[str]:
    out = run(sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "-n", "4", "build",
              f"src={src}")
    return {line[len(".  build-image:"):] for line in out.splitlines()
            if line.startswith(".  build-image:")}


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
