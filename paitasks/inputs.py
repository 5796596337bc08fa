"""What one image is built from: its spec, the inputs a build of it sees, their
fingerprint, and the record of its last build.

`gather` reads the inputs: the context files the engine would be sent (context.py), with
the temp folders as they are or will be (tempfolders.py), the dockerfile, the images it
uses (a tree base by its fingerprint, another image by its digest) and its build
settings. `fingerprint` hashes them, so the fingerprints of a whole tree are known
before anything is built or pulled. The hash is stored on the image as a label and
names a tag in the registry (registry.py), so whether an image is up to date is a
question for the engine and the registry (freshness.py decides), not for a local
database that can be lost. The last build's
inputs are kept in `.paitasks/images/<image>.json` only to explain a rebuild in words.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paitasks.context import ignore_patterns, ignored, reads, reads_under, scan_context
from paitasks.errors import PaiTasksError
from paitasks.reference import engine_name
from paitasks.tempfolders import TEMP_FOLDERS, RoundSpec, hook_output, temporary

if TYPE_CHECKING:
    from paitasks.run import Run

LABEL = "org.paitasks.fingerprint"
VERSION = "paitasks-fingerprint-2"
MAX_REASONS = 5
RECORDS_DIR = "images"


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


def _short(value: str) -> str:
    if not value:
        return "absent"
    return value.removeprefix("built from ").removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class ImageSpec:
    """How to build one image: plain values."""

    name: str
    dockerfile: str
    context: str
    uses: tuple[str, ...] = ()  # images of the tree it uses (FROM, COPY --from, mounts)
    external: tuple[str, ...] = ()  # images from outside the tree it uses
    builder: str | None = None
    network: str | None = "host"
    build_args: tuple[tuple[str, str], ...] = ()  # those its dockerfile declares
    platform: str | None = None
    sources: tuple[str, ...] | None = None  # context paths the dockerfile reads; None: all
    round: RoundSpec | None = None  # its component's copy-deps and hooks

    @property
    def guessed(self) -> bool:
        """Whether, outside a run, what its context holds is a guess: a hook that
        declares no inputs makes part of it (known only once the hook ran)."""
        return self.round is not None and self.round.guessed_at("pre")


@dataclass(frozen=True)
class Gathered:
    inputs: BuildInputs
    previous: BuildInputs | None  # the last build's record, where it was read
    assumed: bool  # the temp folders were predicted from the last build's record


def gather(
    run: Run, spec: ImageSpec, predict: bool, bases: Mapping[str, str] | None = None
) -> Gathered:
    """The inputs of a build of `spec` now.

    In a run this happens after the component's copy-deps and hooks, so the context is
    what the build will see; temp folders nobody made yet count as what they would hold.
    Outside a run (`predict`: `doit info`, `doit list --status`, `pai-build plan`), what
    hooks make is taken to be what they made for the last build. Tree bases count by the
    fingerprints the run checked, or by `bases` where given.
    """
    builder = run.engine(spec.builder, spec.network).builder
    assumed = predict and spec.guessed
    # The record only explains a rebuild, or stands in for hook output outside a run.
    previous = load_record(run.state, spec.name) if assumed else None
    files = _context_files(run, spec, builder, predict, previous)
    context, dockerfile = Path(spec.context), Path(spec.dockerfile)
    try:
        dockerfile_name = str(dockerfile.relative_to(context))
    except ValueError:  # a dockerfile outside the context is not in `files`
        dockerfile_name = str(dockerfile)
        files["<dockerfile>"] = run.hashes.digest(str(dockerfile), os.stat(dockerfile))
    images = {name: _base(run, spec.name, name, bases) for name in spec.uses}
    images.update((name, external_digest(run, name)) for name in spec.external)
    # The variant only chooses dockerfiles, and the dockerfile is an input already.
    settings = {"builder": builder}
    settings.update({f"build-arg {key}": value for key, value in spec.build_args})
    if spec.platform:
        settings["platform"] = spec.platform
    return Gathered(BuildInputs(dockerfile_name, files, images, settings), previous, assumed)


def _base(run: Run, image: str, base: str, bases: Mapping[str, str] | None = None) -> str:
    """A tree base counts by its fingerprint: known before anything is built, the same
    on every runner, and what the registry finds its image by."""
    found = bases.get(base) if bases is not None else run.fingerprint(base)
    if found is None:
        raise PaiTasksError(
            f"image {image}: the fingerprint of its base {base} is not known yet (check "
            f"build-image:{base} first)"
        )
    return f"built from {found}"


def external_digest(run: Run, name: str) -> str:
    """An image from outside the tree counts by its registry digest: the one the local
    image was pulled by, else the one its registry serves now (with a registry set up,
    so a fresh runner decides without pulling), else the local image's id; "" when
    none is known."""
    local = run.images.get(engine_name(name))
    repository = _repository(name)
    if local is not None:
        for entry in local.repo_digests:
            named, _, digest = entry.partition("@")
            if named == repository:
                return digest
        return local.id
    remote = run.remote
    if remote is None:
        return ""
    try:
        return remote.digest(name) or ""
    except PaiTasksError:
        return ""  # the build will say why it cannot pull it


def _repository(name: str) -> str:
    """`name`'s repository as the engine lists it in RepoDigests (`ubuntu`, `acme/x`)."""
    familiar = engine_name(name)
    if "@" in familiar:
        return familiar.partition("@")[0]
    return familiar.rpartition(":")[0] if ":" in familiar.rsplit("/", 1)[-1] else familiar


def _context_files(
    run: Run, spec: ImageSpec, builder: str, predict: bool, previous: BuildInputs | None
) -> dict[str, str]:
    """What the build reads of its context, with its temp folders counted the way
    `TempFolders.entries` counts them: what copy-deps makes, and what a hook with
    declared inputs makes by that hook's key, are counted the same whether made or not,
    on any machine. Only after a hook that declares no inputs are the folders scanned
    as that hook left them (outside a run: predicted from the last build); where that
    cannot be told exactly without them (a .dockerignore, or links, which the build
    follows), a run makes them first."""
    context, dockerfile = Path(spec.context), Path(spec.dockerfile)
    round_ = spec.round
    if round_ is None or not round_.has_temp:
        return scan_context(context, dockerfile, builder, run.hashes, spec.sources)
    temp = run.temp
    scanned = round_.pre_hook is not None and round_.declared is None
    with temp.settled(round_):  # another image's build may be making them right now
        files = scan_context(context, dockerfile, builder, run.hashes, spec.sources)
        if scanned and temp.is_real(round_) and not predict:
            return files
    files = {path: entry for path, entry in files.items() if not temporary(path)}
    virtual: dict[str, str] = {}
    if any(reads_under(folder, spec.sources) for folder in TEMP_FOLDERS):
        last = None
        if predict:
            last = dict(previous.files) if previous is not None else {}
        virtual = {
            path: entry
            for path, entry in temp.entries(round_, "pre", run.hashes, last).items()
            if reads(path, spec.sources) or path == hook_output("pre")
        }
    patterns = ignore_patterns(context, dockerfile, builder) if virtual else []
    if predict or not scanned:
        virtual = {path: entry for path, entry in virtual.items() if not ignored(path, patterns)}
    elif patterns or any(entry.startswith("l ") for entry in (*files.values(), *virtual.values())):
        with temp.settled(round_):
            temp.ensure_real(round_, "pre")
            return scan_context(context, dockerfile, builder, run.hashes, spec.sources)
    files.update(virtual)
    return files


def record_path(state: Path, image: str) -> Path:
    return state / RECORDS_DIR / f"{image}.json"


def load_record(state: Path, image: str) -> BuildInputs | None:
    """The inputs of the last build paitasks made of `image` here (for explanations)."""
    try:
        data = json.loads(record_path(state, image).read_text(encoding="utf-8"))
        return BuildInputs.from_json(data["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def last_engine(state: Path, image: str) -> str | None:
    """The engine of `engines=` that made the last build recorded here, if one did."""
    try:
        found = json.loads(record_path(state, image).read_text(encoding="utf-8")).get("engine")
    except (OSError, ValueError, AttributeError):
        return None
    return str(found) if found else None


def save_record(
    state: Path, image: str, inputs: BuildInputs, image_id: str, engine: str | None = None
) -> None:
    """Keep the inputs of a build (and, with engines=, the engine that made it)."""
    path = record_path(state, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "image": image,
        "id": image_id,
        "fingerprint": fingerprint(inputs),
        "inputs": inputs.to_json(),
    }
    if engine is not None:
        data["engine"] = engine
    temporary_file = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary_file.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary_file, path)
