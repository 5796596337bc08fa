"""The tree's git history (history.py), on real git repositories."""

from __future__ import annotations

from pathlib import Path

from paitasks import history
from tests.support import git


def commit(folder: Path, message: str) -> str:
    (folder / "file").write_text(message)
    git(folder, "add", "file")
    git(folder, "commit", "-qm", message)
    return history.head(folder) or ""


def test_head_and_which_commit_is_newer(tmp_path: Path) -> None:
    assert history.head(tmp_path) is None  # not a checkout
    git(tmp_path, "init", "-q")
    assert history.head(tmp_path) is None  # no commit yet
    first = commit(tmp_path, "one")
    second = commit(tmp_path, "two")
    assert len(first) == 40 and history.head(tmp_path) == second
    assert history.is_newer(tmp_path, second, first)
    assert not history.is_newer(tmp_path, first, second)
    assert not history.is_newer(tmp_path, first, first)
    assert not history.is_newer(tmp_path, "f" * 40, first)  # a commit it never fetched
    assert not history.is_newer(tmp_path / "nowhere", second, first)
