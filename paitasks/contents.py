"""What a component's temp folders hold, made or not, as fingerprints count it (the
stages are tempfolders.py's), and the hooks' keys; `context_files` applies it to the
files of one build context: the one rule for the temp folders' part of a fingerprint.
Outside a run, what a hook that declares no inputs makes is *predicted* from the last
build's record (`Contents.entries`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from paitasks.context import (
    HashCache,
    describe,
    folder_entries,
    ignore_patterns,
    ignored,
    reads,
    reads_under,
    scan_context,
)
from paitasks.errors import PaiTasksError
from paitasks.tempfolders import (
    DEPENDENCY_MODE,
    TEMP_FOLDERS,
    RoundSpec,
    Stage,
    TempFolders,
    temporary,
)

KEY_VERSION = "paitasks-round-3"


class Contents:
    """What the temp folders of one run's tree hold (shared by its worker threads)."""

    def __init__(
        self, temp: TempFolders, hashes: HashCache,
        fingerprint: Callable[[str], str | None] = lambda image: None,
    ) -> None:
        self.temp = temp
        self.hashes = hashes
        self._fingerprint = fingerprint  # of an image of the run, once it was checked
        self._finished: dict[str, dict[str, str]] = {}
        self._finished_lock = threading.Lock()

    def entries(
        self,
        spec: RoundSpec,
        stage: Stage,
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
        with self.temp.settled(spec):
            real = self.temp.is_real(spec)
        if not real:  # a folder of that name that no run made is the user's: refused
            self.temp.refuse_unrecorded(Path(spec.folder), spec.name)
        hook_stage = spec.hook_before(stage)
        if hook_stage is not None and spec.declared is not None:
            return {hook_output(hook_stage): "key " + self.hook_key(spec, hook_stage)}
        if hook_stage is None:
            return self.copies_entries(spec, last)
        if real:
            with self.temp.settled(spec):
                return folder_temp_entries(Path(spec.folder), self.hashes)
        copies = self.copies_entries(spec, last)
        # What the copies hold now replaces what they held.
        copied = [f"{TEMP_FOLDERS[0]}/{dep.name}" for dep in spec.copies]
        predicted = {
            path: entry
            for path, entry in (last or {}).items()
            if temporary(path) and not any(_under(path, prefix) for prefix in copied)
        }
        predicted.update(copies)
        return predicted

    def component_entries(
        self,
        spec: RoundSpec,
        stage: Stage,
        last: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The whole component folder at `stage`: its own files and its temp folders."""
        entries = folder_entries(Path(spec.folder), self.hashes, TEMP_FOLDERS)
        entries.update(self.entries(spec, stage, last))
        return entries

    def copies_entries(
        self, spec: RoundSpec, last: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """What copy-deps makes: each dependency's folder as it is after its round."""
        if not spec.copies:
            return {}
        entries = {TEMP_FOLDERS[0]: f"d {DEPENDENCY_MODE:o}"}
        for dep in spec.copies:
            prefix = f"{TEMP_FOLDERS[0]}/{dep.name}"
            top = describe(dep.folder, self.hashes)
            if top is not None:
                entries[prefix] = top
            below = None if last is None else _subtree(last, prefix)
            for path, entry in self._finished_entries(dep, below).items():
                entries[f"{prefix}/{path}"] = entry
        return entries

    def _finished_entries(
        self, spec: RoundSpec, last: Mapping[str, str] | None
    ) -> dict[str, str]:
        """component_entries at "post" of a component whose round has finished (the one
        a dependent copies), worked out once per run: copies nest, so each dependent
        would walk it again. Predictions (with `last`) are not kept."""
        if last is not None:
            return self.component_entries(spec, "post", last)
        with self._finished_lock:
            known = self._finished.get(spec.name)
        if known is None:
            known = self.component_entries(spec, "post")
            with self._finished_lock:
                self._finished[spec.name] = known
        return known

    def hook_key(self, spec: RoundSpec, stage: Stage) -> str:
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
            component=self.component_entries(spec, "copies" if stage == "pre" else "pre"),
            root=self.temp.root,
            patterns=spec.declared,
            cache=self.hashes,
            images=images,
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
        inputs["declared"] = {  # an absolute pattern may name a path outside the tree
            str(path.relative_to(root) if path.is_relative_to(root) else path):
            describe(str(path), cache) for path in declared_files(root, patterns)
        }
    except OSError as exc:
        raise PaiTasksError(f"cannot read the inputs of {hook}: {exc}") from None
    inputs["component"] = component
    inputs["images"] = dict(sorted((images or {}).items()))
    payload = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()




def context_files(
    contents: Contents,
    context: Path,
    dockerfile: Path,
    round_: RoundSpec | None,
    sources: tuple[str, ...] | None,
    build_tool: str,
    last: Mapping[str, str] | None,
) -> dict[str, str]:
    """What a build reads of its context, with its temp folders counted the way
    `Contents.entries` counts them. Only after a hook that declares no inputs are the
    folders scanned as that hook left them (with `last`, the last build's record: outside
    a run, predicted from it); where that cannot be told exactly without them (a
    .dockerignore, or links, which the build follows), a run makes them first."""
    temp, hashes = contents.temp, contents.hashes
    if round_ is None or not round_.has_temp:
        return scan_context(context, dockerfile, build_tool, hashes, sources)
    scanned = round_.pre_hook is not None and round_.declared is None
    with temp.settled(round_):  # another image's build may be making them right now
        files = scan_context(context, dockerfile, build_tool, hashes, sources)
        if scanned and temp.is_real(round_) and last is None:
            return files
    files = {path: entry for path, entry in files.items() if not temporary(path)}
    virtual: dict[str, str] = {}
    if any(reads_under(folder, sources) for folder in TEMP_FOLDERS):
        virtual = {
            path: entry
            for path, entry in contents.entries(round_, "pre", last).items()
            if reads(path, sources) or path == hook_output("pre")
        }
    patterns = ignore_patterns(context, dockerfile, build_tool) if virtual else []
    if last is not None or not scanned:
        virtual = {path: entry for path, entry in virtual.items() if not ignored(path, patterns)}
    elif patterns or any(entry.startswith("l ") for entry in (*files.values(), *virtual.values())):
        with temp.settled(round_):
            temp.ensure_real(round_, "pre")
            return scan_context(context, dockerfile, build_tool, hashes, sources)
    files.update(virtual)
    return files
