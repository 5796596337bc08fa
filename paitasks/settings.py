"""Run settings: where the tree is, how to build, where to push.

Each setting comes from a doit command-line variable (`doit build src=DIR`), else an
environment variable (`PAI_SRC=DIR doit build`), else a default. The values are plain
strings and paths, so tasks that carry them stay picklable and JSON-able.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from paitasks.errors import PaiTasksError

# setting name -> (doit variable, environment variable)
SOURCES: dict[str, tuple[str, str]] = {
    "src": ("src", "PAI_SRC"),
    "config": ("config", "PAI_CONFIG"),
    "network": ("network", "PAI_BUILD_NETWORK"),
    "variant": ("variant", "PAI_BUILD_VARIANT"),
    "builder": ("builder", "PAI_BUILDER"),
    "verbose": ("verbose", "PAI_VERBOSE"),
}
BUILDERS = ("buildx", "classic")
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    src: Path  # absolute source folder: its sub-folders are components
    config: Path | None = None  # services-configuration.yaml or its folder (push only)
    network: str | None = "host"  # build network mode
    variant: str | None = None  # cluster kind: selects <image>.<variant>.dockerfile
    builder: str | None = None  # "buildx", "classic", or None for buildx when available
    verbose: bool = False  # show docker's build output for every image, not only failures

    @property
    def root(self) -> Path:
        """The tree's root: OpenPAI runs hooks from the parent of `src/`."""
        return self.src.parent

    @property
    def state(self) -> Path:
        return self.root / ".paitasks"


def resolve_settings(
    variables: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    default_src: str = "src",
    cwd: Path | None = None,
) -> Settings:
    """Settings from doit variables, then the environment, then defaults."""
    environ = os.environ if environ is None else environ
    base = cwd or Path.cwd()

    def pick(name: str) -> str | None:
        var, env = SOURCES[name]
        for value in (variables.get(var), environ.get(env)):
            if value is not None and value.strip():
                return value.strip()
        return None

    src = (base / (pick("src") or default_src)).absolute()
    config = pick("config")
    builder = pick("builder")
    if builder is not None and builder not in BUILDERS:
        var, env = SOURCES["builder"]
        raise PaiTasksError(
            f"{var}={builder} ({env}): unknown builder, choose one of {', '.join(BUILDERS)}"
        )
    network = pick("network") or "host"
    return Settings(
        src=Path(os.path.normpath(src)),
        config=(base / config).absolute() if config else None,
        network=None if network == "default" else network,
        variant=pick("variant"),
        builder=builder,
        verbose=(pick("verbose") or "").lower() in TRUE,
    )
