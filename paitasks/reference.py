"""Image references: the one rule every module uses to parse, normalise and look them up.

`parse` validates a reference and normalises it the way `docker pull` does
(github.com/distribution/reference's ParseNormalizedNamed): `x`, `x:latest`,
`library/x` and `docker.io/library/x` are one repository, `docker.io/org/x` is `org/x`,
`index.docker.io` is `docker.io`. `Reference.familiar` is the form the engine lists in
`RepoTags` (`docker images`) and looks up with `GET /images/<ref>/json`, so a
dependency's id is found however the dockerfile spelled its name.

Where the grammar's versions differ, the stricter, older rule of the engine paitasks
targets (dockerd 20.10, vendoring docker/distribution) is kept: domain and path together
are at most 255 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Reference",
    "ReferenceError",
    "engine_name",
    "is_valid_image_name",
    "local_image_name",
    "parse",
]

# Docker Hub's names: in references, its older name there, and its API's host.
DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_OFFICIAL_PREFIX = "library/"

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(
    rf"(?P<domain>{_DOMAIN})/(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_IMAGE_NAME_RE = re.compile(_PATH_COMPONENT, re.ASCII)
_HEX64_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_MAX = 255  # docker's limit on domain + "/" + path
_IMAGE_NAME_MAX = 128  # our own limit on a tree image name (one path component)
_TEXT_MAX = 1024  # longer than any valid reference; keeps the regex cheap


class ReferenceError(ValueError):
    """A string docker would refuse as an image reference; the message says why."""


@dataclass(frozen=True)
class Reference:
    """A reference in docker's normal form: `docker.io/library/x` rather than `x`."""

    domain: str  # "docker.io" for Docker Hub
    path: str  # "library/ubuntu", "acme/base", "ns/x"
    tag: str | None  # None when the text had none
    digest: str | None

    @property
    def name(self) -> str:
        """The canonical repository, e.g. `docker.io/library/ubuntu`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar(self) -> str:
        """The form the engine lists and looks up: `ubuntu:latest`, `acme/base:1.0`.

        Without a digest the tag defaults to `latest`, as in `RepoTags`. With a digest the
        tag is dropped (`ubuntu@sha256:...`): the engine looks `name:tag@digest` up by the
        digest alone (any tag finds it), and lists it in `RepoDigests` as `name@digest`.
        """
        repository = self.name
        if self.domain == DEFAULT_DOMAIN:
            repository = self.path
            official = self.path.removeprefix(_OFFICIAL_PREFIX)
            if official != self.path and "/" not in official:
                repository = official
        if self.digest is not None:
            return f"{repository}@{self.digest}"
        return f"{repository}:{self.tag or 'latest'}"


def _split_domain(text: str) -> tuple[str, str]:
    """Split off the registry the way docker does: `x/y` is Docker Hub, `x.io/y` is not."""
    first, slash, rest = text.partition("/")
    if not slash or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, text
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(text: str) -> Reference:
    """Validate and normalise `text` as `docker pull` would; raise ReferenceError if not."""
    if not text:
        raise ReferenceError("repository name must have at least one component")
    if len(text) > _TEXT_MAX:
        raise ReferenceError("reference is too long")
    if _HEX64_RE.fullmatch(text):
        raise ReferenceError("cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(text)
    if remainder.split(":", 1)[0].lower() != remainder.split(":", 1)[0]:
        raise ReferenceError("repository name must be lowercase")
    match = _REFERENCE_RE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        raise ReferenceError("invalid reference format")
    path, tag, digest = match.group("path", "tag", "digest")
    if len(domain) + 1 + len(path) > _NAME_MAX:
        raise ReferenceError(f"repository name must not be more than {_NAME_MAX} characters")
    if digest is not None:
        algorithm, _, encoded = digest.partition(":")
        if algorithm not in _DIGEST_HEX_LENGTHS:
            raise ReferenceError(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != _DIGEST_HEX_LENGTHS[algorithm]:
            raise ReferenceError("invalid checksum digest length")
        if encoded.lower() != encoded:
            raise ReferenceError("invalid checksum digest format")
    return Reference(domain, path, tag, digest)


def engine_name(text: str) -> str:
    """`parse(text).familiar`, the key to look `text` up by; `text` itself if invalid."""
    try:
        return parse(text).familiar
    except ReferenceError:
        return text


def is_valid_image_name(name: str) -> bool:
    """Whether `name` can name a tree image: one lower-case path component, not 64-hex.

    Tree image names come from file names, so this rejects what `docker build -t` would.
    """
    return (
        len(name) <= _IMAGE_NAME_MAX
        and _IMAGE_NAME_RE.fullmatch(name) is not None
        and _HEX64_RE.fullmatch(name) is None
    )


def local_image_name(text: str) -> str | None:
    """The tree image `text` can resolve to, or None if it names another image.

    Docker looks `base`, `base:latest`, `library/base` and `docker.io/library/base` all up
    as `docker.io/library/base:latest`; the tree only builds such `:latest` names.
    """
    try:
        ref = parse(text)
    except ReferenceError:
        return None
    if ref.domain != DEFAULT_DOMAIN or ref.digest is not None or ref.tag not in (None, "latest"):
        return None
    name = ref.path.removeprefix(_OFFICIAL_PREFIX)
    if name == ref.path or not is_valid_image_name(name):
        return None
    return name
