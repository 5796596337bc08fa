"""What an image is built from, as one hash, and in words when it changes.

Pure logic: the inputs are gathered elsewhere (context.py reads files, the engine gives
image ids). The fingerprint is stored on the image as a label, so whether an image is up
to date is a question for the engine, not for a local database that can be lost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LABEL = "org.paitasks.fingerprint"
VERSION = "paitasks-fingerprint-1"
MAX_REASONS = 5


@dataclass(frozen=True)
class BuildInputs:
    """Everything a build of one image sees."""

    dockerfile: str  # path of the dockerfile inside the context
    files: Mapping[str, str] = field(default_factory=dict)  # context path -> entry digest
    images: Mapping[str, str] = field(default_factory=dict)  # used image -> its id ("" absent)
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
            reasons.append(
                f"setting {key} changed ({old.settings.get(key)!r} -> {new.settings.get(key)!r})"
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


def _short(image_id: str) -> str:
    if not image_id:
        return "absent"
    return image_id.removeprefix("sha256:")[:12]
