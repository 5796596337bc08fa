"""Read what a dockerfile needs from other images: FROM, COPY --from, RUN --mount from=.

Parsing is BuildKit's own (PyPI `dockerfile`); this module adds what the graph needs on
top: ARG substitution in FROM, stage names, and the normal form of an image reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

RefKind = Literal["FROM", "COPY --from", "RUN --mount"]


@dataclass(frozen=True)
class ImageRef:
    """One reference from a dockerfile to an image that is not one of its own stages."""

    reference: str  # as resolved (ARGs substituted), e.g. "docker.io/library/base:latest"
    line: int  # 1-based line of the instruction
    kind: RefKind


@dataclass(frozen=True)
class DockerfileInfo:
    path: Path
    refs: tuple[ImageRef, ...]  # external image references, in file order
    stages: tuple[str, ...]  # `AS` names, lower-cased, in order


def parse_dockerfile_text(
    text: str, path: Path, build_args: dict[str, str] | None = None
) -> DockerfileInfo:
    raise NotImplementedError


def parse_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> DockerfileInfo:
    raise NotImplementedError


def local_image_name(reference: str) -> str | None:
    """The bare local name a reference can resolve to, or None if it names a remote image."""
    raise NotImplementedError
