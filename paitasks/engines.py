"""Several engines (`engines=NAME,...`): docker contexts that build the run's images.

Each build goes to the engine with the fewest builds in flight (doit's `-n` bounds them
all), and is pushed from that engine to the registry under the image's fingerprint tag
(a cache entry, not a publication: `:tag` moves only in `push`, once every image has
built). The build's metadata file gives the digest. Tree bases come from the registry by
digest (actions.py), so any engine can build any image; nothing is loaded into this
machine's engine.

python-on-whales drives the builds there (buildx builds with push and a metadata file
through `DockerClient(context=...)`), imported only in runs that build; a build's
arguments are on the buildx command line there. Pushing a `:tag` from an engine goes
through the docker SDK, which takes the registry login in the request's header.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from paitasks.engine import TAIL_LINES, Engine, run_cli
from paitasks.errors import EngineError, PaiTasksError
from paitasks.streaming import LineSink


@dataclass(frozen=True)
class Target:
    """One engine of `engines=`: a docker context and its endpoint."""

    name: str
    host: str


class Engines:
    """The engines of one run, and how many builds each has in flight (thread-safe)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._targets: dict[str, Target] = {}
        self._busy: dict[str, int] = dict.fromkeys(names, 0)
        self._down: set[str] = set()  # stopped answering during the run
        self._lock = threading.Lock()
        self._engines: dict[str, Engine] = {}

    def check(self) -> None:
        """Before any work: each name is a docker context, and each engine answers.
        (The docker CLI reads the contexts: python-on-whales is loaded only to build.)"""
        for name in self.names:
            lines: list[str] = []
            command = ["docker", "context", "inspect", name, "--format", "{{json .Endpoints}}"]
            if run_cli(command, lines.append) != 0:
                listed: list[str] = []
                run_cli(["docker", "context", "ls", "--format", "{{.Name}}"], listed.append)
                known = ", ".join(sorted(line.strip() for line in listed if line.strip()))
                raise EngineError(
                    f"engines={','.join(self.names)}: no docker context named {name!r} "
                    f"(there are: {known or 'none'}); create one with `docker context create "
                    f"{name} --docker host=ssh://user@machine`"
                )
            try:
                host = json.loads("".join(lines))["docker"]["Host"]
            except (ValueError, KeyError, TypeError):
                host = ""
            if not host:
                raise EngineError(f"engine {name}: its docker context names no docker host")
            self._targets[name] = Target(name, str(host))

        def ping(target: Target) -> str | None:
            try:
                self.engine(target.name).check()
            except PaiTasksError as exc:
                return f"engine {target.name} ({target.host}) does not answer: {exc}"
            return None

        with ThreadPoolExecutor(len(self._targets) or 1) as pool:
            problems = [problem for problem in pool.map(ping, self._targets.values()) if problem]
        if problems:
            raise EngineError("; ".join(problems))

    def mark_down(self, name: str) -> None:
        """Engine `name` stopped answering: later builds go to the others."""
        with self._lock:
            self._down.add(name)

    def _answers(self, name: str) -> bool:
        try:
            self.engine(name).check()
        except PaiTasksError:
            return False
        return True

    def engine(self, name: str) -> Engine:
        """The docker SDK's view of one engine (for pushes and pulls there)."""
        with self._lock:
            if name not in self._engines:
                self._engines[name] = Engine(host=self._targets[name].host)
            return self._engines[name]

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

    def build(
        self,
        name: str,
        *,
        tag: str,
        dockerfile: Path,
        context: Path,
        labels: Mapping[str, str],
        build_args: Mapping[str, str],
        platform: str | None,
        network: str | None,
        cache_from: tuple[str, ...],
        contexts: Mapping[str, str] | None = None,
        on_line: LineSink | None = None,
    ) -> str:
        """Build on engine `name` and push the image there as `tag`; return its digest."""
        from python_on_whales import DockerClient
        from python_on_whales.exceptions import DockerException

        tail: deque[str] = deque(maxlen=TAIL_LINES)
        with tempfile.TemporaryDirectory(prefix="paitasks-build-") as folder:
            metadata = Path(folder) / "metadata.json"
            try:
                lines = DockerClient(context=name).buildx.build(
                    context,
                    file=dockerfile,
                    tags=[tag],
                    labels=dict(labels),
                    build_args=dict(build_args),
                    build_contexts=dict(contexts or {}),
                    platforms=[platform] if platform else None,
                    network=network,
                    cache_from=[{"type": "registry", "ref": ref} for ref in cache_from] or None,
                    cache_to={"type": "inline"},
                    push=True,
                    provenance=False,
                    metadata_file=metadata,
                    progress="plain",
                    stream_logs=True,
                )
                assert isinstance(lines, Iterator)  # stream_logs=True: its output, line by line
                for line in lines:
                    tail.append(line.rstrip("\n"))
                    if on_line is not None:
                        on_line(line.rstrip("\n"))
            except DockerException as exc:
                last = "\n".join(f"  | {line}" for line in tail)
                gone = ""
                if not self._answers(name):
                    self.mark_down(name)
                    gone = f" (engine {name} no longer answers)"
                raise EngineError(
                    f"building image {tag} on engine {name} failed (exit {exc.return_code})"
                    f"{gone}; last output lines:\n{last}",
                    [str(part) for part in exc.docker_command],
                    exc.return_code,
                    "\n".join(tail),
                ) from None
            try:
                digest = json.loads(metadata.read_text())["containerimage.digest"]
            except (OSError, ValueError, KeyError):
                raise EngineError(
                    f"building image {tag} on engine {name}: buildx wrote no digest"
                ) from None
        return str(digest)
