"""Discover an OpenPAI-style component tree: `src/<component>/build/*.dockerfile` and friends.

Discovery runs on every `doit list`, so it stays cheap: one `os.scandir` of the source
folder, one of each `build/` folder, no extra `stat` calls and no dockerfile reading. Only
the small dependency files are read, because the graph cannot exist without them.

Image file names
----------------
``<stem>.dockerfile``; the stem is split on dots:

* ``base-image.dockerfile`` -> image ``base-image``, built always.
* ``base-image.common.dockerfile`` -> image ``base-image``, built always.
* ``base-image.k8s.dockerfile`` -> image ``base-image``, built only for variant ``k8s``.
* ``drivers-384.111.dockerfile`` -> image ``drivers-384.111``, built always (OpenPAI
  v0.14 puts driver versions in image names); ``drivers-390.25.yarn.dockerfile`` ->
  image ``drivers-390.25`` for variant ``yarn`` (later OpenPAI trees).

So the last dot-part is a variant when it starts with a letter, and part of the image name
when it does not; any other dot-part after the first must start with a digit (a version),
otherwise the file is rejected as ambiguous (``a.b.c.dockerfile``). Hidden files
(``.x.dockerfile``) are ignored like hidden component folders.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from paitasks.errors import TreeError
from paitasks.reference import is_valid_image_name

DOCKERFILE_SUFFIX = ".dockerfile"
COMMON_VARIANT = "common"
DEP_FILE_NAMES = ("component.dep", "components.dep")  # OpenPAI's code, then its guide
PRE_HOOK_NAME = "build-pre.sh"
POST_HOOK_NAME = "build-post.sh"
HOOK_INPUTS_NAME = "hook-inputs"  # opt-in: what the hooks read, so they can be skipped
_COMMENT_RE = re.compile(r"(?:^|\s)#")


@dataclass(frozen=True)
class Image:
    """One image the tree can build, from one dockerfile."""

    name: str  # bare image name, e.g. "base-image"
    component: str
    dockerfile: Path  # absolute path
    variant: str | None  # None for "<name>.dockerfile" and "<name>.common.dockerfile"


@dataclass(frozen=True)
class DepEntry:
    """One component named in a dependency file; `line` is 1-based, for error messages."""

    name: str
    line: int


@dataclass(frozen=True)
class Component:
    """A folder directly under the source folder."""

    name: str
    path: Path  # absolute folder src/<name>
    images: tuple[Image, ...]  # sorted by name
    deps: tuple[DepEntry, ...]  # dependency file entries, file order, duplicates removed
    dep_file: Path | None
    pre_hook: Path | None  # build/build-pre.sh if it is a file
    post_hook: Path | None  # build/build-post.sh if it is a file
    hook_inputs: tuple[str, ...] | None = None  # build/hook-inputs: globs from the root


@dataclass(frozen=True)
class Tree:
    """Everything discovered under one source folder."""

    src: Path  # absolute source folder
    root: Path  # src.parent: OpenPAI runs hooks from the repository root
    components: Mapping[str, Component]  # by name, sorted
    images: Mapping[str, Image]  # by image name, sorted

    def display_path(self, path: Path) -> str:
        """`path` as messages show it: relative to the repository root when inside it."""
        return display_path(path, self.root)


def display_path(path: Path, root: Path) -> str:
    """Relative to `root` when below it (short, clickable from the repo root), else as is."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def discover(src: Path | str, variant: str | None = None) -> Tree:
    """Read the component tree under `src`, keeping the dockerfiles of `variant`.

    Raises TreeError for anything that would make a build ambiguous or impossible: a
    missing source folder, two files for one image, a bad image name, a bad dependency
    file. An empty source folder is not an error here; callers decide.
    """
    src_path = Path(os.path.abspath(src))
    root = src_path.parent
    try:
        with os.scandir(src_path) as it:
            folders = sorted(
                (entry.name, entry.path)
                for entry in it
                if not entry.name.startswith(".") and entry.is_dir()
            )
    except FileNotFoundError:
        raise TreeError(f"source folder {src_path} does not exist") from None
    except NotADirectoryError:
        raise TreeError(f"source folder {src_path} is not a directory") from None
    except OSError as exc:
        raise TreeError(f"cannot read source folder {src_path}: {_os_reason(exc)}") from None

    names = frozenset(name for name, _ in folders)
    components: dict[str, Component] = {}
    images: dict[str, Image] = {}
    for name, path in folders:
        component = _read_component(name, path, root, src_path, names, variant)
        for image in component.images:
            previous = images.get(image.name)
            if previous is not None:
                raise TreeError(
                    f"image '{image.name}' is built by two dockerfiles: "
                    f"{display_path(previous.dockerfile, root)} and "
                    f"{display_path(image.dockerfile, root)}"
                )
            images[image.name] = image
        components[name] = component

    return Tree(
        src=src_path,
        root=root,
        components=MappingProxyType(components),
        images=MappingProxyType(dict(sorted(images.items()))),
    )


def _read_component(
    name: str,
    path: str,
    root: Path,
    src: Path,
    names: frozenset[str],
    variant: str | None,
) -> Component:
    build = os.path.join(path, "build")
    images: dict[str, Image] = {}
    dep_files: list[Path] = []
    pre_hook: Path | None = None
    post_hook: Path | None = None
    hook_inputs: tuple[str, ...] | None = None
    try:
        with os.scandir(build) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        entries = []  # no build folder: a component without images, deps or hooks
    except OSError as exc:
        shown = display_path(Path(build), root)
        raise TreeError(f"cannot read {shown}: {_os_reason(exc)}") from None

    for entry in entries:
        file_name = entry.name
        if file_name.startswith("."):
            continue
        if file_name.endswith(DOCKERFILE_SUFFIX):
            file_path = Path(entry.path)
            parsed = _image_name(file_name, file_path, root, variant)
            if parsed is None:
                continue
            image_name, image_variant = parsed
            if not entry.is_file():
                raise TreeError(f"{display_path(file_path, root)} is not a file")
            if not is_valid_image_name(image_name):
                raise TreeError(
                    f"{display_path(file_path, root)}: '{image_name}' is not a valid "
                    "docker image name (lowercase letters, digits and . _ - separators)"
                )
            previous = images.get(image_name)
            if previous is not None:
                raise TreeError(
                    f"image '{image_name}' is built by two dockerfiles: "
                    f"{display_path(previous.dockerfile, root)} and "
                    f"{display_path(file_path, root)}"
                )
            images[image_name] = Image(image_name, name, file_path, image_variant)
        elif file_name in DEP_FILE_NAMES:
            dep_path = Path(entry.path)
            if not entry.is_file():
                raise TreeError(f"{display_path(dep_path, root)} is not a file")
            dep_files.append(dep_path)
        elif file_name == PRE_HOOK_NAME and entry.is_file():
            pre_hook = Path(entry.path)
        elif file_name == POST_HOOK_NAME and entry.is_file():
            post_hook = Path(entry.path)
        elif file_name == HOOK_INPUTS_NAME and entry.is_file():
            hook_inputs = _read_hook_inputs(Path(entry.path), root)

    if len(dep_files) > 1:
        raise TreeError(
            f"component '{name}' has two dependency files, keep one: "
            + " and ".join(display_path(p, root) for p in dep_files)
        )
    dep_file = dep_files[0] if dep_files else None
    deps = _read_dep_file(dep_file, name, root, src, names) if dep_file else ()
    return Component(
        name=name,
        path=Path(path),
        images=tuple(images[k] for k in sorted(images)),
        deps=deps,
        dep_file=dep_file,
        pre_hook=pre_hook,
        post_hook=post_hook,
        hook_inputs=hook_inputs,
    )


def _read_hook_inputs(path: Path, root: Path) -> tuple[str, ...]:
    """Globs (relative to the tree's root, or absolute) naming what the hooks read."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise TreeError(f"cannot read {display_path(path, root)}: {_os_reason(exc)}") from None
    except UnicodeDecodeError:
        raise TreeError(f"{display_path(path, root)}: not UTF-8 text") from None
    patterns = []
    for line in text.splitlines():
        pattern = line.split(" #", 1)[0].strip()
        if pattern and not pattern.startswith("#"):
            patterns.append(pattern)
    return tuple(patterns)


def _image_name(
    file_name: str, file_path: Path, root: Path, variant: str | None
) -> tuple[str, str | None] | None:
    """(image name, variant) for a dockerfile name, or None if another variant's file."""
    parts = file_name[: -len(DOCKERFILE_SUFFIX)].split(".")
    if "" in parts:
        raise TreeError(f"{display_path(file_path, root)}: empty part in the file name")
    kind: str | None = None
    if len(parts) > 1 and parts[-1][:1].isalpha():
        kind = parts.pop()
    for part in parts[1:]:
        if not part[:1].isdigit():
            raise TreeError(
                f"{display_path(file_path, root)}: cannot tell the image name from the "
                f"variant; name files <image>.dockerfile or <image>.<variant>.dockerfile"
            )
    image_name = ".".join(parts)
    if kind is None or kind == COMMON_VARIANT:
        return image_name, None
    if kind == variant:
        return image_name, kind
    return None


def _read_dep_file(
    dep_file: Path, component: str, root: Path, src: Path, names: frozenset[str]
) -> tuple[DepEntry, ...]:
    """Entries of a dependency file, validated so a typo stops the build before it starts."""
    shown = display_path(dep_file, root)
    try:
        data = dep_file.read_bytes()
    except OSError as exc:
        raise TreeError(f"cannot read {shown}: {_os_reason(exc)}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TreeError(f"{shown}:{line}: not valid UTF-8 text") from None

    entries: list[DepEntry] = []
    seen: set[str] = set()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, raw in enumerate(lines, start=1):
        entry = _COMMENT_RE.split(raw, maxsplit=1)[0].strip()
        if not entry:
            continue
        if (
            any(ch.isspace() for ch in entry)
            or "/" in entry
            or "\\" in entry
            or entry.startswith(".")
        ):
            raise TreeError(f"{shown}:{number}: {entry!r} is not a plain component name")
        if entry == component:
            raise TreeError(f"{shown}:{number}: component '{entry}' lists itself")
        if entry not in names:
            raise TreeError(f"{shown}:{number}: component '{entry}' does not exist under {src}")
        if entry not in seen:
            seen.add(entry)
            entries.append(DepEntry(entry, number))
    return tuple(entries)
