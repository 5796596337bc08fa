"""A component's temp folders, `dependency/` and `generated/`: what they will hold, making
them, skipping the hooks that fill them, and removing them.

A round fills `dependency/` (copy-deps: each components.dep entry's whole folder) and
`generated/` (hooks). Making them when nothing reads them is pure cost (copies nest: a
component's copy holds its own `dependency/`), so they stay virtual until a hook runs, an
image that reads them builds, or a dependent copies the component. Until then `entries`
works out what they hold, and images are checked against that.

Stages, named after what has run: "copies" (copy-deps), "pre" (build-pre.sh, what the
images see) and "post" (build-post.sh, what dependents copy).

Hooks can read anything, so they run whenever their component is part of a run, unless
the component lists what they read in `build/hook-inputs`. Then each hook stage has a key
(the hook, the declared inputs, the component's folder as the hook finds it and, after
the build, its image ids); while it matches the last run's, the hook is skipped and the
folders it left then, saved under `.paitasks/rounds/<component>/<stage>/`, stand in for
what it would make.

Every folder a run makes is first appended to `.paitasks/temp-folders`, so the end of the
run (or the start of the next, after a kill) removes exactly those and nothing else; a
folder of that name that no run recorded is the user's, and is never touched. Whoever
reads a component's folders holds its lock, which the maker holds until they are
complete; locks are taken from dependent to dependency only, so they cannot deadlock.
"""

from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from paitasks import disk
from paitasks.context import HashCache, describe, folder_entries
from paitasks.errors import PaiTasksError, TreeError

TEMP_FOLDERS = ("dependency", "generated")
RECORD_FILE = "temp-folders"
ROUNDS_DIR = "rounds"
LOCKS_DIR = "locks"
KEY_VERSION = "paitasks-round-3"
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

    def guessed_at(self, stage: Stage) -> bool:
        """Whether, before its hooks run, what the folders hold at `stage` can only be
        guessed: a hook that declares no inputs makes part of it, here or in a copy."""
        if self.hook_before(stage) is not None:
            return self.declared is None
        return any(dep.guessed_at("post") for dep in self.copies)


def temporary(path: str) -> bool:
    """Whether a context path lies in a temp folder."""
    return path.split("/", 1)[0] in TEMP_FOLDERS


class TempFolders:
    """The temp folders of one tree, for one run (shared by its worker threads)."""

    def __init__(
        self,
        root: Path,
        state: Path,
        fingerprint: Callable[[str], str | None] = lambda image: None,
    ) -> None:
        self.root = root
        self.state = state
        self._fingerprint = fingerprint  # of an image of the run, once it was checked
        self._record_lock = threading.Lock()
        self._held = threading.local()  # the component locks this thread holds
        self._finished: dict[str, dict[str, str]] = {}
        self._finished_lock = threading.Lock()

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

    # -- what they hold ---------------------------------------------------------------

    def entries(
        self,
        spec: RoundSpec,
        stage: Stage,
        cache: HashCache,
        last: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """What the temp folders hold at `stage`, as fingerprints count it (entries in
        `inputs.scan_context`'s form, relative to the component), the same whether they
        are made or not, on any machine:

        * after a hook with declared inputs: one entry, the hook's key (`hook_key`), which
          stands for all it makes: known before it runs, or where it never ran;
        * with no hook before `stage`: what copy-deps makes (each dependency's folder
          as it is after its round, counted the same way);
        * after a hook that declares no inputs: the folders as that hook left them. Outside
          a run it has not run yet: `last` (the component's folder as the image's last
          build saw it) stands in for what it makes, with the copies as they would be
          made now on top. In a run it has always run before anything asks."""
        if not spec.has_temp:
            return {}
        with self.settled(spec):
            real = self.is_real(spec)
        if not real:  # a folder of that name that no run made is the user's: refused
            self.refuse_unrecorded(Path(spec.folder), spec.name)
        hook_stage = spec.hook_before(stage)
        if hook_stage is not None and spec.declared is not None:
            return {hook_output(hook_stage): "key " + self.hook_key(spec, hook_stage, cache)}
        if hook_stage is None:
            return self.copies_entries(spec, cache, last)
        if real:
            with self.settled(spec):
                return folder_temp_entries(Path(spec.folder), cache)
        copies = self.copies_entries(spec, cache, last)
        # What the copies hold now replaces what they held.
        copied = [f"{TEMP_FOLDERS[0]}/{dep.name}" for dep in spec.copies]
        guess = {
            path: entry
            for path, entry in (last or {}).items()
            if temporary(path) and not any(_under(path, prefix) for prefix in copied)
        }
        guess.update(copies)
        return guess

    def component_entries(
        self,
        spec: RoundSpec,
        stage: Stage,
        cache: HashCache,
        last: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The whole component folder at `stage`: its own files and its temp folders."""
        entries = folder_entries(Path(spec.folder), cache, TEMP_FOLDERS)
        entries.update(self.entries(spec, stage, cache, last))
        return entries

    def copies_entries(
        self, spec: RoundSpec, cache: HashCache, last: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """What copy-deps makes: each dependency's folder as it is after its round."""
        if not spec.copies:
            return {}
        entries = {TEMP_FOLDERS[0]: f"d {DEPENDENCY_MODE:o}"}
        for dep in spec.copies:
            prefix = f"{TEMP_FOLDERS[0]}/{dep.name}"
            top = describe(dep.folder, cache)
            if top is not None:
                entries[prefix] = top
            below = None if last is None else _subtree(last, prefix)
            for path, entry in self._finished_entries(dep, cache, below).items():
                entries[f"{prefix}/{path}"] = entry
        return entries

    def _finished_entries(
        self, spec: RoundSpec, cache: HashCache, last: Mapping[str, str] | None
    ) -> dict[str, str]:
        """component_entries at "post" of a component whose round has finished (the one
        a dependent copies), worked out once per run: copies nest, so each dependent
        would walk it again. Predictions (with `last`) are not kept."""
        if last is not None:
            return self.component_entries(spec, "post", cache, last)
        with self._finished_lock:
            known = self._finished.get(spec.name)
        if known is None:
            known = self.component_entries(spec, "post", cache)
            with self._finished_lock:
                self._finished[spec.name] = known
        return known

    def _saved(self, spec: RoundSpec, stage: Stage) -> SavedStage | None:
        """The saved hook output that stands for the folders at `stage` while they are not
        real: a hook with declared inputs that did not run in this run was skipped."""
        hook_stage = spec.hook_before(stage) if spec.declared is not None else None
        return None if hook_stage is None else SavedStage(self.state, spec.name, hook_stage)

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
            saved = self._saved(spec, stage)
            if saved is not None:
                saved.restore(folder)
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

    def hook_key(self, spec: RoundSpec, stage: Stage, cache: HashCache) -> str:
        """The key of a hook with declared inputs: the hook, its declared inputs, the
        component's folder as the hook finds it and, for build-post.sh, the fingerprints
        of the component's images."""
        hook = spec.pre_hook if stage == "pre" else spec.post_hook
        assert hook is not None and spec.declared is not None
        images = None
        if stage == "post":
            images = {image: self._fingerprint(image) or "" for image in spec.images}
        return stage_key(
            stage=stage,
            hook=Path(hook),
            component=self.component_entries(spec, "copies" if stage == "pre" else "pre", cache),
            root=self.root,
            patterns=spec.declared,
            cache=cache,
            images=images,
        )

    def run_hook(
        self, spec: RoundSpec, hook: Path, run: Callable[[], None], cache: HashCache
    ) -> bool:
        """Run a hook where it finds its folders real; with declared inputs, skip it when
        its stage key is the last run's. True when it was skipped."""
        stage: Stage = "pre" if hook.name == "build-pre.sh" else "post"
        before: Stage = "copies" if stage == "pre" else "pre"
        saved = SavedStage(self.state, spec.name, stage)
        key = None
        if spec.declared is not None:
            key = self.hook_key(spec, stage, cache)
            if saved.matches(key):
                with self._component_lock(spec):
                    if self.is_real(spec):  # someone reads the folders already: keep them exact
                        saved.restore(Path(spec.folder))
                return True
        self.ensure_real(spec, before)
        run()
        if key is not None:
            saved.store(key, Path(spec.folder))
        return False

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


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _subtree(entries: Mapping[str, str], prefix: str) -> dict[str, str]:
    start = prefix + "/"
    return {path[len(start) :]: entry for path, entry in entries.items() if path.startswith(start)}


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


# -- skipping hooks on their declared inputs ------------------------------------------


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


def hook_output(stage: Stage) -> str:
    """The entry that stands for what a hook with declared inputs makes, in the form of
    a path in a temp folder (so it counts as temp-folder content)."""
    return f"{TEMP_FOLDERS[1]}/<what build-{stage}.sh makes>"


def _from_root(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:  # an absolute pattern outside the tree
        return str(path)


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
    inputs (by their path from the tree's root, so a checkout elsewhere has the same key)
    and, after the build, the fingerprints of its images."""
    inputs: dict[str, object] = {"version": KEY_VERSION, "stage": stage}
    try:
        inputs["hook"] = hashlib.sha256(hook.read_bytes()).hexdigest()
        inputs["declared"] = {
            _from_root(path, root): describe(str(path), cache)
            for path in declared_files(root, patterns)
        }
    except OSError as exc:
        raise PaiTasksError(f"cannot read the inputs of {hook}: {exc}") from None
    inputs["component"] = component
    inputs["images"] = dict(sorted((images or {}).items()))
    payload = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


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
