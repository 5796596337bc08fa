"""Read a build context the way the engine will see it, cheaply.

The files the build is sent are those its `.dockerignore` keeps (the docker SDK's own
matcher decides, loaded without the rest of the SDK: `sdk_matcher`). Each is summarised
by type, mode and content hash; content hashes are reused while a file's size and mtime
are unchanged, except for files modified in the last few seconds, whose timestamps
cannot yet be trusted (git's "racy" rule).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import json
import os
import stat
import sys
import threading
import time
import types
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from paitasks.disk import read_json, write_atomically
from paitasks.errors import PaiTasksError

RACY_SECONDS = 3.0
MAX_LINK_HOPS = 8
CHUNK = 1 << 20


class HashCache:
    """Content hashes by path, valid while (size, mtime_ns) match; kept in one JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list[object]] = read_json(path)
        self._dirty = False
        self._lock = threading.Lock()

    def digest(self, path: str, info: os.stat_result) -> str:
        key = [info.st_size, info.st_mtime_ns]
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and entry[:2] == key:
            return str(entry[2])
        value = _hash_file(path)
        if time.time() - info.st_mtime > RACY_SECONDS:
            with self._lock:
                self._entries[path] = [*key, value]
                self._dirty = True
        return value

    def save(self) -> None:
        """Write the cache atomically, only if something new was learned."""
        if self.path is None:
            return
        with self._lock:
            if not self._dirty:
                return
            data = json.dumps(self._entries, separators=(",", ":"))
            self._dirty = False
        write_atomically(self.path, data)


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise PaiTasksError(f"cannot read {path} of a build context: {exc.strerror}") from None
    return digest.hexdigest()


def ignore_patterns(context: Path, dockerfile: Path, build_tool: str) -> list[str]:
    """The .dockerignore patterns that apply (BuildKit also honours `<dockerfile>.dockerignore`)."""
    candidates = [context / ".dockerignore"]
    if build_tool == "buildx":
        candidates.insert(0, dockerfile.with_name(dockerfile.name + ".dockerignore"))
    for candidate in candidates:
        try:
            text = candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeError) as exc:
            raise PaiTasksError(f"cannot read {candidate}: {exc}") from None
        return [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    return []


def reads(path: str, sources: tuple[str, ...] | None) -> bool:
    """Whether a build that reads `sources` (glob patterns; None: everything) reads `path`.

    A source names a file, or a folder and everything in it; `*`, `?` and `[...]` match
    within one path segment, as in docker's COPY.
    """
    if sources is None:
        return True
    parts = path.split("/")
    for source in sources:
        pattern = source.split("/")
        if len(parts) >= len(pattern) and all(
            fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern, strict=False)
        ):
            return True
    return False


def reads_under(folder: str, sources: tuple[str, ...] | None) -> bool:
    """Whether a build that reads `sources` may read anything in the top-level `folder`:
    `reads(path)` of every path in it is False otherwise (its first part must match)."""
    if sources is None:
        return True
    return any(fnmatch.fnmatchcase(folder, source.split("/")[0]) for source in sources)


def _followed(
    root: str, included: set[str], dockerfile: str | None, sources: tuple[str, ...] | None
) -> list[str]:
    """The sent paths the build reads, with the targets of links it reads (COPY follows
    a link named as a source, so the target's content is what lands in the image)."""
    if sources is None:
        return sorted(included)
    wanted = list(sources)
    chosen: set[str] = set()
    for _ in range(MAX_LINK_HOPS):
        chosen = {name for name in included if name == dockerfile or reads(name, tuple(wanted))}
        targets = []
        for name in chosen:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                continue
            link = os.readlink(full)
            # The builder resolves links inside the context: an absolute target is taken
            # from the context's root.
            base = "" if os.path.isabs(link) else os.path.dirname(name)
            target = os.path.normpath(os.path.join(base, link.lstrip("/")))
            if target == ".":  # a link to the context's root: all of it is read
                return sorted(included)
            if not target.startswith("..") and target not in wanted:
                targets.append(target)
        if not targets:
            break
        wanted.extend(targets)
    return sorted(chosen)


def scan_context(
    context: Path,
    dockerfile: Path,
    build_tool: str,
    cache: HashCache,
    sources: tuple[str, ...] | None = None,
) -> dict[str, str]:
    """Context path -> 'f <mode> <sha256>' | 'l <target>' | 'd <mode>' for what the build
    reads: the files sent (after .dockerignore) that its COPY/ADD sources name, and the
    dockerfile itself."""
    try:
        relative = str(dockerfile.relative_to(context))
    except ValueError:
        relative = None
    patterns = ignore_patterns(context, dockerfile, build_tool)
    root = str(context)
    try:
        if patterns:
            included = sdk_matcher().exclude_paths(root, patterns, dockerfile=relative)
        else:
            included = every_path(root)
    except OSError as exc:
        raise PaiTasksError(f"cannot read build context {context}: {exc}") from None
    entries: dict[str, str] = {}
    for name in _followed(root, included, relative, sources):
        try:
            entry = describe(os.path.join(root, name), cache)
        except FileNotFoundError:
            continue
        if entry is not None:
            entries[name] = entry
    return entries


def every_path(root: str) -> set[str]:
    """Every path under `root`, relative, as the SDK's exclude_paths lists them when
    nothing is excluded: folders and files, links to folders not entered."""
    found: set[str] = set()

    def fail(error: OSError) -> None:
        raise error

    for current, folders, files in os.walk(root, onerror=fail):
        relative = os.path.relpath(current, root)
        prefix = "" if relative == "." else f"{relative}/"
        found.update(prefix + name for name in folders + files)
    return found


def describe(path: str, cache: HashCache) -> str | None:
    """One entry: 'f <mode> <sha256>', 'l <target>' or 'd <mode>'; None for other kinds."""
    info = os.lstat(path)
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return f"l {os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        return f"d {mode:o}"
    if stat.S_ISREG(info.st_mode):
        return f"f {mode:o} {cache.digest(path, info)}"
    return None


def folder_entries(folder: Path, cache: HashCache, skip: Iterable[str] = ()) -> dict[str, str]:
    """Every entry of `folder` in scan_context's form, .dockerignore or not, without the
    top-level names in `skip` (what a copy of the folder holds)."""
    skipped = set(skip)
    entries: dict[str, str] = {}
    for current, folders, files in os.walk(folder):
        relative = os.path.relpath(current, folder)
        if relative == ".":
            folders[:] = [name for name in folders if name not in skipped]
            files = [name for name in files if name not in skipped]
        for name in folders + files:
            entry = describe(os.path.join(current, name), cache)
            if entry is not None:
                entries[os.path.normpath(os.path.join(relative, name))] = entry
    return entries


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the context's .dockerignore `patterns` keep `path` from the engine."""
    if not patterns:
        return False
    return bool(sdk_matcher().PatternMatcher(patterns).matches(path))


_SDK_COPY = "paitasks._docker_sdk"  # where sdk_matcher loads the SDK's modules
_sdk_lock = threading.Lock()


def sdk_matcher() -> ModuleType:
    """The docker SDK's `.dockerignore` matcher (`docker.utils.build`), without importing
    the SDK when it is not loaded yet: `import docker` loads requests and urllib3 first
    (about 0.15 s, in every run of a tree with a .dockerignore), which the matcher never
    uses. Should a future SDK be laid out differently, this falls back to the import."""
    with _sdk_lock:
        for name in ("docker.utils.build", f"{_SDK_COPY}.utils.build"):
            if name in sys.modules:
                return sys.modules[name]
        try:
            return load_sdk_matcher_apart()
        except (ImportError, AttributeError, OSError):
            for name in [n for n in sys.modules if n.startswith(_SDK_COPY)]:
                del sys.modules[name]
    import docker.utils.build

    return docker.utils.build


def load_sdk_matcher_apart() -> ModuleType:
    """Load `docker/utils/build.py` of the installed SDK, and the two modules it imports,
    under a private package name: that skips the SDK's `__init__` files."""
    spec = importlib.util.find_spec("docker")
    if spec is None or spec.origin is None:
        raise ImportError("the docker SDK is not installed")
    folder = os.path.dirname(spec.origin)
    for name, path in ((_SDK_COPY, folder), (f"{_SDK_COPY}.utils", f"{folder}/utils")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [path]
            sys.modules[name] = package
    return importlib.import_module(f"{_SDK_COPY}.utils.build")
