"""The tree's git history: which commit a run builds, and whether another is newer.

Images carry the commit they were built from (`org.opencontainers.image.revision`), so
that a push can tell whether `:tag` already serves a newer commit's images (two
pipelines of one branch that overlap). The commit is `PAI_REVISION` (`revision=`) where
given, else the tree's git checkout's HEAD; without either nothing is known, and
nothing is decided on it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT_TIMEOUT = 30.0  # seconds: git answers these from the local repository


def head(root: Path) -> str | None:
    """The commit checked out at `root`; None outside a git checkout (or without git)."""
    found = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return found.strip() if found else None


def is_newer(root: Path, other: str, ours: str) -> bool:
    """Whether commit `other` descends from commit `ours` (and is not it), in the history
    the checkout at `root` has; False when it does not know `other` (a shallow clone)."""
    if other == ours:
        return False
    return _git(root, "merge-base", "--is-ancestor", ours, other) is not None


def _git(root: Path, *arguments: str) -> str | None:
    """git's output, None when it fails (or is not installed)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *arguments], capture_output=True, text=True,
            timeout=GIT_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
