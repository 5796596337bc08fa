"""A component's temp folders, `dependency/` and `generated/`: the record of what runs
made, making them, the saved output of skipped hooks, and the per-component locks.

A round fills `dependency/` (copy-deps: each components.dep entry's whole folder) and
`generated/` (hooks). Making them when nothing reads them is pure cost (copies nest: a
component's copy holds its own `dependency/`), so they stay virtual until a hook runs, an
image that reads them builds, or a dependent copies the component; until then
contents.py works out what they hold. Stages, named after what has run: "copies"
(copy-deps), "pre" (build-pre.sh, what the images see) and "post" (build-post.sh, what
dependents copy). A hook skipped on its declared inputs (hooks.py) leaves the folders it
made last time, saved under `.paitasks/rounds/<component>/<stage>/`.

Every folder a run makes is first appended to `.paitasks/temp-folders`, so the end of the
run (or the start of the next, after a kill) removes exactly those and nothing else; a
folder of that name that no run recorded is the user's, and is never touched. Whoever
reads a component's folders holds its lock, which the maker holds until they are
complete; locks are taken from dependent to dependency only, so they cannot deadlock.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from paitasks import disk
from paitasks.errors import PaiTasksError, TreeError

TEMP_FOLDERS = ("dependency", "generated")
RECORD_FILE = "temp-folders"
ROUNDS_DIR = "rounds"
LOCKS_DIR = "locks"
DEPENDENCY_MODE = 0o755  # fixed, so that what a build sees of `dependency/` is predictable

Stage = Literal["copies", "pre", "post"]


@dataclass(frozen=True)
class RoundSpec:
    """One component's round, as plain values."""

    name: str
    folder: str
    copies: tuple[RoundSpec, ...] = ()  # its components.dep entries, in order
    pre_hook: str | None = None
    post_hook: str | None = None
    declared: tuple[str, ...] | None = None  # build/hook-inputs; None: hooks always run
    images: tuple[str, ...] = ()  # its images (a build-post.sh key counts them)

    @property
    def has_temp(self) -> bool:
        return bool(self.copies or self.pre_hook or self.post_hook)

    def hook_before(self, stage: Stage) -> Stage | None:
        """The last hook stage whose output the folders hold at `stage`, if any."""
        if stage == "post" and self.post_hook:
            return "post"
        return "pre" if stage != "copies" and self.pre_hook else None

    def predicted_at(self, stage: Stage) -> bool:
        """Whether, before its hooks run, what the folders hold at `stage` can only be
        predicted: a hook that declares no inputs makes part of it, here or in a copy."""
        if self.hook_before(stage) is not None:
            return self.declared is None
        return any(dep.predicted_at("post") for dep in self.copies)


def temporary(path: str) -> bool:
    """Whether a context path lies in a temp folder."""
    return path.split("/", 1)[0] in TEMP_FOLDERS


class TempFolders:
    """The temp folders of one tree, for one run (shared by its worker threads)."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.state = state
        self._record_lock = threading.Lock()
        self._held = threading.local()  # the component locks this thread holds

    # -- the record of what runs made -------------------------------------------------

    @property
    def _record(self) -> Path:
        return self.state / RECORD_FILE

    def _lines(self) -> list[str]:
        try:
            return self._record.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def recorded(self) -> list[Path]:
        """The temp folders recorded by runs that have not tidied up yet."""
        return [Path(line) for line in dict.fromkeys(self._lines()) if line]

    def is_real(self, spec: RoundSpec) -> bool:
        """Whether this run made the component's temp folders (asked for every image
        check: a string lookup, no Path per record line)."""
        return str(Path(spec.folder) / TEMP_FOLDERS[0]) in self._lines()

    def claim(self, folder: Path, component: str) -> None:
        """Record a component's temp folders before they are made; TreeError when such a
        folder exists and no run recorded it (the user's files: never used nor deleted)."""
        with self._record_lock:
            known = set(self.recorded())
            _refuse(known, folder, component)
            new = [path for path in (folder / name for name in TEMP_FOLDERS) if path not in known]
            if new:
                self.state.mkdir(parents=True, exist_ok=True)
                # Written before the folders exist, so a killed run's are tidied by the
                # next (the page cache survives a killed process).
                with open(self._record, "a", encoding="utf-8") as record:
                    record.write("".join(f"{path}\n" for path in new))

    def refuse_unrecorded(self, folder: Path, component: str) -> None:
        """TreeError when a temp folder of the component exists that no run made."""
        if not any(os.path.lexists(folder / name) for name in TEMP_FOLDERS):
            return  # the usual case: nothing to look up
        with self._record_lock:
            _refuse(set(self.recorded()), folder, component)

    def remove(self, only: Iterable[Path] | None = None) -> list[Path]:
        """Remove recorded temp folders (all, or those in `only`); return what was removed.

        Idempotent. Only paths named `dependency` or `generated` are ever removed, and a
        link in their place is unlinked, never followed.
        """
        with self._record_lock:
            recorded = self.recorded()
            wanted = set(recorded if only is None else only)
            removed: list[Path] = []
            for path in recorded:
                if path not in wanted or path.name not in TEMP_FOLDERS:
                    continue
                if disk.remove(path):
                    removed.append(path)
            keep = [path for path in recorded if path not in wanted]
            if keep:
                self._record.write_text("".join(f"{p}\n" for p in keep), encoding="utf-8")
            else:
                self._record.unlink(missing_ok=True)
            return removed

    # -- making them ------------------------------------------------------------------

    def ensure_real(self, spec: RoundSpec, stage: Stage) -> bool:
        """Make the temp folders as they are at `stage`, unless this run made them
        already; True when they were made now."""
        if not spec.has_temp:
            return False
        with self._component_lock(spec):
            if self.is_real(spec):
                return False
            folder = Path(spec.folder)
            self.claim(folder, spec.name)
            # A hook with declared inputs that did not run in this run was skipped: its
            # saved output stands for the folders.
            hook_stage = spec.hook_before(stage) if spec.declared is not None else None
            if hook_stage is not None:
                SavedStage(self.state, spec.name, hook_stage).restore(folder)
            else:
                self.make_copies(spec)
            return True

    def make_copies(self, spec: RoundSpec) -> None:
        """copy-deps itself: each dependency's folder, made real first, into
        `dependency/`."""
        if not spec.copies:
            return
        target = Path(spec.folder) / TEMP_FOLDERS[0]
        target.mkdir(exist_ok=True)
        os.chmod(target, DEPENDENCY_MODE)  # our own temp folder: its mode must not hang on umask
        for dep in spec.copies:
            self.ensure_real(dep, "post")
            copy_component(Path(dep.folder), target / dep.name)

    # -- locks ------------------------------------------------------------------------

    def settled(self, spec: RoundSpec) -> AbstractContextManager[None]:
        """Hold while reading a component's real temp folders: nobody is making them."""
        return self._component_lock(spec) if spec.has_temp else nullcontext()

    @contextmanager
    def _component_lock(self, spec: RoundSpec) -> Iterator[None]:
        """An flock per component: it excludes other threads (each opens its own file)
        and other processes alike. A thread that holds it may take it again (a check that
        finds it must make the folders it is reading)."""
        path = self.state / LOCKS_DIR / spec.name
        held: set[Path] = self._held.__dict__.setdefault("paths", set())
        if path in held:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            held.add(path)
            try:
                yield
            finally:
                held.discard(path)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _refuse(known: set[Path], folder: Path, component: str) -> None:
    for path in (folder / name for name in TEMP_FOLDERS):
        if (path.exists() or path.is_symlink()) and path not in known:
            raise TreeError(
                f"component {component}: {path} exists and was not made by paitasks; "
                f"`{path.name}/` is a temp folder that every run deletes, so move your "
                f"files out of it first"
            )


def copy_component(source: Path, destination: Path) -> None:
    """Copy a dependency's whole folder; links stay links (never followed out of the tree).

    GNU `cp -a` does it about twice as fast as shutil; shutil is the fallback where there
    is no GNU cp.
    """
    disk.remove(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if _gnu_cp():
        result = subprocess.run(
            ["cp", "-a", "--no-target-directory", "--", str(source), str(destination)],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return
        raise PaiTasksError(f"cannot copy {source} to {destination}: {result.stderr.strip()}")
    try:
        shutil.copytree(source, destination, symlinks=True)
    except (OSError, shutil.Error) as exc:
        raise PaiTasksError(f"cannot copy {source} to {destination}: {exc}") from None


@functools.cache
def _gnu_cp() -> bool:
    try:
        result = subprocess.run(["cp", "--version"], capture_output=True, text=True)
    except OSError:
        return False
    return result.returncode == 0 and "GNU" in result.stdout


class SavedStage:
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
            disk.remove(current)
            saved = self.base / "saved" / name
            if saved.exists():
                shutil.copytree(saved, current, symlinks=True)

    def store(self, key: str, folder: Path) -> None:
        """Save the temp folders as the hook left them, then the key (last, so a torn
        save never matches)."""
        (self.base / "key").unlink(missing_ok=True)
        saved = self.base / "saved"
        disk.remove(saved)
        saved.mkdir(parents=True)
        for name in TEMP_FOLDERS:
            current = folder / name
            if current.is_dir() and not current.is_symlink():
                shutil.copytree(current, saved / name, symlinks=True)
        (self.base / "key").write_text(key)
