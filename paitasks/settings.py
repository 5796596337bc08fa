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
    "build_tool": ("build_tool", "PAI_BUILD_TOOL"),
    "verbose": ("verbose", "PAI_VERBOSE"),
    "build_args": ("build_args", "PAI_BUILD_ARGS"),
    "platform": ("platform", "PAI_PLATFORM"),
    "pull": ("pull", "PAI_PULL"),
    "builders": ("builders", "PAI_BUILDERS"),
    "tries": ("tries", "PAI_REGISTRY_TRIES"),
    "retry_time": ("retry_time", "PAI_REGISTRY_RETRY_TIME"),
    "stall": ("stall", "PAI_REGISTRY_STALL"),
    "send_limit": ("send_limit", "PAI_SEND_LIMIT"),
    "publish": ("publish", "PAI_PUBLISH"),
    "revision": ("revision", "PAI_REVISION"),
    "force": ("force", "PAI_FORCE"),
}
BUILD_TOOLS = ("buildx", "classic")
PUBLISH = ("fingerprints",)  # what `publish=` may say
# Older names of settings, still read: setting -> (doit variable, environment variable).
FORMERLY: dict[str, tuple[str, str]] = {
    "build_tool": ("builder", "PAI_BUILDER"),
    "builders": ("engines", "PAI_ENGINES"),
}
TRUE = ("1", "true", "yes", "on")
STATE_DIR = ".paitasks"  # in the tree's root: everything paitasks keeps between runs


@dataclass(frozen=True)
class Settings:
    src: Path  # absolute source folder: its sub-folders are components
    config: Path | None = None  # services-configuration.yaml or its folder (push only)
    network: str | None = "host"  # build network mode
    variant: str | None = None  # cluster kind: selects <image>.<variant>.dockerfile
    build_tool: str | None = None  # "buildx", "classic", or None for buildx when available
    verbose: bool = False  # show docker's build output for every image, not only failures
    # --build-arg values from a KEY=VALUE file; each image gets the ones it declares (ARG)
    build_args: tuple[tuple[str, str], ...] = ()
    platform: str | None = None  # target platform, e.g. linux/amd64; None: the engine's
    # With a registry: bring images that are up to date there into the local engine too.
    pull: bool = False
    # buildx builders that build (several machines); none: this machine's engine.
    builders: tuple[str, ...] = ()
    # How hard a registry request or push is tried (retries.py): tries, at most this
    # many seconds from the first, and a try fails after this many seconds of silence.
    tries: int = 5
    retry_time: float = 120.0
    stall: float = 60.0
    # Images up to this many megabytes are sent to the registry from this process
    # (publish.py); larger ones, or all with 0, are pushed by the engine.
    send_limit: int = 256
    # "fingerprints": every image the run builds is put in the registry under its
    # fingerprint tag (a cache for pull requests and other runners); `:tag` never moves.
    publish: str | None = None
    # The commit the run builds (labels its images); None: the git checkout's HEAD.
    revision: str | None = None
    # Move `:tag` even where it serves a newer commit's images (a deliberate rollback).
    force: bool = False

    @property
    def root(self) -> Path:
        """The tree's root: OpenPAI runs hooks from the parent of `src/`."""
        return self.src.parent

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR


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
        old_var, old_env = FORMERLY.get(name, (var, env))
        for value in (variables.get(var), variables.get(old_var), environ.get(env),
                      environ.get(old_env)):
            if value is not None and value.strip():
                return value.strip()
        return None

    src = (base / (pick("src") or default_src)).absolute()
    config = pick("config")
    tool = pick("build_tool")
    if tool is not None and tool not in BUILD_TOOLS:
        var, env = SOURCES["build_tool"]
        raise PaiTasksError(
            f"{var}={tool} ({env}): unknown build tool, choose one of {', '.join(BUILD_TOOLS)}"
        )
    publish = pick("publish")
    if publish is not None and publish not in PUBLISH:
        var, env = SOURCES["publish"]
        raise PaiTasksError(f"{var}={publish} ({env}): unknown, the one choice is fingerprints")
    if publish is not None and config is None:
        var, env = SOURCES["publish"]
        raise PaiTasksError(
            f"{var}={publish} ({env}) needs a registry: give its settings with config=DIR "
            "(PAI_CONFIG)"
        )
    network = pick("network") or "host"
    args_file = pick("build_args")

    def number(name: str, default: float, whole: bool = False, zero: bool = False) -> float:
        text = pick(name)
        if text is None:
            return default
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = -1
        if not (0 < value < float("inf") or (zero and value == 0)):
            var, env = SOURCES[name]
            kind = "a whole number" if whole else "a number of seconds"
            bound = "0 or more" if zero else "above 0"
            raise PaiTasksError(f"{var}={text} ({env}): expected {kind} {bound}")
        return value

    return Settings(
        src=Path(os.path.normpath(src)),
        config=(base / config).absolute() if config else None,
        network=None if network == "default" else network,
        variant=pick("variant"),
        build_tool=tool,
        verbose=(pick("verbose") or "").lower() in TRUE,
        build_args=read_build_args(base / args_file, environ) if args_file else (),
        platform=pick("platform"),
        pull=(pick("pull") or "").lower() in TRUE,
        builders=tuple(
            dict.fromkeys(
                name.strip() for name in (pick("builders") or "").split(",") if name.strip()
            )
        ),
        tries=int(number("tries", 5, whole=True)),
        retry_time=number("retry_time", 120.0),
        stall=number("stall", 60.0),
        send_limit=int(number("send_limit", 256, whole=True, zero=True)),
        publish=publish,
        revision=pick("revision"),
        force=(pick("force") or "").lower() in TRUE,
    )


def read_build_args(path: Path, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """KEY=VALUE lines (blank lines and # comments skipped; spaces around `=` ignored), as
    `docker build --build-arg` takes them; a bare KEY takes its value from the environment.
    In a file, so values stay off doit's command line and out of shell history (build
    args are still not for secrets: docker records them in the image's history)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError) as exc:
        raise PaiTasksError(f"build_args={path}: cannot read it: {exc}") from None
    args: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not key or any(char.isspace() for char in key):
            raise PaiTasksError(f"{path}:{number}: expected KEY=VALUE (a name, then '=')")
        if not equals:
            if key not in environ:
                raise PaiTasksError(
                    f"{path}:{number}: build arg {key} has no value and is not set in the "
                    "environment"
                )
            value = environ[key]
        args[key] = value.strip() if equals else value
    return tuple(sorted(args.items()))
