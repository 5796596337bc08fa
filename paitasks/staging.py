"""A component's temp folders, made only when something reads them.

A round fills `dependency/` (copy-deps) and `generated/` (hooks). When nothing in a run
needs them (every image up to date, hooks skipped on their declared inputs), making them
is pure cost: copies nest, since a component's copy holds its own `dependency/`. So the
folders stay virtual: what they would hold is computed from the sources (copies) and from
the folders saved when a declared hook last ran, and they are made for real only when a
hook runs, an image builds, or a dependent copies the component.

"Real" means recorded in `.paitasks/temp-folders` by this run (the run's start tidies the
record), so the answer is the same in every thread and every worker process. The record
is written before the folders are filled (so that a killed run's leftovers are known),
so whoever reads a component's temp folders holds its lock, which the maker holds until
they are complete: a check never sees half a copy. Locks are taken from dependent to
dependency only, so they cannot deadlock.

Stages: "copies" (after copy-deps), "pre" (after build-pre.sh: what images see) and
"final" (after build-post.sh: what dependents copy).
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from paitasks import workspace
from paitasks.context import HashCache, describe, folder_entries
from paitasks.errors import PaiTasksError
from paitasks.rounds import RoundCache, stage_key
from paitasks.workspace import TEMP_FOLDERS

Stage = Literal["copies", "pre", "final"]
DEPENDENCY_MODE = 0o755  # fixed, so that what a build sees of `dependency/` is predictable
LOCKS_DIR = "locks"


@dataclass(frozen=True)
class RoundSpec:
    """One component's round, as plain values (picklable for doit's process mode)."""

    name: str
    folder: str
    root: str
    state: str  # the tree's .paitasks folder
    copies: tuple[RoundSpec, ...] = ()  # its components.dep entries, in order
    pre_hook: str | None = None
    post_hook: str | None = None
    declared: tuple[str, ...] | None = None  # build/hook-inputs; None: hooks always run

    @property
    def has_temp(self) -> bool:
        return bool(self.copies or self.pre_hook or self.post_hook)


def is_real(spec: RoundSpec) -> bool:
    """Whether this run made the component's temp folders (a hook ran, or they were made)."""
    return workspace.is_recorded(Path(spec.root), Path(spec.folder) / TEMP_FOLDERS[0])


def temp_entries(spec: RoundSpec, stage: Stage, cache: HashCache) -> dict[str, str]:
    """What the temp folders hold at `stage`: as they are when real, else as they would
    be made (entries in `context.scan_context`'s form, relative to the component)."""
    if not spec.has_temp:
        return {}
    with settled(spec):
        if is_real(spec):
            return folder_temp_entries(Path(spec.folder), cache)
    workspace.refuse_unrecorded(Path(spec.root), Path(spec.folder), spec.name)
    saved = _saved_stage(spec, stage)
    if saved is not None:
        if not saved.has_saved():
            raise PaiTasksError(
                f"component {spec.name}: the folders its {saved.stage} hook made are "
                f"missing from {saved.base}; run again to remake them"
            )
        return folder_temp_entries(saved.base / "saved", cache)
    return copies_entries(spec, cache)


def component_entries(spec: RoundSpec, stage: Stage, cache: HashCache) -> dict[str, str]:
    """The whole component folder at `stage`: its own files and its temp folders."""
    entries = folder_entries(Path(spec.folder), cache, TEMP_FOLDERS)
    entries.update(temp_entries(spec, stage, cache))
    return entries


def copies_entries(spec: RoundSpec, cache: HashCache) -> dict[str, str]:
    """What copy-deps makes: each dependency's folder as it is after its round."""
    if not spec.copies:
        return {}
    entries = {TEMP_FOLDERS[0]: f"d {DEPENDENCY_MODE:o}"}
    for dep in spec.copies:
        prefix = f"{TEMP_FOLDERS[0]}/{dep.name}"
        top = describe(dep.folder, cache)
        if top is not None:
            entries[prefix] = top
        for path, entry in finished_entries(dep, cache).items():
            entries[f"{prefix}/{path}"] = entry
    return entries


_finished: weakref.WeakKeyDictionary[HashCache, dict[str, dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)
_finished_lock = threading.Lock()


def finished_entries(spec: RoundSpec, cache: HashCache) -> dict[str, str]:
    """component_entries at "final" of a component whose round has finished (the one a
    dependent copies), worked out once per run (a run has one hash cache per tree):
    copies nest, so each dependent would walk it again."""
    with _finished_lock:
        known = _finished.setdefault(cache, {}).get(spec.name)
    if known is None:
        known = component_entries(spec, "final", cache)
        with _finished_lock:
            _finished[cache][spec.name] = known
    return known


def folder_temp_entries(folder: Path, cache: HashCache) -> dict[str, str]:
    """The entries of the temp folders present in `folder`."""
    entries: dict[str, str] = {}
    for name in TEMP_FOLDERS:
        path = folder / name
        try:
            top = describe(str(path), cache)
        except FileNotFoundError:
            continue
        if top is None:
            continue
        entries[name] = top
        if top.startswith("d "):
            entries.update(
                (f"{name}/{sub}", entry) for sub, entry in folder_entries(path, cache).items()
            )
    return entries


def ensure_real(spec: RoundSpec, stage: Stage) -> bool:
    """Make the temp folders as they are at `stage`, unless this run made them already;
    True when they were made now."""
    if not spec.has_temp:
        return False
    with _component_lock(spec):
        if is_real(spec):
            return False
        folder = Path(spec.folder)
        workspace.claim_temp_folders(Path(spec.root), folder, spec.name)
        saved = _saved_stage(spec, stage)
        if saved is not None:
            saved.restore(folder)
        else:
            make_copies(spec)
        return True


def make_copies(spec: RoundSpec) -> None:
    """copy-deps itself: each dependency's folder, made real first, into `dependency/`."""
    if not spec.copies:
        return
    target = Path(spec.folder) / TEMP_FOLDERS[0]
    target.mkdir(exist_ok=True)
    os.chmod(target, DEPENDENCY_MODE)  # our own temp folder: its mode must not hang on umask
    for dep in spec.copies:
        ensure_real(dep, "final")
        workspace.copy_component(Path(dep.folder), target / dep.name)


def run_hook_stage(
    spec: RoundSpec,
    hook: Path,
    run: Callable[[], None],
    cache: HashCache,
    images: dict[str, str] | None = None,
) -> bool:
    """Run a hook where it finds its folders real; with declared inputs, skip it when its
    stage key is the last run's. True when it was skipped."""
    stage = "pre" if hook.name == "build-pre.sh" else "post"
    before: Stage = "copies" if stage == "pre" else "pre"
    saved = RoundCache(Path(spec.state), spec.name, stage)
    key = None
    if spec.declared is not None:
        key = stage_key(
            stage=stage,
            hook=hook,
            component=component_entries(spec, before, cache),
            root=Path(spec.root),
            patterns=spec.declared,
            cache=cache,
            images=images if stage == "post" else None,
        )
        if saved.matches(key):
            with _component_lock(spec):
                if is_real(spec):  # someone reads the folders already: keep them exact
                    saved.restore(Path(spec.folder))
            return True
    ensure_real(spec, before)
    run()
    if key is not None:
        saved.store(key, Path(spec.folder))
    return False


def _saved_stage(spec: RoundSpec, stage: Stage) -> RoundCache | None:
    """The saved hook stage that stands for the folders at `stage` while they are not
    real: a hook that did not run in this run was skipped on its declared inputs."""
    if stage == "final" and spec.post_hook:
        return RoundCache(Path(spec.state), spec.name, "post")
    if stage in ("pre", "final") and spec.pre_hook:
        return RoundCache(Path(spec.state), spec.name, "pre")
    return None


def settled(spec: RoundSpec) -> AbstractContextManager[None]:
    """Hold while reading a component's real temp folders: nobody is making them then."""
    return _component_lock(spec) if spec.has_temp else nullcontext()


_held = threading.local()


@contextmanager
def _component_lock(spec: RoundSpec) -> Iterator[None]:
    """An flock per component: it excludes other threads (each opens its own file) and
    other worker processes alike. A thread that holds it may take it again (a check that
    finds it must make the folders it is reading)."""
    path = Path(spec.state) / LOCKS_DIR / spec.name
    held: set[Path] = _held.__dict__.setdefault("paths", set())
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
