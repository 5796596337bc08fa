"""Several builders (`builders=NAME,...`): the buildx builders that build the run's
images. A name is a docker context (a Docker engine, often another machine over ssh)
or, failing that, a buildx builder of another driver (kubernetes, remote,
docker-container), which has no Docker engine of its own.

Each build goes to the builder with the fewest builds in flight, with the same buildx
command as here (engine.buildx_command) through `docker --context NAME` or `--builder
NAME`, and is pushed from there under the image's fingerprint tag (a cache entry: `:tag`
moves only in `push`); its metadata file gives the digest. Tree bases come from the
registry by digest (builds.py), so any builder can build any image. How builders are
found and why is in docs/architecture.md ("One route per job").
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from paitasks.engine import TAIL_LINES, BuildRequest, Engine, build_failed, buildx_command, run_cli
from paitasks.errors import EngineError, PaiTasksError
from paitasks.streaming import LineSink, Tail


@dataclass(frozen=True)
class Builder:
    """One builder of `builders=`: a docker context (`host`, its docker endpoint) or a
    buildx builder of another driver (`driver`)."""

    name: str
    host: str = ""
    driver: str = ""

    def __str__(self) -> str:
        where = self.host or f"buildx builder, driver {self.driver}"
        return f"builder {self.name} ({where})"


def buildkit_takes_named_contexts(version: str) -> bool:
    """Whether a BuildKit of `version` (as buildx shows it: "v0.13.2", "v0.8+unknown")
    takes named build contexts (`--build-context`, from 0.10 on); False when unknown."""
    found = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return found is not None and (int(found[1]), int(found[2])) >= (0, 10)


class Builders:
    """The builders of one run, and how many builds each has in flight (thread-safe)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._builders: dict[str, Builder] = {}
        self._busy: dict[str, int] = dict.fromkeys(names, 0)
        self._down: set[str] = set()  # stopped answering during the run
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}
        self._named_contexts: dict[str, bool] = {}

    def check(self) -> None:
        """Before any work: each name is a docker context or a buildx builder, and each
        answers (a builder is started if it is not: `buildx inspect --bootstrap`)."""
        for name in self.names:
            self._builders[name] = self._find(name)

        def ping(builder: Builder) -> str | None:
            problem = self._problem(builder)
            return f"{builder} does not answer: {problem}" if problem else None

        with ThreadPoolExecutor(len(self._builders) or 1) as pool:
            problems = [problem for problem in pool.map(ping, self._builders.values()) if problem]
        if problems:
            raise EngineError("; ".join(problems))

    def _find(self, name: str) -> Builder:
        """What `name` is: a docker context (asked of the docker CLI, as JSON: a run with
        only docker contexts that builds nothing then never imports python-on-whales,
        which takes longer than such a run), else a buildx builder."""
        lines: list[str] = []
        command = ["docker", "context", "inspect", name, "--format", "{{json .Endpoints}}"]
        if run_cli(command, lines.append) == 0:
            try:
                host = json.loads("".join(lines))["docker"]["Host"]
            except (ValueError, KeyError, TypeError):
                host = ""
            if not host:
                raise EngineError(f"builder {name}: its docker context names no docker host")
            return Builder(name, host=str(host))
        from python_on_whales import DockerClient
        from python_on_whales.exceptions import DockerException

        cli = DockerClient()
        with contextlib.suppress(DockerException):
            return Builder(name, driver=cli.buildx.inspect(name).driver or "unknown")
        known: set[str] = set()
        for listing in (cli.context.list, cli.buildx.list):
            with contextlib.suppress(DockerException):
                known.update(item.name or "" for item in listing())
        raise EngineError(
            f"builders={','.join(self.names)}: no docker context or buildx builder named "
            f"{name!r} (there are: {', '.join(sorted(known)) or 'none'}); create one with "
            f"`docker context create {name} --docker host=ssh://user@machine` or `docker "
            f"buildx create --name {name} --driver kubernetes`"
        )

    def _problem(self, builder: Builder) -> str | None:
        """Why `builder` does not answer now, or None if it does (a builder that is not
        running is started: `buildx inspect --bootstrap`)."""
        if builder.host:
            try:
                self.engine(builder.name).check()
            except PaiTasksError as exc:
                return str(exc)
            return None
        from python_on_whales import DockerClient
        from python_on_whales.exceptions import DockerException

        try:
            DockerClient().buildx.inspect(builder.name, bootstrap=True)
        except DockerException as exc:
            said = [line for line in (exc.stderr or exc.stdout or "").splitlines() if line.strip()]
            return said[-1].strip() if said else "no answer"
        return None

    def mark_down(self, name: str) -> None:
        """Builder `name` stopped answering: later builds go to the others."""
        with self._lock:
            self._down.add(name)

    def engine(self, name: str) -> Engine:
        """The Docker engine of docker context `name` (pushes, pulls), through the SDK."""
        with self._lock:
            if name not in self._engines:
                self._engines[name] = Engine(host=self._builders[name].host)
            return self._engines[name]

    def docker_engine(self, preferred: str | None = None) -> Engine | None:
        """A Docker engine of `builders=`: `preferred`'s if it is a docker context, else
        the first context's; None when no builder is a docker context."""
        names = [name for name in (preferred, *self.names) if name in self._builders]
        return next((self.engine(name) for name in names if self._builders[name].host), None)

    def takes_named_contexts(self, name: str) -> bool:
        """Whether builds on `name` take named build contexts: every node of its builder
        runs a BuildKit of 0.10 or later (buildx inspection, through python-on-whales)."""
        with self._lock:
            known = self._named_contexts.get(name)
        if known is None:
            from python_on_whales import DockerClient
            from python_on_whales.exceptions import DockerException

            try:
                nodes = DockerClient().buildx.inspect(name).nodes or []
            except DockerException:
                nodes = []
            versions = [node.version or "" for node in nodes]
            known = bool(versions) and all(map(buildkit_takes_named_contexts, versions))
            with self._lock:
                self._named_contexts[name] = known
        return known

    @contextlib.contextmanager
    def choose(self) -> Iterator[str]:
        """Hold the builder with the fewest builds in flight (the first such, in order),
        of those still answering."""
        with self._lock:
            alive = [name for name in self.names if name not in self._down]
            if not alive:
                raise EngineError(
                    f"no builder of builders={','.join(self.names)} answers any more"
                )
            name = min(alive, key=lambda candidate: self._busy[candidate])
            self._busy[name] += 1
        try:
            yield name
        finally:
            with self._lock:
                self._busy[name] -= 1

    def build(self, name: str, request: BuildRequest, on_line: LineSink | None = None) -> str:
        """Build `request` on builder `name` and push it from there under its tags
        (buildx); return the digest buildx's metadata file gives."""
        sink = Tail(on_line, TAIL_LINES)

        builder = self._builders[name]
        with tempfile.TemporaryDirectory(prefix="paitasks-build-") as folder:
            metadata = Path(folder) / "metadata.json"
            command, environment = buildx_command(
                request, metadata=metadata, context=name if builder.host else None,
                builder=None if builder.host else name,
            )
            code = run_cli(command, sink, environment)
            if code != 0:
                gone = ""
                if self._problem(builder):
                    self.mark_down(name)
                    gone = f"; builder {name} no longer answers"
                raise build_failed(request, f"on builder {name}", f"exit {code}{gone}", sink.lines,
                                   command, code)
            try:
                digest = json.loads(metadata.read_text())["containerimage.digest"]
            except (OSError, ValueError, KeyError):
                raise EngineError(
                    f"building image {request.tag} on builder {name}: buildx wrote no digest"
                ) from None
        return str(digest)
