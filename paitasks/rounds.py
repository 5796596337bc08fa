"""Skip a component's hooks when its owner declared what they read and none of it changed.

Hooks can read anything, so by default they always run. A component may list what its
hooks read in `build/hook-inputs` (globs relative to the tree's root, or absolute). Then
each hook stage has a key: the hook script, the declared inputs, the component's files as
the hook finds them (its `dependency/` copies included) and, after the build, the ids of
its images. When a stage's key matches the last run's, the hook is not run: the temp
folders it left then (`dependency/`, `generated/`, saved under `.paitasks/rounds/`) stand
in for what it would make, and are put back when something reads them (staging.py), so
the images and the components that copy this one see exactly what the hook would have
made.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from paitasks.context import HashCache, describe
from paitasks.errors import PaiTasksError
from paitasks.workspace import TEMP_FOLDERS

ROUNDS_DIR = "rounds"
KEY_VERSION = "paitasks-round-2"


def declared_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    """The files the declared globs name (a folder stands for everything in it)."""
    found: set[Path] = set()
    for pattern in patterns:
        base = pattern if os.path.isabs(pattern) else str(root / pattern)
        for match in glob.glob(base, recursive=True):
            path = Path(match)
            if path.is_dir():
                found.update(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
            elif path.exists() or path.is_symlink():
                found.add(path)
    return sorted(found)


def stage_key(
    *,
    stage: str,
    hook: Path,
    component: dict[str, str],
    root: Path,
    patterns: Iterable[str],
    cache: HashCache,
    images: dict[str, str] | None = None,
) -> str:
    """The key of one hook stage ("pre" or "post"): the hook, the component's folder as
    the hook finds it (`component`: entries of its files and temp folders), the declared
    inputs and, after the build, the ids of its images."""
    inputs: dict[str, object] = {"version": KEY_VERSION, "stage": stage}
    try:
        inputs["hook"] = hashlib.sha256(hook.read_bytes()).hexdigest()
        inputs["declared"] = {
            str(path): describe(str(path), cache) for path in declared_files(root, patterns)
        }
    except OSError as exc:
        raise PaiTasksError(f"cannot read the inputs of {hook}: {exc}") from None
    inputs["component"] = component
    inputs["images"] = dict(sorted((images or {}).items()))
    payload = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class RoundCache:
    """The key and saved temp folders of one component's hook stage."""

    def __init__(self, state: Path, component: str, stage: str) -> None:
        self.stage = stage
        self.base = state / ROUNDS_DIR / component / stage

    def matches(self, key: str) -> bool:
        try:
            return (self.base / "key").read_text() == key and self.has_saved()
        except OSError:
            return False

    def has_saved(self) -> bool:
        return (self.base / "key").is_file() and (self.base / "saved").is_dir()

    def restore(self, folder: Path) -> None:
        """Put the saved temp folders in place of the component's current ones."""
        for name in TEMP_FOLDERS:
            current = folder / name
            if current.is_symlink() or current.is_file():
                current.unlink()
            elif current.exists():
                shutil.rmtree(current)
            saved = self.base / "saved" / name
            if saved.exists():
                shutil.copytree(saved, current, symlinks=True)

    def store(self, key: str, folder: Path) -> None:
        """Save the temp folders as the hook left them, then the key (last, so a torn
        save never matches)."""
        (self.base / "key").unlink(missing_ok=True)
        saved = self.base / "saved"
        if saved.exists():
            shutil.rmtree(saved)
        saved.mkdir(parents=True)
        for name in TEMP_FOLDERS:
            current = folder / name
            if current.is_dir() and not current.is_symlink():
                shutil.copytree(current, saved / name, symlinks=True)
        (self.base / "key").write_text(key)
