"""The fingerprint of an image's inputs, and the label that carries it on the image.

Everything a build of one image sees (`BuildInputs`: its dockerfile, the context files it
reads, the images it is built on, its build settings) hashes to one fingerprint. The
image carries it as the label `org.paitasks.fingerprint`, and the registry holds the
image under the tag `paitasks-<its hex digits>` (registry.py), so whether an image is up
to date is a question for the engine and the registry (freshness.py decides, and keeps
what it found in `Findings`), not for a local database that can be lost. Data and pure
functions only: every module may import it, and it imports none of them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LABEL = "org.paitasks.fingerprint"
# Standard labels every image built also carries; they are not inputs, so they never
# enter the fingerprint (an unchanged image is found by it from any commit).
REVISION_LABEL = "org.opencontainers.image.revision"  # the commit it was built from
CREATED_LABEL = "org.opencontainers.image.created"  # when (RFC 3339, UTC)
VERSION = "paitasks-fingerprint-2"
MAX_REASONS = 5


@dataclass(frozen=True)
class BuildInputs:
    """Everything a build of one image sees."""

    dockerfile: str  # path of the dockerfile inside the context
    files: Mapping[str, str] = field(default_factory=dict)  # context path -> entry digest
    # used image -> tree base: "built from <its fingerprint>"; other: its digest or id
    images: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)  # builder, variant, build args

    def to_json(self) -> dict[str, Any]:
        return {
            "dockerfile": self.dockerfile,
            "files": dict(sorted(self.files.items())),
            "images": dict(sorted(self.images.items())),
            "settings": dict(sorted(self.settings.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildInputs:
        return cls(
            dockerfile=str(data.get("dockerfile", "")),
            files=dict(data.get("files") or {}),
            images=dict(data.get("images") or {}),
            settings=dict(data.get("settings") or {}),
        )


def fingerprint(inputs: BuildInputs) -> str:
    """A stable hash of the inputs: equal inputs, equal fingerprint, in any order."""
    payload = json.dumps([VERSION, inputs.to_json()], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


# Keys of BuildInputs.settings named otherwise since: renaming a key would change every
# fingerprint (and rebuild every registry's images once).
SETTING_NAMES = {"builder": "build_tool"}


def explain(old: BuildInputs | None, new: BuildInputs, limit: int = MAX_REASONS) -> list[str]:
    """Why `new` differs from `old`, most telling first (changed files, images, settings)."""
    if old is None:
        return ["no record of a previous build"]
    reasons: list[str] = []
    if old.dockerfile != new.dockerfile:
        reasons.append(f"dockerfile is now {new.dockerfile}")
    for name in sorted(set(old.images) | set(new.images)):
        before, after = old.images.get(name, ""), new.images.get(name, "")
        if before != after:
            reasons.append(f"image {name} changed ({_short(before)} -> {_short(after)})")
    for key in sorted(set(old.settings) | set(new.settings)):
        if old.settings.get(key) != new.settings.get(key):
            name = SETTING_NAMES.get(key, key)
            reasons.append(
                f"setting {name} changed ({old.settings.get(key)!r} -> {new.settings.get(key)!r})"
            )
    changed = sorted(
        path
        for path in set(old.files) | set(new.files)
        if old.files.get(path) != new.files.get(path)
    )
    for path in changed:
        if path not in new.files:
            reasons.append(f"{path} removed")
        elif path not in old.files:
            reasons.append(f"{path} added")
        else:
            reasons.append(f"{path} changed")
    if len(reasons) > limit:
        more = len(reasons) - limit
        reasons = [*reasons[:limit], f"and {more} more change{'s' if more > 1 else ''}"]
    return reasons


def _short(value: str) -> str:
    if not value:
        return "absent"
    return value.removeprefix("built from ").removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class Finding:
    """What a check found of one image: its inputs, their fingerprint, whether an image
    of them exists, and why not."""

    inputs: BuildInputs
    fingerprint: str
    fresh: bool
    reasons: tuple[str, ...]
    # Where an image built from these inputs is: "engine" (under its name here) or
    # "registry" (at `digest`: under its fingerprint tag, or its `:tag` when that one's
    # label says these inputs); "" when nowhere.
    where: str = ""
    digest: str | None = None
    # Outside a run: what copy-deps and hooks make is not known before they run (no
    # record here of what they made), so neither is the fingerprint.
    predicted: bool = False


class Findings:
    """Each image's findings in one run, shared by its threads: the checks of the
    freshness policy (freshness.py) write them, and a build (builds.py) what it made;
    the pushes and the report read them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Finding] = {}
        self._for_build: dict[str, Finding] = {}  # what a check found, for its build
        self._built_on: dict[str, str] = {}  # image -> the builder of builders= that built it
        self._stale: set[str] = set()  # names pointing at a stale image in the engine

    def record(self, name: str, finding: Finding, for_build: bool = False) -> None:
        with self._lock:
            self._latest[name] = finding
            if for_build:
                self._for_build[name] = finding

    def latest(self, name: str) -> Finding | None:
        with self._lock:
            return self._latest.get(name)

    def fingerprint(self, name: str) -> str | None:
        """The fingerprint of image `name` as this run knows it, once it checked it."""
        found = self.latest(name)
        return found.fingerprint if found is not None else None

    def fingerprints(self) -> dict[str, str]:
        with self._lock:
            return {name: found.fingerprint for name, found in self._latest.items()}

    def take(self, name: str) -> Finding | None:
        """What the check just found, so the build does not gather it again."""
        with self._lock:
            return self._for_build.pop(name, None)

    def built_on(self, name: str, builder: str | None = None) -> str | None:
        """The builder of `builders=` that built image `name` in this run (and note it)."""
        with self._lock:
            if builder is not None:
                self._built_on[name] = builder
            return self._built_on.get(name)

    def note_stale(self, name: str) -> None:
        """The engine's image under `name` is stale while the registry may hold the
        current one: after the run, that name is current or gone."""
        with self._lock:
            self._stale.add(name)

    def stale(self) -> list[str]:
        with self._lock:
            names, self._stale = sorted(self._stale), set()
            return names
