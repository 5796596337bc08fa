"""What one image is built from: its spec, the inputs a build of it sees, and the
record of its last build.

`gather` reads the inputs: the context files the engine would be sent (context.py), with
the temp folders as they are or will be (contents.py), the dockerfile, the images it
uses (a tree base by its fingerprint, another image by its digest) and its build
settings. `fingerprint` hashes them, so the fingerprints of a whole tree are known
before anything is built or pulled. The hash is stored on the image as a label and
names a tag in the registry (registry.py), so whether an image is up to date is a
question for the engine and the registry (freshness.py decides), not for a local
database that can be lost. The last build's
inputs are kept in `.paitasks/images/<image>.json` only to explain a rebuild in words.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from paitasks.contents import Contents, context_files
from paitasks.disk import read_json, write_json
from paitasks.errors import PaiTasksError
from paitasks.fingerprint import BuildInputs, fingerprint
from paitasks.reference import engine_name
from paitasks.tempfolders import RoundSpec

if TYPE_CHECKING:
    from paitasks.engine import LocalImage

RECORDS_DIR = "images"


@dataclass(frozen=True)
class ImageSpec:
    """How to build one image: plain values."""

    name: str
    dockerfile: str
    context: str
    uses: tuple[str, ...] = ()  # images of the tree it uses (FROM, COPY --from, mounts)
    external: tuple[str, ...] = ()  # images from outside the tree it uses
    build_tool: str | None = None  # buildx or classic; None: buildx when installed
    network: str | None = "host"
    build_args: tuple[tuple[str, str], ...] = ()  # those its dockerfile declares
    platform: str | None = None
    sources: tuple[str, ...] | None = None  # context paths the dockerfile reads; None: all
    round: RoundSpec | None = None  # its component's copy-deps and hooks

    @property
    def predicted(self) -> bool:
        """Whether, outside a run, what its context holds is predicted: a hook that
        declares no inputs makes part of it (known only once the hook ran)."""
        return self.round is not None and self.round.predicted_at("pre")


@dataclass(frozen=True)
class Gathered:
    inputs: BuildInputs
    previous: BuildInputs | None  # the last build's record, where it was read
    predicted: bool  # the temp folders were predicted from the last build's record


def gather(
    spec: ImageSpec,
    predict: bool,
    *,
    contents: Contents,
    state: Path,
    build_tool: str,
    bases: Mapping[str, str],
    externals: Mapping[str, str],
) -> Gathered:
    """The inputs of a build of `spec` now.

    In a run this happens after the component's copy-deps and hooks, so the context is
    what the build will see; temp folders nobody made yet count as what they would hold.
    Outside a run (`predict`: `doit info`, `doit list --status`, `pai-build plan`), what
    hooks make is taken to be what they made for the last build (`state`'s record).
    `build_tool` is buildx or classic (they read `.dockerignore` files differently);
    tree bases count by their fingerprints (`bases`), other images by their digests
    (`externals`).
    """
    predicted = predict and spec.predicted
    # The record only explains a rebuild, or stands in for hook output outside a run.
    previous = load_record(state, spec.name) if predicted else None
    last = (dict(previous.files) if previous is not None else {}) if predict else None
    files = context_files(contents, Path(spec.context), Path(spec.dockerfile), spec.round,
                          spec.sources, build_tool, last)
    context, dockerfile = Path(spec.context), Path(spec.dockerfile)
    try:
        dockerfile_name = str(dockerfile.relative_to(context))
    except ValueError:  # a dockerfile outside the context is not in `files`
        dockerfile_name = str(dockerfile)
        files["<dockerfile>"] = contents.hashes.digest(str(dockerfile), os.stat(dockerfile))
    images = {name: _base(spec.name, name, bases) for name in spec.uses}
    images.update((name, externals.get(name, "")) for name in spec.external)
    # The variant only chooses dockerfiles, and the dockerfile is an input already.
    settings = {"builder": build_tool}  # the key's old name: fingerprint.SETTING_NAMES
    settings.update({f"build-arg {key}": value for key, value in spec.build_args})
    if spec.platform:
        settings["platform"] = spec.platform
    return Gathered(BuildInputs(dockerfile_name, files, images, settings), previous, predicted)


def _base(image: str, base: str, bases: Mapping[str, str]) -> str:
    """A tree base counts by its fingerprint: known before anything is built, the same
    on every runner, and what the registry finds its image by."""
    found = bases.get(base)
    if found is None:
        raise PaiTasksError(
            f"image {image}: the fingerprint of its base {base} is not known yet (check "
            f"build-image:{base} first)"
        )
    return f"built from {found}"


class _Listing(Protocol):
    def get(self, name: str) -> LocalImage | None: ...


class _Served(Protocol):
    def digest(self, name: str) -> str | None: ...


def external_digest(images: _Listing, served: _Served | None, name: str) -> str:
    """An image from outside the tree counts by its registry digest: the one the local
    image (in `images`, the engine's) was pulled by, else the one its registry serves
    now (`served`: with a registry set up, so a fresh runner decides without pulling),
    else the local image's id; "" when none is known."""
    local = images.get(engine_name(name))
    repository = _repository(name)
    if local is not None:
        for entry in local.repo_digests:
            named, _, digest = entry.partition("@")
            if named == repository:
                return digest
        return local.id
    if served is None:
        return ""
    try:
        return served.digest(name) or ""
    except PaiTasksError:
        return ""  # the build will say why it cannot pull it


def _repository(name: str) -> str:
    """`name`'s repository as the engine lists it in RepoDigests (`ubuntu`, `acme/x`)."""
    familiar = engine_name(name)
    if "@" in familiar:
        return familiar.partition("@")[0]
    return familiar.rpartition(":")[0] if ":" in familiar.rsplit("/", 1)[-1] else familiar


def record_path(state: Path, image: str) -> Path:
    return state / RECORDS_DIR / f"{image}.json"


def load_record(state: Path, image: str) -> BuildInputs | None:
    """The inputs of the last build paitasks made of `image` here (for explanations)."""
    try:
        return BuildInputs.from_json(read_json(record_path(state, image))["inputs"])
    except (ValueError, KeyError, TypeError):
        return None


def last_builder(state: Path, image: str) -> str | None:
    """The builder of `builders=` that made the last build recorded here, if one did."""
    found = read_json(record_path(state, image)).get("builder")
    return str(found) if found else None


def save_record(
    state: Path, image: str, inputs: BuildInputs, image_id: str, builder: str | None = None
) -> None:
    """Keep the inputs of a build (and, with builders=, the builder that made it)."""
    path = record_path(state, image)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "image": image,
        "id": image_id,
        "fingerprint": fingerprint(inputs),
        "inputs": inputs.to_json(),
    }
    if builder is not None:
        data["builder"] = builder
    write_json(path, data)
