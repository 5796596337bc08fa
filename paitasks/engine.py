"""Every call paitasks makes to one Docker engine: builds (buildx, run as its own
program through `run_cli` with build arg values in its environment; or the classic
builder through the API), the image listing, pulls and pushes. The routes it takes and
why are in docs/architecture.md ("One route per job"): the docker SDK, its errors made
EngineErrors in `sdk` only; two reads over the engine's socket with the standard library,
so a run that builds nothing never imports the SDK. Every failure is an EngineError that
names the image and shows the last output lines.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import ipaddress
import json
import math
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from paitasks import reference as references
from paitasks import retries
from paitasks.disk import read_json
from paitasks.errors import EngineError, RegistryError
from paitasks.streaming import LineSink, StartError, Tail, run_streaming

if TYPE_CHECKING:
    import docker

TAIL_LINES = 40
PLUGIN_FOLDERS = (  # where the docker CLI looks for plugins, after the user's own
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)
# Failures worth another try: the network or the registry hiccuped (dockerd's own words
# for a 429, a 5xx, a reset). Refused logins and rejected manifests are final.
LAYER_DONE = ("Pushed", "Layer already exists")  # a push's word for a layer now there
# What BuildKit and dockerd say when a build's request to a registry failed (a base by
# digest, the layer cache, a builders= push), as against a failure of the build itself.
REGISTRY_WORK = (
    "/v2/", "failed to push", "unexpected status", "failed to resolve source metadata",
    "failed to copy", "failed to fetch", "failed to authorize", "error pulling",
    "pulling from host", "failed with status code",
)
# Environment variables the docker CLI reads itself: a build arg of such a name must not
# replace the CLI's own value.
CLI_ENVIRONMENT = frozenset({"PATH", "HOME", "TMPDIR"})
CLI_ENVIRONMENT_PREFIXES = ("DOCKER_", "BUILDX_", "BUILDKIT_", "XDG_")
START_HINT = "start one with `scripts/dev-engine up`, or point DOCKER_HOST at a running engine"


@dataclass(frozen=True)
class LocalImage:
    """What the engine holds under one `name:latest` tag."""

    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    repo_digests: tuple[str, ...] = ()  # "registry/namespace/name@sha256:..." once pushed


@dataclass(frozen=True)
class BuildRequest:
    """One image build, wherever it is made: by this engine (buildx or the classic
    builder) or by a builder of `builders=` (buildx, pushed from there)."""

    tags: tuple[str, ...]  # the first names the image in messages
    dockerfile: Path
    context: Path
    labels: Mapping[str, str] = field(default_factory=dict)
    # Values go to the build tool through its environment, never on a command line.
    build_args: Mapping[str, str] = field(default_factory=dict)
    platform: str | None = None
    network: str | None = "host"  # the build's network mode; None: the engine's
    tool: str = "buildx"  # the build tool: one of settings.BUILD_TOOLS
    # Registry images whose inline layer cache to reuse.
    cache_from: tuple[str, ...] = ()
    # Write BuildKit's cache metadata into the image (inline cache), so that a build
    # elsewhere can reuse its layers once it is in a registry.
    inline_cache: bool = False
    # Named build contexts (BuildKit 0.10+): an image name -> what stands for it.
    named_contexts: Mapping[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.tags[0]


class Engine:
    """A Docker engine reached from this process (safe to share between threads)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host  # a docker endpoint (unix://, tcp://, ssh://); None: DOCKER_HOST
        self._version: str | None = None
        self._info: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._clients = threading.local()  # .by_host: {DOCKER_HOST: client}, per thread

    # -- connection -------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """This Engine's SDK client for the calling thread (requests sessions are not
        meant to be shared between threads) and the current DOCKER_HOST."""
        import docker

        clients: dict[str, docker.DockerClient] = vars(self._clients).setdefault("by_host", {})
        host = self.host or os.environ.get("DOCKER_HOST", "")
        client = clients.get(host)
        if client is None:

            def connect() -> docker.DockerClient:
                if self.host:
                    made = docker.DockerClient(
                        base_url=self.host, timeout=60, use_ssh_client=self.host.startswith("ssh:")
                    )
                else:
                    made = docker.from_env(timeout=60)
                made.ping()
                return made

            client = sdk("", connect, explain=lambda _, exc: (
                f"cannot reach the Docker engine ({_short(exc)}); {START_HINT}"))
            clients[host] = client
        return client

    def check(self) -> None:
        """Fail early, within seconds, when no engine answers."""
        if _api_get("/_ping", self.host) is None:
            _ = self.client

    def takes_named_contexts(self, tool: str) -> bool:
        """Whether builds here with `tool` take named build contexts (`--build-context`):
        buildx on a dockerd of 23.0 or later, whose BuildKit is 0.10 or later."""
        if tool != "buildx":
            return False
        with self._lock:
            if self._version is None:
                found = _api_get("/version", self.host)
                if found is None:
                    found = self.client.version()
                self._version = str((found or {}).get("Version", ""))
            return dockerd_takes_named_contexts(self._version)

    # -- images -----------------------------------------------------------------------

    def local_images(self) -> dict[str, LocalImage]:
        """Every tagged image in the engine by `name:tag`, in one API call.

        `name:latest` is also listed under the bare name, the way the tree names images.
        """
        listing = _api_get("/images/json", self.host)
        if listing is None:
            listing = sdk("cannot list images", lambda: self.client.api.images())
        if not isinstance(listing, list):
            raise EngineError(f"cannot list images: the engine answered {listing!r:.200}")
        found: dict[str, LocalImage] = {}
        for entry in listing:
            image = LocalImage(
                entry["Id"],
                dict(entry.get("Labels") or {}),
                tuple(entry.get("RepoDigests") or ()),
            )
            for tag in entry.get("RepoTags") or ():
                if tag == "<none>:<none>":
                    continue
                found[tag] = image
                name, _, version = tag.rpartition(":")
                if version == "latest" and name:
                    found[name] = image
        return found

    def image(self, name: str) -> LocalImage | None:
        """The image tagged `name` (`:latest`), or None."""
        path = f"/images/{urllib.parse.quote(name, safe='')}/json"
        try:
            attrs = _api_get(path, self.host, missing_ok=True)
        except EngineError as exc:
            raise EngineError(f"cannot inspect image {name}: {exc}") from None
        if attrs is _MISSING:
            return None
        if attrs is None:
            attrs = sdk(f"cannot inspect image {name}", self._inspect(name), missing=None)
            if attrs is None:
                return None
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        return LocalImage(attrs["Id"], dict(labels), tuple(attrs.get("RepoDigests") or ()))

    def _inspect(self, name: str) -> Callable[[], Any]:
        return functools.partial(self.client.api.inspect_image, name)

    def load(self, archive: IO[bytes], name: str) -> None:
        """Load a `docker save` archive (of image `name`, for messages) into this engine,
        streamed from `archive`."""
        def call() -> None:
            answer = self.client.api.load_image(archive, quiet=True)  # type: ignore[no-untyped-call]
            try:
                errors = [chunk["error"] for chunk in answer
                          if isinstance(chunk, dict) and chunk.get("error")]
            except _stream_errors() as exc:  # the answer broke off mid-stream
                errors = [_short(exc)]
            if errors:
                raise EngineError(f"cannot load image {name}: {errors[-1]}")

        sdk(f"cannot load image {name}", call)

    def layout(self, name: str) -> tuple[str, int, tuple[str, ...]]:
        """Image `name`'s id, size in bytes and layers (their diff ids, bottom first)."""
        attrs = sdk(f"cannot inspect image {name}", self._inspect(name))
        layers = tuple(str(layer) for layer in (attrs.get("RootFS") or {}).get("Layers") or ())
        return str(attrs["Id"]), int(attrs.get("Size") or 0), layers

    def export(self, name: str) -> BinaryIO:
        """Image `name` as `docker save` writes it (a tar of its config and each layer,
        uncompressed), read as it comes from the engine."""
        chunks = sdk(f"cannot export image {name}", lambda: self.client.api.get_image(name))
        return io.BufferedReader(_ChunkReader(iter(chunks)), buffer_size=1 << 20)

    def remove_images(self, names: Iterable[str]) -> None:
        """Remove tags, ignoring the ones that are already gone."""
        for name in names:
            sdk(f"cannot remove image {name}",
                functools.partial(self.client.api.remove_image, name, force=True), missing=None)

    # -- registries -------------------------------------------------------------------

    def push(
        self,
        image: str,
        repository: str,
        tag: str,
        auth: Mapping[str, str] | None = None,
        on_line: LineSink | None = None,
        policy: retries.Policy | None = None,
        on_retry: Callable[[retries.Transient, float], None] | None = None,
    ) -> str:
        """Tag `image` as repository:tag and push it; return the registry's digest.

        Credentials travel to the engine in the API request's auth header, never on a
        command line or into a file. A try that fails transiently (the registry's 429 or
        5xx, a reset, no progress for `policy.stall` seconds) is tried again as the
        policy says (retries.py). dockerd retries a failed layer upload itself after
        5, 10, 15... seconds, and not a 429 at all: its retry is cut short and made by
        the policy instead. A push is many requests, so `policy.tries` bounds the tries
        in a row that get no further (no more layers in the registry). A retried push
        publishes the same digest: the engine compresses a layer the same way every
        time.
        """
        target = f"{repository}:{tag}"
        tagged = sdk(f"image {image}: cannot tag as {target}",
                     lambda: self.client.api.tag(image, repository, tag, force=True), missing=None)
        if tagged is None:  # NotFound (the SDK's own answer is a bool)
            raise EngineError(f"image {image}: not in the engine, build it first")
        policy = policy or retries.Policy()

        def told(failure: retries.Transient, wait: float) -> None:
            if on_line is not None:
                on_line(f"push of {target} failed ({failure.reason}); again in {wait:.1f}s")
            if on_retry is not None:
                on_retry(failure, wait)

        done: set[str] = set()  # the layers in the registry so far, over all tries
        try:
            return retries.call(
                policy,
                lambda: self._push_once(repository, tag, auth, on_line, policy.stall, done),
                told,
                progress=lambda: len(done),
            )
        except retries.Transient as failure:
            raise RegistryError(f"image {image}: pushing {target} {failure.gave_up}") from None

    def _push_once(
        self,
        repository: str,
        tag: str,
        auth: Mapping[str, str] | None,
        on_line: LineSink | None,
        stall: float,
        done: set[str],
    ) -> str:
        """One push; Transient for what another try may fix. The layers it finds in the
        registry, or puts there, are added to `done`."""
        digests: list[str] = []

        def watch(chunk: Mapping[str, Any]) -> None:
            status = str(chunk.get("status") or "")
            if status in LAYER_DONE or status.startswith("Mounted from"):
                done.add(str(chunk.get("id", "")))
            found = (chunk.get("aux") or {}).get("Digest")
            if found:
                digests.append(str(found))

        self._follow(
            lambda api: api.push(repository, tag=tag, stream=True, decode=True,
                                 auth_config=dict(auth or {}) or None),
            f"pushing {repository}:{tag}", stall, on_line, watch,
        )
        if not digests:
            raise EngineError(f"pushing {repository}:{tag}: the engine reported no digest")
        return digests[-1]

    def _follow(
        self,
        start: Callable[[Any], Iterable[Mapping[str, Any]]],
        what: str,
        stall: float,
        on_line: LineSink | None,
        watch: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        """Follow a push or pull the engine streams (`start(api)`): each status to
        `on_line`, each message to `watch`. Transient for what another try may fix: the
        registry's 429 or 5xx, a reset, no message for `stall` seconds, or dockerd
        about to wait before retrying an upload itself (cut short: the caller retries)."""
        try:
            with self._patience(stall) as api:
                for chunk in start(api):
                    if "error" in chunk:
                        error = str(chunk["error"]).strip()
                        if retries.transient_text(error):
                            raise retries.Transient(error, throttled=throttled(error))
                        raise EngineError(f"{what} failed: {error}")
                    status = str(chunk.get("status") or "")
                    if status.startswith("Retrying in"):
                        raise retries.Transient("the registry failed an upload")
                    if watch is not None:
                        watch(chunk)
                    if on_line is not None and status:
                        on_line(" ".join(str(chunk[k]) for k in ("id", "status") if chunk.get(k)))
        except retries.Transient:
            self._drop_client()  # so the engine gives the abandoned transfer up
            raise
        except _stream_errors() as exc:
            self._drop_client()
            if _timed_out(exc):
                raise retries.Transient(f"no progress for {stall:g} s (stalled)") from None
            if retries.transient_text(_short(exc)):
                raise retries.Transient(_short(exc)) from None
            raise EngineError(f"{what} failed: {_short(exc)}") from None

    @contextlib.contextmanager
    def _patience(self, stall: float) -> Iterator[Any]:
        """This thread's API client, giving up a read after `stall` seconds of silence."""
        api = self.client.api
        before = api.timeout
        api.timeout = math.ceil(stall)
        try:
            yield api
        finally:
            api.timeout = before

    def _drop_client(self) -> None:
        """Close this thread's client: its connections end, and with them what the
        engine was doing for it."""
        clients: dict[str, Any] = vars(self._clients).setdefault("by_host", {})
        host = self.host or os.environ.get("DOCKER_HOST", "")
        client = clients.pop(host, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def registry_digest(self, reference: str, auth: Mapping[str, str] | None = None) -> str | None:
        """The digest the registry serves for `reference`, or None when it serves none.

        The engine asks the registry (`GET /distribution/<name>/json`), so the registry
        is reached the way a pull reaches it: its `insecure-registries` (plain HTTP),
        certificates and mirrors apply. Without `auth`, the docker SDK sends what the
        docker CLI's config holds for that registry (`docker login`: auths, credsStore,
        credHelpers).
        """
        answer = sdk(
            reference,
            lambda: self.client.api.inspect_distribution(  # type: ignore[no-untyped-call]
                reference, auth_config=dict(auth) if auth else None
            ),
            missing=None, explain=registry_problem,
        )
        if answer is None:
            return None
        digest = (answer.get("Descriptor") or {}).get("digest")
        return str(digest) if digest else None

    def insecure_registry(self, host: str) -> bool:
        """Whether the engine reaches registry `host` over plain HTTP (its
        `insecure-registries`, 127.0.0.0/8 by default)."""
        return is_insecure(host, self._registry_config())

    def has_mirrors(self) -> bool:
        """Whether the engine pulls Docker Hub's images through registry mirrors."""
        return bool(self._registry_config().get("Mirrors"))

    def _registry_config(self) -> dict[str, Any]:
        """The engine's registry settings (`/info`), read once."""
        with self._lock:
            if self._info is None:
                info = _api_get("/info", self.host)
                if info is None:
                    info = self.client.info()
                self._info = dict((info or {}).get("RegistryConfig") or {})
            return self._info

    def pull(
        self, reference: str, auth: Mapping[str, str] | None = None,
        on_line: LineSink | None = None, policy: retries.Policy | None = None,
    ) -> LocalImage:
        """Pull `reference` (by digest) and return the image; transient failures are
        tried again as `policy` says."""
        policy = policy or retries.Policy()
        def once() -> None:
            self._follow(
                lambda api: api.pull(reference, stream=True, decode=True,
                                     auth_config=dict(auth) if auth else None),
                f"pulling {reference}", policy.stall, on_line,
            )

        try:
            retries.call(policy, once)
        except retries.Transient as failure:
            raise RegistryError(f"pulling {reference} {failure.gave_up}") from None
        pulled = self.image(reference)
        if pulled is None:
            raise EngineError(f"pulling {reference}: the engine reported success but has no image")
        return pulled

    def tag(self, image: str, name: str) -> None:
        """Tag `image` (a name or a reference by digest) as `name` (`repository:tag`)."""
        repository, _, tag = name.rpartition(":")
        sdk(f"cannot tag {image} as {name}",
            lambda: self.client.api.tag(image, repository, tag, force=True))

    # -- builds -----------------------------------------------------------------------

    def build(self, request: BuildRequest, on_line: LineSink | None = None) -> str:
        """Build `request` here (buildx, `--load`, or the classic builder through the
        API) and return the new image's id.

        With `cache_from` (registry images), BuildKit reuses their layers where it can;
        with `inline_cache` it writes its own cache metadata into the new image, so a
        build on another machine can reuse its layers in turn. The classic builder
        ignores both.
        """
        sink = Tail(on_line, TAIL_LINES)

        command: list[str] = []  # none for the classic builder: it is an API call
        if request.tool == "buildx":
            command, environment = buildx_command(request)
            code = run_cli(command, sink, environment)
        else:
            code = self._classic(request, sink)
        if code != 0:
            raise build_failed(request, f"from {request.dockerfile}",
                               f"{request.tool} builder, exit {code}", sink.lines, command, code)
        built = self.image(request.tag)
        if built is None:
            raise EngineError(
                f"image {request.tag}: the build reported success but no image is tagged"
            )
        return built.id

    def _classic(self, request: BuildRequest, sink: LineSink) -> int:
        dockerfile, context = request.dockerfile.resolve(), request.context.resolve()
        try:
            relative = dockerfile.relative_to(context)
        except ValueError:
            relative = dockerfile
        try:
            stream = self.client.api.build(
                path=str(request.context),
                dockerfile=str(relative),
                tag=request.tag,
                labels=dict(request.labels),
                buildargs=dict(request.build_args),
                network_mode=request.network,
                platform=request.platform,
                rm=True,
                forcerm=True,
                decode=True,
            )
            error: str | None = None
            for chunk in stream:
                if "stream" in chunk:
                    for line in str(chunk["stream"]).splitlines():
                        sink(line)
                if "error" in chunk:
                    error = str(chunk["error"]).strip()
                    sink(error)
        except _stream_errors() as exc:
            error = _short(exc)
            sink(error)
        return 0 if error is None else 1


def buildx_command(
    request: BuildRequest,
    *,
    metadata: Path | None = None,
    context: str | None = None,
    builder: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The buildx build command for `request`, and what to add to its environment.

    Here it loads the image into this engine; with `metadata` (a file buildx writes the
    pushed digest to) it pushes it from where it is built instead: on the engine of
    docker `context`, or on buildx `builder`. Each build arg goes as a bare
    `--build-arg KEY`, which the CLI looks up in its environment, so values stay off
    the command line (`ps` shows it to every user); names the CLI reads itself (PATH,
    DOCKER_HOST, proxies...) must keep the CLI's own values, so those few go as
    KEY=VALUE."""
    plugin = buildx_plugin()
    if context is not None:  # buildx takes a context's builder only as the current one
        command = ["docker", "--context", context, "buildx", "build"]
    else:
        command = [plugin, "build"] if plugin else ["docker", "buildx", "build"]
    if builder is not None:
        command += ["--builder", builder]
    command += ["--progress", "plain"]
    if metadata is None:
        command.append("--load")
    else:
        command += ["--push", "--provenance=false", "--metadata-file", str(metadata)]
    command += ["--file", str(request.dockerfile)]
    for tag in request.tags:
        command += ["--tag", tag]
    if request.network:
        command += ["--network", request.network]
    if request.platform:
        command += ["--platform", request.platform]
    for key, value in request.labels.items():
        command += ["--label", f"{key}={value}"]
    for image in request.cache_from:
        command += ["--cache-from", f"type=registry,ref={image}"]
    if request.inline_cache:
        command += ["--cache-to", "type=inline"]
    for name, source in request.named_contexts.items():
        command += ["--build-context", f"{name}={source}"]
    environment: dict[str, str] = {}
    if "BUILDX_GIT_INFO" not in os.environ:
        # Git details only go into provenance, which paitasks' images do not carry;
        # the default looks them up with a `git` process per build.
        environment["BUILDX_GIT_INFO"] = "false"
    for key, value in request.build_args.items():
        upper = key.upper()  # the CLI's own variables, and proxies, keep the CLI's values
        if (upper in CLI_ENVIRONMENT or upper.startswith(CLI_ENVIRONMENT_PREFIXES)
                or upper.endswith("_PROXY")):
            command += ["--build-arg", f"{key}={value}"]
        else:
            command += ["--build-arg", key]
            environment[key] = value
    command.append(str(request.context))
    return command, environment


def build_failed(
    request: BuildRequest, where: str, how: str, tail: Iterable[str], command: list[str],
    code: int,
) -> EngineError:
    """The error of a failed build: the image, where it was built (`from <dockerfile>`
    here, `on engine <name>`), how it ended, and the build's last output lines."""
    lines = list(tail)
    last = "\n".join(f"  | {line}" for line in lines)
    return EngineError(
        f"building image {request.tag} {where} failed ({how}); last output lines:\n{last}",
        command,
        code,
        "\n".join(lines),
    )


def build_tool(choice: str | None) -> str:
    """The build tool: the one chosen (`build_tool=`), else buildx when its plugin is
    installed (found without starting a process; a broken one fails its first build)."""
    return choice or ("buildx" if buildx_plugin() is not None else "classic")


def run_cli(
    command: list[str], on_line: LineSink, environment: Mapping[str, str] | None = None
) -> int:
    """Run a docker CLI command with `environment` added to this process's, passing each
    line of its output to `on_line` (see streaming.run_streaming); return its exit code.
    Ctrl-C reaches it too (same process group); a CLI that is missing is an EngineError."""
    env = {**os.environ, **environment} if environment else None
    try:
        return run_streaming(command, on_line, env=env)
    except StartError as exc:
        raise EngineError(f"cannot run {command[0]}: {exc.strerror}", command) from None



def buildx_plugin() -> str | None:
    """The buildx plugin's executable, looked up as the docker CLI does: its config
    folder's `cli-plugins`, then the config's `cliPluginsExtraDirs`, then the system's
    folders. None if there is none."""
    config = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    # A config.json the CLI itself could not read adds no folder (the CLI says why).
    extra = read_json(Path(config) / "config.json").get("cliPluginsExtraDirs")
    extra = [name for name in extra if isinstance(name, str)] if isinstance(extra, list) else []
    for folder in [os.path.join(config, "cli-plugins"), *extra, *PLUGIN_FOLDERS]:
        path = os.path.join(folder, "docker-buildx")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


_RAISE: Any = object()  # sdk(): a NotFound answer is an error like any other


def sdk(
    what: str,
    call: Callable[[], Any],
    *,
    missing: Any = _RAISE,
    explain: Callable[[str, BaseException], str] | None = None,
) -> Any:
    """`call()` into the docker SDK, the one place its errors become EngineErrors:
    "<what>: <the SDK's last line>", or `explain(what, exc)`; a NotFound answer returns
    `missing` when given."""
    import docker.errors

    try:
        return call()
    except docker.errors.NotFound as exc:
        if missing is not _RAISE:
            return missing
        failure: BaseException = exc
    except docker.errors.DockerException as exc:
        failure = exc
    raise EngineError(explain(what, failure) if explain else f"{what}: {_short(failure)}") from None


def _stream_errors() -> tuple[type[BaseException], ...]:
    """What reading an engine's streamed answer can raise besides its own errors: the
    docker SDK's, and requests' and urllib3's (a read that timed out, a dropped
    connection), which the SDK lets through mid-stream."""
    import docker.errors
    import requests.exceptions
    import urllib3.exceptions

    return (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    )


def _timed_out(exc: BaseException) -> bool:
    import requests.exceptions
    import urllib3.exceptions

    timeouts = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    return isinstance(exc, timeouts) or "timed out" in str(exc).lower()


def is_insecure(host: str, registry_config: Mapping[str, Any]) -> bool:
    """Whether dockerd reaches `host` over plain HTTP when HTTPS fails: a name in its
    `insecure-registries`, or an address in its insecure ranges (127.0.0.0/8 by default,
    also for a name that resolves there)."""
    index = (registry_config.get("IndexConfigs") or {}).get(host) or {}
    if index.get("Secure") is False:
        return True
    if host.startswith("["):  # "[::1]:5000"
        name = host[1 : host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except OSError:
        return False
    ranges = []
    for cidr in registry_config.get("InsecureRegistryCIDRs") or ():
        try:
            ranges.append(ipaddress.ip_network(cidr))
        except ValueError:
            continue
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            continue
        if any(ip in network for network in ranges):
            return True
    return False


def registry_hiccup(output: str) -> str | None:
    """The line of a failed build's output that says a registry request failed in a
    way another try may not (a reset, a 429, a 5xx): fetching a base or the layer cache,
    or pushing; None when the build failed for another reason."""
    for line in reversed(output.splitlines()):
        if any(marker in line for marker in REGISTRY_WORK) and retries.transient_text(line):
            return line.strip().removeprefix("| ").strip()
    return None


def throttled(error: str) -> bool:
    """Whether a registry said "too many requests" (dockerd's words for a 429)."""
    text = error.lower()
    return "429" in text or "too many requests" in text or "toomanyrequests" in text


class _ChunkReader(io.RawIOBase):
    """A file over an iterator of byte chunks (the docker SDK's streams)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            self._left = next(self._chunks, b"")
            if not self._left:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


_MISSING = object()  # what _api_get returns for a 404 when asked to


def _api_get(
    path: str, host: str | None = None, timeout: float = 60, missing_ok: bool = False
) -> Any:
    """GET `path` from the engine's API and decode it (JSON, else text); None where only
    the docker SDK knows how to connect (TLS settings, ssh://, named pipes)."""
    host = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH"):
        return None
    connection: http.client.HTTPConnection
    if host.startswith("unix://"):
        connection = _UnixConnection(host[len("unix://") :], timeout)
    elif host.startswith("tcp://"):
        address = host[len("tcp://") :].rstrip("/")
        connection = http.client.HTTPConnection(address, timeout=timeout)
    else:
        return None
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise EngineError(f"cannot reach the Docker engine ({exc}); {START_HINT}") from None
    finally:
        connection.close()
    if response.status == 404 and missing_ok:
        return _MISSING
    if response.status != 200:
        detail = body.decode("utf-8", "replace").strip()[:300]
        raise EngineError(f"the Docker engine answered GET {path} with {response.status}: {detail}")
    if (response.getheader("Content-Type") or "").startswith("application/json"):
        return json.loads(body)
    return body.decode("utf-8", "replace")


def dockerd_takes_named_contexts(version: str) -> bool:
    """Whether a dockerd of `version` ("20.10.24", "23.0.1", "26.1.0+dfsg") embeds a
    BuildKit with named build contexts (0.10, from dockerd 23.0 on)."""
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) >= 23


def registry_problem(reference: str, exc: BaseException) -> str:
    """One line on why the engine could not read `reference` from its registry."""
    text = _short(exc)
    explanation = str(getattr(exc, "explanation", "") or text)
    try:
        host = references.parse(reference).domain
    except references.ReferenceError:
        host = reference.split("/", 1)[0]
    lowered = explanation.lower()
    refused = ("unauthorized", "authentication required", "denied", "no basic auth credentials")
    if any(marker in lowered for marker in refused):
        return (
            f"registry {host}: access to {reference} refused ({explanation}); log in with "
            "`docker login`, or set username and password in the registry settings"
        )
    if "dial tcp" in lowered or "connection refused" in lowered or "no such host" in lowered:
        return f"registry {host} is unreachable: {explanation}"
    return f"registry {host}: cannot read {reference}: {explanation}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
