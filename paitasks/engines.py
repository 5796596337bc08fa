"""Several engines (`engines=NAME,...`): docker contexts and buildx builders that build
the run's images.

A name is a docker context (a docker engine, often another machine over ssh) or, failing
that, a buildx builder instance of any driver (kubernetes, remote, docker-container).
Each build goes to the engine with the fewest builds in flight (doit's `-n` bounds them
all), and is pushed from that engine to the registry under the image's fingerprint tag
(a cache entry, not a publication: `:tag` moves only in `push`, once every image has
built). The build's metadata file gives the digest. Tree bases come from the registry by
digest (actions.py), so any engine can build any image; nothing is loaded into this
machine's engine.

Builds there are the same buildx builds as here (engine.buildx_command: build args in
buildx's environment, never on its command line), pushed with a metadata file, through
`docker --context NAME` or `--builder NAME` (run_cli, as here: python-on-whales'
`buildx.build` would put build arg values on the command line). python-on-whales finds
and starts the buildx builders and reads their BuildKit versions (which decide named
build contexts); it is imported only then. Pushing a
`:tag` from a docker engine goes through the docker SDK, which takes the registry login
in the request's header.
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
class Target:
    """One engine of `engines=`: a docker context (`host`, its docker endpoint) or a buildx
    builder of another driver (`driver`), which has no docker engine of its own."""

    name: str
    host: str = ""
    driver: str = ""

    def __str__(self) -> str:
        where = self.host or f"buildx builder, driver {self.driver}"
        return f"engine {self.name} ({where})"


def buildkit_takes_named_contexts(version: str) -> bool:
    """Whether a BuildKit of `version` (as buildx shows it: "v0.13.2", "v0.8+unknown")
    takes named build contexts (`--build-context`, from 0.10 on); False when unknown."""
    found = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return found is not None and (int(found[1]), int(found[2])) >= (0, 10)


class Engines:
    """The engines of one run, and how many builds each has in flight (thread-safe)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._targets: dict[str, Target] = {}
        self._busy: dict[str, int] = dict.fromkeys(names, 0)
        self._down: set[str] = set()  # stopped answering during the run
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}
        self._named_contexts: dict[str, bool] = {}

    def check(self) -> None:
        """Before any work: each name is a docker context or a buildx builder, and each
        answers (a builder is started if it is not: `buildx inspect --bootstrap`)."""
        for name in self.names:
            self._targets[name] = self._find(name)

        def ping(target: Target) -> str | None:
            problem = self._problem(target)
            return f"{target} does not answer: {problem}" if problem else None

        with ThreadPoolExecutor(len(self._targets) or 1) as pool:
            problems = [problem for problem in pool.map(ping, self._targets.values()) if problem]
        if problems:
            raise EngineError("; ".join(problems))

    def _find(self, name: str) -> Target:
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
                raise EngineError(f"engine {name}: its docker context names no docker host")
            return Target(name, host=str(host))
        from python_on_whales import DockerClient
        from python_on_whales.exceptions import DockerException

        cli = DockerClient()
        with contextlib.suppress(DockerException):
            return Target(name, driver=cli.buildx.inspect(name).driver or "unknown")
        known: set[str] = set()
        for listing in (cli.context.list, cli.buildx.list):
            with contextlib.suppress(DockerException):
                known.update(item.name or "" for item in listing())
        raise EngineError(
            f"engines={','.join(self.names)}: no docker context or buildx builder named "
            f"{name!r} (there are: {', '.join(sorted(known)) or 'none'}); create one with "
            f"`docker context create {name} --docker host=ssh://user@machine` or `docker "
            f"buildx create --name {name} --driver kubernetes`"
        )

    def _problem(self, target: Target) -> str | None:
        """Why `target` does not answer now, or None if it does (a builder that is not
        running is started: `buildx inspect --bootstrap`)."""
        if target.host:
            try:
                self.engine(target.name).check()
            except PaiTasksError as exc:
                return str(exc)
            return None
        from python_on_whales import DockerClient
        from python_on_whales.exceptions import DockerException

        try:
            DockerClient().buildx.inspect(target.name, bootstrap=True)
        except DockerException as exc:
            said = [line for line in (exc.stderr or exc.stdout or "").splitlines() if line.strip()]
            return said[-1].strip() if said else "no answer"
        return None

    def mark_down(self, name: str) -> None:
        """Engine `name` stopped answering: later builds go to the others."""
        with self._lock:
            self._down.add(name)

    def engine(self, name: str) -> Engine:
        """The docker SDK's view of the docker engine of context `name` (pushes, pulls)."""
        with self._lock:
            if name not in self._engines:
                self._engines[name] = Engine(host=self._targets[name].host)
            return self._engines[name]

    def docker_engine(self, preferred: str | None = None) -> Engine | None:
        """A docker engine of `engines=`: `preferred`'s if it is a docker context, else
        the first context's; None when every engine is a buildx builder."""
        names = [name for name in (preferred, *self.names) if name in self._targets]
        return next((self.engine(name) for name in names if self._targets[name].host), None)

    def named_contexts(self, name: str) -> bool:
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
        """Hold the engine with the fewest builds in flight (the first such, in order),
        of those still answering."""
        with self._lock:
            alive = [name for name in self.names if name not in self._down]
            if not alive:
                raise EngineError(
                    f"no engine of engines={','.join(self.names)} answers any more"
                )
            name = min(alive, key=lambda candidate: self._busy[candidate])
            self._busy[name] += 1
        try:
            yield name
        finally:
            with self._lock:
                self._busy[name] -= 1

    def build(self, name: str, request: BuildRequest, on_line: LineSink | None = None) -> str:
        """Build `request` on engine `name` and push it from there under its tags
        (buildx); return the digest buildx's metadata file gives."""
        sink = Tail(on_line, TAIL_LINES)

        target = self._targets[name]
        with tempfile.TemporaryDirectory(prefix="paitasks-build-") as folder:
            metadata = Path(folder) / "metadata.json"
            command, environment = buildx_command(
                request, metadata=metadata, context=name if target.host else None,
                builder=None if target.host else name,
            )
            code = run_cli(command, sink, environment)
            if code != 0:
                gone = ""
                if self._problem(target):
                    self.mark_down(name)
                    gone = f"; engine {name} no longer answers"
                raise build_failed(request, f"on engine {name}", f"exit {code}{gone}", sink.lines,
                                   command, code)
            try:
                digest = json.loads(metadata.read_text())["containerimage.digest"]
            except (OSError, ValueError, KeyError):
                raise EngineError(
                    f"building image {request.tag} on engine {name}: buildx wrote no digest"
                ) from None
        return str(digest)
