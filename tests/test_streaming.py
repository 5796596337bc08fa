"""run_streaming: a child's output passed on line by line, its exit code, its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paitasks import streaming
from paitasks.streaming import StartError, run_streaming


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def finishes(work: Callable[[], object], timeout: float = 60) -> bool:
    """Whether `work` returns (or raises) within `timeout` seconds: a bounded wait for
    completion, not a speed check."""
    done = threading.Event()

    def target() -> None:
        try:
            work()
        except BaseException:
            pass
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_lines_are_passed_on_in_order_with_stderr_merged_and_the_code_returned() -> None:
    lines: list[str] = []
    script = (
        "echo out-1; echo err-1 >&2; echo; printf 'crlf\\r\\n'; "
        "printf 'bad-\\377-byte\\n'; echo err-2 >&2; printf no-newline; exit 7"
    )
    assert run_streaming(sh(script), lines.append) == 7
    assert lines == ["out-1", "err-1", "", "crlf", "bad-\ufffd-byte", "err-2", "no-newline"]
    assert run_streaming(sh("true"), lines.append) == 0


def test_cwd_and_env_reach_the_child_and_stdin_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`env` is the child's whole environment: nothing of this process's is added."""
    monkeypatch.setenv("PAITASKS_TEST_INHERITED", "leaked")
    lines: list[str] = []
    script = (
        'pwd; echo "$ONLY_VAR ${PAITASKS_TEST_INHERITED:-not-inherited}"; '
        'if read -r x; then echo "read $x"; else echo eof; fi'
    )
    env = {"ONLY_VAR": "here", "PATH": os.environ["PATH"]}
    assert run_streaming(sh(script), lines.append, cwd=tmp_path, env=env) == 0
    assert lines == [str(tmp_path), "here not-inherited", "eof"]
    assert run_streaming(sh('echo "$PAITASKS_TEST_INHERITED"'), lines.append) == 0
    assert lines[-1] == "leaked"


def test_a_background_child_holding_the_pipe_does_not_keep_it_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child is done when it exits; lines its background child prints later are not
    passed on once run_streaming has returned."""
    monkeypatch.setattr(streaming, "DRAIN_SECONDS", 0.2)
    marker = tmp_path / "late-line-printed"
    script = f"(sleep 1; echo late; touch {marker}; exec sleep 300) & echo $!; echo started"
    lines: list[str] = []
    codes: list[int] = []
    try:
        assert finishes(lambda: codes.append(run_streaming(sh(script), lines.append)))
        assert codes == [0] and lines[1:] == ["started"]
        returned_with = list(lines)
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the background child never printed its late line"
        time.sleep(0.5)  # time enough for a reader that still passes lines on
        assert lines == returned_with
    finally:
        if lines and lines[0].isdigit():
            os.kill(int(lines[0]), signal.SIGKILL)


def test_a_missing_program_or_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-program"
    with pytest.raises(StartError) as caught:
        run_streaming([str(missing), "arg"], print)
    assert caught.value.filename == str(missing)
    assert "No such file or directory" in str(caught.value)
    with pytest.raises(StartError, match="no-such-folder"):
        run_streaming(["true"], print, cwd=tmp_path / "no-such-folder")
    assert isinstance(caught.value, OSError)


def test_a_line_handler_that_fails_stops_the_child_and_its_error_is_raised() -> None:
    seen: list[str] = []

    def refuse(line: str) -> None:
        seen.append(line)
        raise ValueError(f"cannot take {line}")

    def work() -> None:
        with pytest.raises(ValueError, match="cannot take first"):
            run_streaming(sh("echo first; echo second; exec sleep 300"), refuse)
        seen.append("raised")

    assert finishes(work), "the child kept running after its line handler failed"
    assert seen == ["first", "raised"]


def test_ctrl_c_kills_the_child() -> None:
    """Interrupted while it waits, run_streaming kills the child before re-raising."""
    program = (
        "from paitasks.streaming import run_streaming\n"
        "run_streaming(['sh', '-c', 'echo $$; exec sleep 300'], lambda l: print(l, flush=True))\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert runner.stdout is not None
    child = int(runner.stdout.readline())
    try:
        assert alive(child)
        runner.send_signal(signal.SIGINT)
        _, errors = runner.communicate(timeout=60)
        assert runner.returncode != 0 and "KeyboardInterrupt" in errors
        assert not alive(child), "the child outlived an interrupted run_streaming"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
