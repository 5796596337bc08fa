"""What the dodo file decides before doit runs: whether to list the engine's images early."""

from __future__ import annotations

import sys
from types import TracebackType

import pytest

from paitasks.dodo import _quiet_interrupts, reads_images


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], True),  # doit's default command: run
        (["-n", "4", "build", "src=src"], True),
        (["run", "build:componentB"], True),
        (["info", "build-image:tools"], True),
        (["list", "--all", "--status"], True),
        (["list", "-s"], True),
        (["list", "-qs", "--all"], True),
        (["-f", "dodo.py", "strace", "build:x"], True),
        (["build:list"], True),  # a task, not the command
        (["list", "--all"], False),
        (["list", "-q"], False),
        (["-f", "dodo.py", "list", "src=list"], False),
        (["help", "build"], False),
        (["clean"], False),
        (["forget", "build-image:tools"], False),
        (["dumpdb"], False),
    ],
)
def test_reads_images(argv: list[str], expected: bool) -> None:
    assert reads_images(argv) is expected


def test_interrupt_hook_is_installed_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    passed: list[type[BaseException]] = []

    def before(kind: type[BaseException], value: BaseException, _: TracebackType | None) -> None:
        passed.append(kind)

    monkeypatch.setattr(sys, "excepthook", before)
    _quiet_interrupts()
    hook = sys.excepthook
    _quiet_interrupts()
    assert sys.excepthook is hook is not before
    hook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert capsys.readouterr().err == (
        "paitasks: interrupted; temp folders removed, the lock released\n"
    )
    hook(ValueError, ValueError("x"), None)
    assert passed == [ValueError]  # passed on once, not through a second wrapper
