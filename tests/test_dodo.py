"""What the dodo file decides before doit runs: whether to list the engine's images early."""

from __future__ import annotations

import pytest

from paitasks.dodo import reads_images


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
