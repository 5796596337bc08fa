"""Is an image (or a push) up to date? doit `uptodate` checks that ask the engine.

An image is up to date when the engine holds `name:latest` with a fingerprint label equal
to the fingerprint of what a build would see now: its context files (after hooks and
copy-deps ran), its dockerfile, the ids of the images it uses and its build settings.
A push is up to date when the registry serves, for name:tag, the digest this engine
recorded when it last pushed the same image.

Each check keeps its reason in words, which `doit info` and `doit list --status` show
and the build step prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paitasks import runtime, staging
from paitasks.context import (
    folder_entries,
    ignore_patterns,
    ignored,
    reads,
    reads_under,
    scan_context,
)
from paitasks.errors import PaiTasksError
from paitasks.fingerprint import LABEL, BuildInputs, explain, fingerprint
from paitasks.staging import RoundSpec
from paitasks.workspace import TEMP_FOLDERS

MANIFEST_DIR = "images"


@dataclass(frozen=True)
class ImageSpec:
    """How to build one image: plain values, so tasks stay picklable."""

    name: str
    dockerfile: str
    context: str
    state: str  # the tree's .paitasks folder
    uses: tuple[str, ...] = ()  # images of the tree it uses (FROM, COPY --from, mounts)
    external: tuple[str, ...] = ()  # images from outside the tree it uses
    builder: str | None = None
    network: str | None = "host"
    variant: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()  # those its dockerfile declares
    platform: str | None = None
    sources: tuple[str, ...] | None = None  # context paths the dockerfile reads; None: all
    round: RoundSpec | None = None  # its component's copy-deps and hooks

    @property
    def prepared(self) -> bool:
        """Whether copy-deps or a pre-build hook put files into the context first."""
        return self.round is not None and bool(self.round.copies or self.round.pre_hook)


@dataclass(frozen=True)
class Assessment:
    inputs: BuildInputs
    fingerprint: str
    fresh: bool
    reasons: tuple[str, ...]


_last: dict[str, Assessment] = {}
_last_lock = threading.Lock()


def assess(spec: ImageSpec, predict: bool | None = None) -> Assessment:
    """Gather the inputs now, fingerprint them, and compare with the engine's image.

    In a run, this happens after the component's copy-deps and hooks, so the context is
    what the build will see; temp folders nobody made real yet count as what they would
    hold (staging.py). Outside a run (`doit info`, `doit list --status`, `pai-build
    plan`) it predicts: files of the temp folders, which only the round makes, are taken
    to be what they were at the last build.
    """
    if predict is None:
        predict = not runtime.executing()
    engine = runtime.engine_for(spec.builder, spec.network)
    view = runtime.image_view()
    state = Path(spec.state)
    files = _context_files(spec, engine.builder, predict)
    assumed = predict and spec.prepared
    # The last build's record only explains a rebuild, or stands in for the temp folders
    # outside a run: an up-to-date check in a run does not read it.
    previous = load_manifest(state, spec.name) if assumed else None
    if assumed:
        files = {path: entry for path, entry in files.items() if not _temporary(path)}
        files.update(_predicted_temp_files(spec, previous, engine.builder, state))
    context, dockerfile = Path(spec.context), Path(spec.dockerfile)
    try:
        dockerfile_name = str(dockerfile.relative_to(context))
    except ValueError:  # a dockerfile outside the context is not in `files`
        dockerfile_name = str(dockerfile)
        files = {
            **files,
            "<dockerfile>": runtime.hash_cache(state).digest(str(dockerfile), os.stat(dockerfile)),
        }
    images = {}
    for name in (*spec.uses, *spec.external):
        found = view.get(name if name in spec.uses else normal_tag(name))
        images[name] = found.id if found else ""
    # The variant only chooses dockerfiles, and the dockerfile is an input already.
    settings = {"builder": engine.builder}
    settings.update({f"build-arg {key}": value for key, value in spec.build_args})
    if spec.platform:
        settings["platform"] = spec.platform
    inputs = BuildInputs(dockerfile_name, files, images, settings)
    wanted = fingerprint(inputs)
    current = view.get(spec.name)
    if current is None:
        result = Assessment(inputs, wanted, False, ("not in the engine",))
    elif current.labels.get(LABEL) == wanted:
        result = Assessment(inputs, wanted, True, ())
    elif LABEL not in current.labels:
        reason = "the engine's image was not built by paitasks"
        result = Assessment(inputs, wanted, False, (reason,))
    else:
        previous = previous or load_manifest(state, spec.name)
        if previous is not None and fingerprint(previous) != current.labels.get(LABEL):
            previous = None  # the record is of another build than the engine's image
        result = Assessment(inputs, wanted, False, tuple(explain(previous, inputs)))
    if assumed and previous is not None:
        note = "assuming copy-deps and hooks make the same files as last time"
        result = dataclasses.replace(result, reasons=(*result.reasons, note))
    if not predict:
        with _last_lock:
            _last[spec.name] = result
    return result


def _context_files(spec: ImageSpec, builder: str, predict: bool) -> dict[str, str]:
    """What the build reads of its context, with temp folders not yet made counted as
    what they would hold; they are made real first where that cannot be told exactly
    (a .dockerignore, or links, which the build follows)."""
    context, dockerfile = Path(spec.context), Path(spec.dockerfile)
    cache = runtime.hash_cache(Path(spec.state))
    round_ = spec.round
    if predict or round_ is None or not round_.has_temp:
        return scan_context(context, dockerfile, builder, cache, spec.sources)
    with staging.settled(round_):  # another image's build may be making them right now
        files = scan_context(context, dockerfile, builder, cache, spec.sources)
        if staging.is_real(round_):
            return files
    files = {path: entry for path, entry in files.items() if not _temporary(path)}
    virtual: dict[str, str] = {}
    if any(reads_under(folder, spec.sources) for folder in TEMP_FOLDERS):
        virtual = {
            path: entry
            for path, entry in staging.temp_entries(round_, "pre", cache).items()
            if reads(path, spec.sources)
        }
    links = any(entry.startswith("l ") for entry in (*files.values(), *virtual.values()))
    if links or (virtual and ignore_patterns(context, dockerfile, builder)):
        with staging.settled(round_):
            staging.ensure_real(round_, "pre")
            return scan_context(context, dockerfile, builder, cache, spec.sources)
    files.update(virtual)
    return files


def _predicted_temp_files(
    spec: ImageSpec, previous: BuildInputs | None, builder: str, state: Path
) -> dict[str, str]:
    """What the temp folders will hold once copy-deps and hooks ran: copies of each
    components.dep entry as its folder is now (its own temp folders as last time), and
    for the rest what the hooks made last time."""
    predicted = {p: e for p, e in (previous.files if previous else {}).items() if _temporary(p)}
    patterns = ignore_patterns(Path(spec.context), Path(spec.dockerfile), builder)
    cache = runtime.hash_cache(state)
    for dep in spec.round.copies if spec.round else ():
        prefix = f"dependency/{dep.name}/"
        predicted = {
            path: entry
            for path, entry in predicted.items()
            if not path.startswith(prefix) or _temporary(path[len(prefix) :])
        }
        for path, entry in folder_entries(Path(dep.folder), cache, TEMP_FOLDERS).items():
            copied = prefix + path
            if reads(copied, spec.sources) and not ignored(copied, patterns):
                predicted[copied] = entry
    return predicted


class CopiesDeferred:
    """doit uptodate check for `copy-deps:C` where no hook needs the copies up front:
    they are made when a hook that runs, an image that builds or a component that copies
    C reads them (staging.py), so a run where everything is up to date copies nothing."""

    def __call__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "copy-deps: made only when a hook, an image build or a dependent reads them"


def reads_temp_folders(assessment: Assessment) -> bool:
    """Whether the build reads anything in `dependency/` or `generated/`."""
    return any(_temporary(path) for path in assessment.inputs.files)


def _temporary(path: str) -> bool:
    return path.split("/", 1)[0] in TEMP_FOLDERS


def last_assessment(name: str) -> Assessment | None:
    """What the uptodate check just found, so the build does not gather it twice."""
    with _last_lock:
        return _last.pop(name, None)


def normal_tag(reference: str) -> str:
    """`ubuntu` -> `ubuntu:latest`; `docker.io/library/x:1` -> `x:1` (as the engine lists)."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "library/"):
        if reference.startswith(prefix):
            reference = reference[len(prefix) :]
            break
    if "@" in reference:
        return reference
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last else f"{reference}:latest"


class ImageUpToDate:
    """doit uptodate check for `build-image:<name>`; its repr says why.

    In a run, images are checked in build order, so a base is rebuilt before its
    dependents are checked against its new id. Outside a run (`doit list --status`,
    `doit info`) nothing is rebuilt, so the check follows the graph instead: an image
    whose tree base would rebuild would rebuild too."""

    def __init__(self, spec: ImageSpec, plan: Predictions) -> None:
        self.spec = spec
        self.plan = plan
        self.reason = "not checked"
        plan.add(spec)

    def __call__(self, task: Any, values: Any) -> bool:
        try:
            if runtime.executing():
                result = assess(self.spec)
                fresh, reasons = result.fresh, result.reasons
            else:
                fresh, reasons = self.plan.predict(self.spec.name)
        except PaiTasksError as exc:
            self.reason = str(exc)
            return False
        self.reason = "; ".join(("up to date", *reasons) if fresh else reasons)
        return fresh

    def __repr__(self) -> str:
        return f"image {self.spec.name}: {self.reason}"


class Predictions:
    """The images of one planning and what `predict` found for them, shared by their
    checks: a new planning (another tree, or the same tree later) starts afresh."""

    def __init__(self) -> None:
        self.specs: dict[str, ImageSpec] = {}
        self.memo: dict[str, tuple[bool, tuple[str, ...]]] = {}

    def add(self, spec: ImageSpec) -> None:
        self.specs[spec.name] = spec

    def predict(self, name: str) -> tuple[bool, tuple[str, ...]]:
        return predict(self.specs, name, self.memo)


def predict(
    specs: dict[str, ImageSpec], name: str, memo: dict[str, tuple[bool, tuple[str, ...]]]
) -> tuple[bool, tuple[str, ...]]:
    """Outside a run: whether image `name` is up to date and why (fresh, reasons),
    following the graph: an image whose tree base would rebuild rebuilds too."""
    stack = [name]
    while stack:  # depth first, without recursion: chains can be long
        current = stack[-1]
        if current in memo:
            stack.pop()
            continue
        spec = specs[current]
        pending = [used for used in spec.uses if used in specs and used not in memo]
        if pending:
            stack.extend(pending)
            continue
        result = assess(spec, predict=True)
        stale = [f"uses {used}, which rebuilds" for used in spec.uses
                 if used in memo and not memo[used][0]]
        if not result.fresh:
            stale += result.reasons
        memo[current] = (False, tuple(stale)) if stale else (True, result.reasons)
        stack.pop()
    return memo[name]


class PushUpToDate:
    """doit uptodate check for a push: the registry already serves this image."""

    def __init__(self, image: str, config: str | None) -> None:
        self.image = image
        self.config = config
        self.reason = "not checked"

    def __call__(self, task: Any, values: Any) -> bool:
        try:
            fresh, self.reason = pushed_already(self.image, self.config)
        except PaiTasksError as exc:
            self.reason = str(exc)
            return False
        return fresh

    def __repr__(self) -> str:
        return f"push of {self.image}: {self.reason}"


def pushed_already(image: str, config: str | None) -> tuple[bool, str]:
    settings = runtime.registry_settings(config)
    view = runtime.image_view()
    local = view.get(image)
    if local is None:
        return False, "image not built yet"
    repository = settings.repository(image)
    known = {
        entry.split("@", 1)[1]
        for entry in local.repo_digests
        if entry.split("@", 1)[0] == repository
    }
    if not known:
        return False, f"this image was never pushed to {repository}"
    path = repository.removeprefix(f"{settings.domain}/")
    from paitasks.registry import Registry  # urllib: only when pushing

    served = Registry(settings.registry, settings.username, settings.password).manifest_digest(
        path, settings.tag
    )
    if served is None:
        return False, f"{settings.image_name(image)} is not in the registry"
    if served not in known:
        return False, f"{settings.image_name(image)} in the registry is another image"
    return True, f"{settings.image_name(image)} already serves {served}"


def manifest_path(state: Path, image: str) -> Path:
    return state / MANIFEST_DIR / f"{image}.json"


def load_manifest(state: Path, image: str) -> BuildInputs | None:
    """The inputs of the last build paitasks made of `image` here (for explanations)."""
    try:
        data = json.loads(manifest_path(state, image).read_text(encoding="utf-8"))
        return BuildInputs.from_json(data["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_manifest(state: Path, image: str, inputs: BuildInputs, image_id: str) -> None:
    path = manifest_path(state, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "image": image,
        "id": image_id,
        "fingerprint": fingerprint(inputs),
        "inputs": inputs.to_json(),
    }
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)
