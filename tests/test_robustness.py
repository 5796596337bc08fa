"""Failing well: failures with --continue, Ctrl-C, two runs at once, no engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from tests.support import FIXTURES, REPO, finished, prefixed_tree, report, temp_folders
from tests.support import run_doit as doit

DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]


def started(arguments: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A doit run in its own process group, as a terminal would start it."""
    return subprocess.Popen(
        [*DOIT, *arguments], cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(condition: object, what: str, limit: float = 120.0) -> None:
    """Poll until `condition()` holds; a bounded wait, not a speed check."""
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def executed(output: str) -> set[str]:
    """The tasks whose actions ran to an end (done or failed), from the finished lines."""
    return {task for task, status in finished(output).items() if status in ("done", "failed")}


def gate_hook(hook: Path, gate: Path, entered: Path) -> None:
    """Make a hook say it started, then wait until `gate` exists."""
    hook.write_text(
        hook.read_text()
        + f"touch {entered}\nwhile [ ! -e {gate} ]; do sleep 0.1; done\n"
    )


@pytest.fixture
def tree(tmp_path: Path, prefix: str, cleanup: None) -> tuple[Path, dict[str, str]]:
    src = tmp_path / "src"
    return src, prefixed_tree(FIXTURES, src, prefix)


@pytest.mark.engine
def test_continue_builds_what_does_not_depend_on_the_failure(
    tree: tuple[Path, dict[str, str]], docker_client: docker.DockerClient
) -> None:
    src, names = tree
    broken = src / "tools" / "build" / f"{names['tools-base']}.dockerfile"
    broken.write_text(broken.read_text() + "RUN echo tools-base-breaks && exit 4\n")
    result = doit("-n", "4", "--continue", "build", f"src={src}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "tools-base-breaks" in output and "Traceback" not in output
    assert (f"not built build-image:{names['tools']}: build-image:{names['tools-base']} failed"
            in output)
    found = report(src)
    images = found["images"]
    assert found["result"] == "failure"
    assert images[names["tools-base"]]["status"] == "failed"
    for dependent in ("tools", "argbase"):
        assert images[names[dependent]]["status"] == "not built"
        assert not docker_client.images.list(name=names[dependent])
    for independent in ("rest-server", "watchdog", "component-b", "drivers"):
        assert images[names[independent]]["status"] == "done"
        assert images[names[independent]]["id"].startswith("sha256:")
    assert temp_folders(src) == []


@pytest.mark.engine
def test_ctrl_c_stops_cleans_up_and_the_next_run_finishes(
    tree: tuple[Path, dict[str, str]], tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    src, names = tree
    entered, gate = tmp_path / "entered", tmp_path / "never"
    gate_hook(src / "componentB" / "build" / "build-pre.sh", gate, entered)
    log = tmp_path / "run.log"
    run = started(["-n", "4", "build", f"src={src}"], log)
    wait_for(entered.exists, "componentB's hook to start")
    os.killpg(run.pid, signal.SIGINT)
    run.wait(timeout=60)
    output = log.read_text()
    assert run.returncode != 0
    assert "interrupted" in output and "Traceback" not in output
    assert temp_folders(src) == []
    wait_for(lambda: not docker_client.containers.list(all=True), "build containers to go")
    done_before = {
        line.split(" done ", 1)[1].split()[0]
        for line in output.splitlines()
        if " done build-image:" in line
    }
    assert f"build-image:{names['base-image']}" in done_before  # componentB waited for it
    # The next run completes, and rebuilds none of what the first one finished.
    gate.touch()
    second = doit("-n", "4", "build", f"src={src}")
    assert second.returncode == 0, second.stdout + second.stderr
    rebuilt = {line for line in executed(second.stdout) if line.startswith("build-image:")}
    assert f"build-image:{names['component-b']}" in rebuilt
    assert not rebuilt & done_before


@pytest.mark.engine
def test_two_runs_on_one_tree_take_turns(
    tree: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    src, _ = tree
    entered, gate = tmp_path / "entered", tmp_path / "gate"
    gate_hook(src / "componentB" / "build" / "build-pre.sh", gate, entered)
    first = started(["-n", "2", "build", f"src={src}"], tmp_path / "first.log")
    wait_for(entered.exists, "the first run's hook")
    second = started(["-n", "2", "build", f"src={src}"], tmp_path / "second.log")
    wait_for(lambda: "waiting for it to finish" in (tmp_path / "second.log").read_text(),
             "the second run to report the lock")
    assert second.poll() is None, "the second run went ahead while the first held the lock"
    gate.touch()
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()
    # The second run looks at the engine after the first: what it built is up to date.
    waited = (tmp_path / "second.log").read_text()
    assert not {x for x in executed(waited) if x.startswith("build-image:")}, waited
    assert temp_folders(src) == []
    third = doit("build", f"src={src}")
    assert third.returncode == 0
    assert not {x for x in executed(third.stdout) if x.startswith("build-image:")}


def test_no_engine_is_a_clear_error_before_any_hook(tmp_path: Path) -> None:
    src = tmp_path / "src"
    prefixed_tree(FIXTURES, src, "noengine")
    marker = tmp_path / "hook-ran"
    hook = src / "base-image" / "build" / "build-pre.sh"
    hook.write_text(f"touch {marker}\n" + hook.read_text())
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"}
    result = doit("build", f"src={src}", env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot reach the Docker engine" in output and "dev-engine up" in output
    assert "Traceback" not in output
    assert not marker.exists()


@pytest.mark.engine
def test_process_mode_is_refused_before_any_work(
    tree: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """With -P process the checks could not see images built by workers: refused."""
    src, _ = tree
    marker = tmp_path / "hook-ran"
    hook = src / "base-image" / "build" / "build-pre.sh"
    hook.write_text(f"touch {marker}\n" + hook.read_text())
    result = doit("-n", "2", "-P", "process", "build", f"src={src}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "-P process" in output and "Traceback" not in output
    assert not marker.exists() and not temp_folders(src)


def test_empty_source_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    result = doit("list", f"src={tmp_path / 'src'}")
    assert result.returncode != 0
    assert "has no components" in result.stderr and "Traceback" not in result.stderr
