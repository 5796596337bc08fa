"""Test helpers that talk to the real engine and registry the way a user would."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.errors

from paitasks.tempfolders import RoundSpec

RESOURCES = Path(__file__).parent / "resources"
BUSYBOX = Path("/bin/busybox")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
# The registry is on loopback: never send its traffic through a proxy.
# No proxy; over HTTPS, no certificate check (a test registry's certificate is its own,
# as `curl -k`).
_opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),
)


@dataclass(frozen=True)
class RegistryAPI:
    """The registry's HTTP API (distribution v2), as a user's `curl` would see it."""

    address: str  # host:port
    auth: tuple[str, str] | None = None  # (username, password) for a registry with a login
    scheme: str = "http"

    def _request(self, method: str, path: str, accept: str | None = None) -> Any:
        request = urllib.request.Request(f"{self.scheme}://{self.address}{path}", method=method)
        if accept:
            request.add_header("Accept", accept)
        basic = ""
        if self.auth:
            basic = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
            request.add_header("Authorization", basic)
        try:
            return _opener.open(request, timeout=10)
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "")
            if exc.code != 401 or not challenge.lower().startswith("bearer"):
                raise
        # A token registry: a token for what it asked, with the login (as a user's tools do).
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm")
        token_request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(params)}")
        if basic:
            token_request.add_header("Authorization", basic)
        with _opener.open(token_request, timeout=10) as answer:
            token = json.load(answer)["token"]
        request.add_header("Authorization", f"Bearer {token}")
        return _opener.open(request, timeout=10)

    def ping(self) -> bool:
        try:
            with self._request("GET", "/v2/") as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The digest the registry serves for repository:tag, or None if it has none."""
        try:
            with self._request(
                "HEAD", f"/v2/{repository}/manifests/{tag}", MANIFEST_TYPES
            ) as response:
                return str(response.headers["Docker-Content-Digest"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        """The manifest (or index) the registry serves for repository:reference."""
        with self._request(
            "GET", f"/v2/{repository}/manifests/{reference}", MANIFEST_TYPES
        ) as response:
            return dict(json.load(response))

    def layers(self, repository: str, reference: str) -> list[str]:
        """The layer blob digests of repository:reference (of every image of an index);
        config blobs are not layers."""
        manifest = self.manifest(repository, reference)
        if "manifests" in manifest:  # an index: the layers of each image it lists
            return [
                digest
                for entry in manifest["manifests"]
                for digest in self.layers(repository, entry["digest"])
            ]
        return [layer["digest"] for layer in manifest.get("layers", [])]

    def raw_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest repository:reference serves, byte for byte, and its media type."""
        with self._request(
            "GET", f"/v2/{repository}/manifests/{reference}", MANIFEST_TYPES
        ) as response:
            return response.read(), str(response.headers["Content-Type"])

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> None:
        """Store `body` as repository:tag (a manifest copy, as `docker tag` + push would)."""
        request = urllib.request.Request(
            f"{self.scheme}://{self.address}/v2/{repository}/manifests/{tag}", data=body,
            method="PUT", headers={"Content-Type": media_type},
        )
        _opener.open(request, timeout=10).close()

    def blob(self, repository: str, digest: str) -> bytes:
        """The blob `digest` of `repository`, byte for byte."""
        with self._request("GET", f"/v2/{repository}/blobs/{digest}") as response:
            return bytes(response.read())

    def labels(self, repository: str, reference: str) -> dict[str, str]:
        """The labels of the image repository:reference serves (from its config blob)."""
        config = self.manifest(repository, reference)["config"]["digest"]
        with self._request("GET", f"/v2/{repository}/blobs/{config}") as response:
            return dict(json.load(response).get("config", {}).get("Labels") or {})

    def tags(self, repository: str) -> list[str]:
        try:
            with self._request("GET", f"/v2/{repository}/tags/list") as response:
                return list(json.load(response).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def repositories(self, prefix: str) -> list[str]:
        """Repositories whose name starts with `prefix` (the catalog is sorted by name)."""
        with self._request("GET", f"/v2/_catalog?n=1000&last={prefix}") as response:
            names = json.load(response).get("repositories") or []
        return [name for name in names if name.startswith(prefix)]

    def delete_repository(self, repository: str) -> None:
        """Delete every manifest of a repository (the registry runs with deletes enabled)."""
        for tag in self.tags(repository):
            digest = self.manifest_digest(repository, tag)
            if digest is None:
                continue
            try:
                self._request("DELETE", f"/v2/{repository}/manifests/{digest}").close()
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise


def busybox_context(folder: Path, dockerfile_name: str = "busybox.dockerfile") -> Path:
    """Lay out a FROM-scratch busybox build context in `folder`; return the dockerfile."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, folder / "busybox")
    dockerfile = folder / dockerfile_name
    shutil.copy2(RESOURCES / "busybox" / "busybox.dockerfile", dockerfile)
    return dockerfile


def hello_context(folder: Path, text: str) -> Path:
    """A FROM-scratch busybox build whose image holds `text` in /hello."""
    dockerfile = busybox_context(folder)
    dockerfile.write_text(dockerfile.read_text() + f"RUN echo {text} > /hello\n", encoding="utf-8")
    return dockerfile


REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "src-fixtures"
DODO = REPO / "dodo.py"
PAI_BUILD = str(Path(sys.executable).parent / "pai-build")  # the installed command
# The password of the test registries with a login: no output or file may show it.
PASSWORD = "s3cret-Pa55-do-not-leak"
_REF_CONTEXT = {
    # instruction -> what may stand right before an image name on its line
    "from": r"(?:^|(?<=[\s/]))",
    "arg": r"(?<==)",
    "copy": r"(?<=--from=)",
}


def prefixed_tree(source: Path, destination: Path, prefix: str) -> dict[str, str]:
    """Copy a component tree, renaming every image `x` to `<prefix>-x`.

    Image names are global in the engine; the prefix keeps each test's images apart from
    every other test's and from images the engine already holds. References to the
    tree's images are rewritten only in FROM, ARG and COPY lines. Returns old -> new.
    """
    shutil.copytree(source, destination, symlinks=True)
    dockerfiles = sorted(destination.glob("*/build/*.dockerfile"))
    names = {path.name.split(".")[0] for path in dockerfiles}
    renamed = {name: f"{prefix}-{name}" for name in names}
    alternatives = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    tokens = {
        keyword: re.compile(before + f"({alternatives})" + r"(?=$|[\s:@\"'])")
        for keyword, before in _REF_CONTEXT.items()
    }
    for path in dockerfiles:
        out = []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            words = line.split(None, 1)
            keyword = words[0].lower() if words else ""
            if keyword in tokens:
                line = tokens[keyword].sub(lambda m: renamed[m.group(1)], line)
            out.append(line)
        path.write_text("".join(out), encoding="utf-8")
        name, _, rest = path.name.partition(".")
        path.rename(path.with_name(f"{renamed[name]}.{rest}"))
    return renamed


def user_environ() -> dict[str, str]:
    """The environment a user runs doit or pai-build in: no PAI_* settings of the tests."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PAI_")}


def run_doit(
    *arguments: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m doit -f dodo.py ARGUMENTS` with this repository's dodo.py, as a user
    runs it: no PAI_* settings leak in from the test's own environment; `env` adds to it."""
    return subprocess.run(
        [sys.executable, "-m", "doit", "-f", str(DODO), *arguments],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**user_environ(), **(env or {})},
    )


def doit_on(
    src: Path, *arguments: str, cwd: Path | None = None, engine2: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m doit -f dodo.py ARGUMENTS src=SRC`, from the tree's root by default;
    on engine 2 (a fresh runner), with `env` added to the environment."""
    environ = {**(ENGINE2_ENV if engine2 else {}), **(env or {})}
    return run_doit(*arguments, f"src={src}", cwd=cwd or src.parent, env=environ)


def report(src: Path) -> dict[str, Any]:
    """The last run's `.paitasks/report.json` of the tree whose source folder is `src`."""
    return dict(json.loads((src.parent / ".paitasks" / "report.json").read_text()))


def statuses(src: Path) -> dict[str, str]:
    """Image -> its status in the last run's report.json."""
    return {name: entry["status"] for name, entry in report(src)["images"].items()}


def pai_build(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `pai-build ARGUMENTS`, run in `cwd` (with the test's environment)."""
    return subprocess.run(
        [PAI_BUILD, *arguments], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def write_config(folder: Path, domain: str, namespace: str, tag: str, **extra: str) -> Path:
    """A config folder: `folder/services-configuration.yaml` naming the registry at
    `domain` (host:port), its namespace and tag, and each `extra` key (username,
    password...) of `cluster.docker-registry`. Returns `folder`, for `config=`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "cluster:",
        "  docker-registry:",
        f"    namespace: {namespace}",
        f"    domain: '{domain}'",
        f"    tag: {tag}",
    ]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    (folder / "services-configuration.yaml").write_text("\n".join(lines) + "\n")
    return folder


def temp_folders(src: Path) -> list[Path]:
    """The temp folders (`dependency/`, `generated/`) left in the tree's components."""
    return [p for p in src.glob("*/*") if p.name in ("dependency", "generated")]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# One line of the registry's access log (Apache combined format), for example:
# 127.0.0.1 - - [01/Dec/2026:01:01:34 +0000] "GET /v2/ns/x/blobs/sha256:... HTTP/1.1" 200 1764 ...
_ACCESS_LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) HTTP/[\d.]+" (\d{3}) ')
_MANIFEST_PATH = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")
_BLOB_PATH = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
_UPLOAD_PATH = re.compile(r"^/v2/(.+)/blobs/uploads/")


@dataclass(frozen=True)
class Request:
    """One request the registry served, as its access log shows it."""

    method: str
    path: str  # without the query string
    query: str  # what follows `?`, or ""
    status: int


@dataclass(frozen=True)
class TokenAuth:
    """The distribution registry's `auth: token`: a Bearer token from `realm` (a token
    server, such as far_registry's), signed by the key of `certificate`."""

    realm: str
    certificate: Path
    service: str = "paitasks-test"
    issuer: str = "paitasks-test-issuer"


class LoggedRegistry:
    """Debian's `docker-registry serve CONFIG` on a free 127.0.0.1 port, with its own
    storage folder and log file, deletes enabled and, if `auth` is given, an htpasswd
    login (`deletes=False`: deletes refused, as many hosted registries do); with `tls`,
    over HTTPS with a certificate of its own that nothing trusts
    (dockerd still reaches it: to dockerd a registry on 127.0.0.0/8 is insecure, and it
    then skips the certificate check). Every request it serves is logged; `mark()` and
    `requests(since)` count them.

        with LoggedRegistry(tmp_path) as registry:
            mark = registry.mark()
            ...  # push, pull
            assert registry.manifest_puts(mark) == {"ns/x": ["v1"]}
    """

    def __init__(
        self, folder: Path, auth: tuple[str, str] | None = None, tls: bool = False,
        token: TokenAuth | None = None, deletes: bool = True,
    ) -> None:
        self.folder = folder
        self.deletes = deletes
        self.address = f"127.0.0.1:{free_port()}"
        self.api = RegistryAPI(self.address, auth, "https" if tls else "http")
        self.token = token
        self.log_path = folder / "registry.log"
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("docker-registry") is not None

    def start(self) -> None:
        import bcrypt  # a test dependency, needed only with a login

        self.folder.mkdir(parents=True, exist_ok=True)
        config = [
            "version: 0.1",
            "log: {level: info}",
            f"storage: {{filesystem: {{rootdirectory: '{self.folder / 'data'}'}}, "
            f"delete: {{enabled: {'true' if self.deletes else 'false'}}}}}",
            f"http: {{addr: '{self.address}'}}",
        ]
        if self.api.scheme == "https":
            certificate, key = self.folder / "registry.crt", self.folder / "registry.key"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", "/CN=paitasks test registry", "-addext", "subjectAltName=IP:127.0.0.1",
                 "-keyout", str(key), "-out", str(certificate)],
                check=True, capture_output=True, timeout=60,
            )
            config[-1] = (f"http: {{addr: '{self.address}', "
                          f"tls: {{certificate: '{certificate}', key: '{key}'}}}}")
        if self.token is not None:
            config.append(
                f"auth: {{token: {{realm: '{self.token.realm}', service: '{self.token.service}',"
                f" issuer: '{self.token.issuer}', rootcertbundle: '{self.token.certificate}'}}}}"
            )
        elif self.api.auth:
            username, password = self.api.auth
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
            (self.folder / "htpasswd").write_text(f"{username}:{hashed}\n")
            htpasswd = self.folder / "htpasswd"
            config.append(f"auth: {{htpasswd: {{realm: paitasks-test, path: '{htpasswd}'}}}}")
        (self.folder / "config.yml").write_text("\n".join(config) + "\n")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                ["docker-registry", "serve", str(self.folder / "config.yml")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"registry on {self.address} did not start:\n"
                                     + self.log_path.read_text(errors="replace"))
            time.sleep(0.05)

    def _answers(self) -> bool:
        """GET /v2/ gets an HTTP answer (200, or 401 when a login is required)."""
        try:
            with _opener.open(f"{self.api.scheme}://{self.address}/v2/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> LoggedRegistry:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- counting requests ---------------------------------------------------------

    def _settled_size(self) -> int:
        """The log's size once it has stopped growing for 0.1 s (at most 2 s): the
        registry writes a request's line right after serving it, so a request whose
        response the client has already received may still be a moment from the log."""
        size = self.log_path.stat().st_size
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.log_path.stat().st_size
            if now == size:
                break
            size = now
        return size

    def mark(self) -> int:
        """A position in the log: `requests(mark)` are those served after this call."""
        return self._settled_size()

    def requests(self, since: int = 0) -> list[Request]:
        """Every request served after `since` (a `mark()`), in the order served.
        Requests that completed before this call are all included."""
        end = self._settled_size()
        with open(self.log_path, "rb") as log:
            log.seek(since)
            text = log.read(end - since).decode(errors="replace")
        found = []
        for line in text.splitlines():
            match = _ACCESS_LINE.match(line)
            if match:
                method, target, status = match.groups()
                path, _, query = target.partition("?")
                found.append(Request(method, path, query, int(status)))
        return found

    def manifest_puts(self, since: int = 0) -> dict[str, list[str]]:
        """Repository -> the references (tags or digests) of its manifests pushed
        (successful PUTs) since `since`, in order. One `docker push` of a tag is one PUT."""
        puts: dict[str, list[str]] = {}
        for request in self.requests(since):
            match = _MANIFEST_PATH.match(request.path)
            if match and request.method == "PUT" and request.status == 201:
                puts.setdefault(match.group(1), []).append(match.group(2))
        return puts

    def blob_gets(self, since: int = 0, digests: Iterable[str] | None = None) -> list[str]:
        """Digests of the blobs downloaded (successful GETs) since `since`, in order, one
        per GET; only those in `digests` if given (`api.layers(...)` are an image's
        layers, so these GETs are its pulls: an engine fetches a layer it lacks once)."""
        wanted = None if digests is None else set(digests)
        found = []
        for request in self.requests(since):
            match = _BLOB_PATH.match(request.path)
            if not match or request.method != "GET" or request.status != 200:
                continue
            if wanted is None or match.group(2) in wanted:
                found.append(match.group(2))
        return found

    def blob_uploads(self, since: int = 0) -> list[Request]:
        """The upload requests (POST, PATCH, PUT under /blobs/uploads/) since `since`.
        A cross-repository mount is a single POST with `mount=` in its query."""
        return [
            request
            for request in self.requests(since)
            if _UPLOAD_PATH.match(request.path) and request.method in ("POST", "PATCH", "PUT")
        ]

    def uploaded_blobs(self, since: int = 0) -> list[str]:
        """Digests of the blobs whose upload completed (PUT ...?digest=, 201) since `since`."""
        found = []
        for request in self.blob_uploads(since):
            if request.method == "PUT" and request.status == 201:
                for item in request.query.split("&"):
                    key, _, value = item.partition("=")
                    if key == "digest":
                        found.append(urllib.parse.unquote(value))
        return found


# -- engine 2, the "other machine" of scripts/dev-engine ---------------------------

CONTEXT = "paitasks-engine2"
# scripts/dev-engine's BuildKit daemon, a buildx builder of the remote driver: what a
# kubernetes or docker-container builder is to paitasks (no docker engine behind it).
BUILDKIT = "paitasks-buildkit"
ENGINE2_SOCKET = os.environ.get("PAITASKS_ENGINE2_SOCKET", "/var/run/paitasks-engine2.sock")
ENGINE2_HOST = f"unix://{ENGINE2_SOCKET}"
BUILDKIT_SOCKET = os.environ.get("PAITASKS_BUILDKIT_SOCKET", "/var/run/paitasks-buildkitd.sock")
# Run paitasks (or docker, docker-buildx, the docker SDK) against engine 2 as a fresh
# runner would: `run_doit(..., env=ENGINE2_ENV)`.
ENGINE2_ENV = {"DOCKER_HOST": ENGINE2_HOST}


def engine2(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`docker --context paitasks-engine2 ARGUMENTS`, as a user types it."""
    command = ["docker", "--context", CONTEXT, *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stderr.strip()}"
        )
    return result


def on_engine2(reference: str) -> bool:
    return engine2("image", "inspect", reference, check=False).returncode == 0


def engine2_images(prefix: str) -> dict[str, str]:
    """Engine 2's images whose name carries `prefix`: reference -> image ID, for every
    `repo:tag` and every `repo@sha256:...` (an image pulled by digest has no tag)."""
    listing = engine2("image", "ls", "--digests", "--no-trunc", "--format", "{{json .}}")
    images = {}
    for line in listing.stdout.splitlines():
        entry = json.loads(line)
        if prefix not in entry["Repository"]:
            continue
        if entry["Tag"] != "<none>":
            images[f"{entry['Repository']}:{entry['Tag']}"] = entry["ID"]
        if entry["Digest"] != "<none>":
            images[f"{entry['Repository']}@{entry['Digest']}"] = entry["ID"]
    return images


def clear_engine1(client: docker.DockerClient, prefix: str) -> None:
    """Remove engine 1's images whose name carries `prefix` (tags and digests: an image
    pulled by digest keeps `repo@sha256:...` once its tags are gone)."""
    references = {
        reference
        for entry in client.api.images()
        for reference in (*(entry.get("RepoTags") or ()), *(entry.get("RepoDigests") or ()))
        if prefix in reference
    }
    for reference in sorted(references):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_image(reference, force=True)


def clear_engine2(prefix: str) -> None:
    """Remove engine 2's images whose repository carries `prefix` (tags and digests)."""
    references = sorted(engine2_images(prefix))
    if references:
        engine2("rmi", "--force", *references, check=False)


def run_on_engine1(image: str, *command: str) -> str:
    """What `docker run --rm --network none IMAGE COMMAND` prints on engine 1 (the
    image's CMD without a command), stripped; the run must succeed."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, *command],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def run_on_engine2(image: str, *command: str) -> str:
    """The same on engine 2."""
    return engine2("run", "--rm", "--network", "none", image, *command).stdout.strip()


def run_on_engine1_busybox(image: str, path: str) -> str:
    """`cat PATH` in IMAGE on engine 1 through /bin/busybox (an image without a shell's
    entrypoint)."""
    return _busybox_cat([], image, path)


def run_on_engine2_busybox(image: str, path: str) -> str:
    """The same on engine 2."""
    return _busybox_cat(["--host", ENGINE2_ENV["DOCKER_HOST"]], image, path)


def _busybox_cat(host: list[str], image: str, path: str) -> str:
    result = subprocess.run(
        ["docker", *host, "run", "--rm", "--network", "none", "--entrypoint", "/bin/busybox",
         image, "cat", path],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def engine_events(host: str | None, since: float, until: float) -> list[dict[str, Any]]:
    """The events one engine reported between two `time.time()` values: `host` is a
    DOCKER_HOST such as ENGINE2_HOST, None for engine 1. Call it once `until` has passed
    (otherwise `docker events` waits for it). Each event is docker's JSON: `Type`
    ("image", "container", ...), `Action` ("pull", "push", "tag", "untag", "delete", ...),
    `id`, `Actor.Attributes`, `timeNano`."""
    command = ["docker", *(["--host", host] if host else []), "events"]
    command += ["--since", f"{since:.9f}", "--until", f"{until:.9f}", "--format", "{{json .}}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def image_actions(events: Iterable[dict[str, Any]], contains: str = "") -> list[tuple[str, str]]:
    """(action, name) of each image event whose name holds `contains`, in order. The name
    is the reference for `pull` and `push` (as typed), the new name for `tag`, but only the
    image ID for `untag` and `delete`: dockerd 20.10 names nothing else there. Engines are
    shared with other tests: filter on the test's prefix."""
    found = []
    for event in events:
        name = event.get("id", "")
        if event["Action"] == "tag":  # its id is the image ID; the new name is an attribute
            name = event["Actor"]["Attributes"].get("name", name)
        if event["Type"] == "image" and contains in name:
            found.append((event["Action"], name))
    return found


# -- a host name for 127.0.0.1 -----------------------------------------------------

# `scripts/dev-engine up` keeps it in /etc/hosts and in the engines' NO_PROXY.
REGISTRY_HOST_NAME = "paitasks-registry.test"


# -- an engine endpoint that can stop answering -------------------------------------

# A byte relay: accepts on unix socket argv[1], relays each connection both ways to unix
# socket argv[2] (HTTP upgrades for BuildKit's /session and /grpc are only bytes too), and
# appends the request line of each HTTP request a client starts to the log file argv[3].
_RELAY_SCRIPT = r"""
import os, socket, sys, threading
listen, target, log_path = sys.argv[1:4]
log = open(log_path, "a", buffering=1)
lock = threading.Lock()
METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"PRI ")  # PRI: HTTP/2

def pump(source, sink, watch):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            if watch and data.startswith(METHODS):
                with lock:
                    log.write(data.split(b"\r\n", 1)[0].decode(errors="replace") + "\n")
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (sink, source):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def serve(client):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(target)
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()
    pump(client, upstream, True)

if os.path.exists(listen):
    os.unlink(listen)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(listen)
server.listen(64)
with lock:
    log.write("listening\n")
while True:
    connection, _ = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
"""


class UnixRelay:
    """Its own process relaying a unix socket (`listen`) to another (`target`, an
    engine's socket): a stand-in for a remote engine's endpoint, which `stop()` makes
    stop answering at once (SIGKILL to the relay's pid: every relayed connection
    drops). `requests()` are the HTTP request lines clients sent through it."""

    def __init__(self, listen: Path, target: str, log: Path) -> None:
        if len(str(listen)) > 100:  # sun_path holds 108 bytes
            raise AssertionError(f"socket path too long for a unix socket: {listen}")
        self.listen = listen
        self.target = target
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        before = self.log.read_text().count("listening") if self.log.exists() else 0
        self._process = subprocess.Popen(
            [sys.executable, "-c", _RELAY_SCRIPT, str(self.listen), self.target,
             str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not (self.log.exists() and self.log.read_text().count("listening") > before):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the relay on {self.listen} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the relay (by its pid), so its socket stops answering."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        self._process = None

    def requests(self) -> list[str]:
        """Every HTTP request line relayed so far, e.g. `POST /session HTTP/1.1`."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if line != "listening"]

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float) -> bool:
        """Wait until `condition(self.requests())` holds; False after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self.requests()):
                return True
            time.sleep(0.02)
        return False


class DockerContext:
    """A docker context `name` whose docker endpoint is `host`, for a `with` block and
    removed afterwards (`docker context rm -f`), also when the block fails. Name it with
    the test's prefix.

        with DockerContext(f"{prefix}-relay", f"unix://{socket}") as context: ...
    """

    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self.host = host

    def __enter__(self) -> str:
        created = subprocess.run(
            ["docker", "context", "create", self.name, "--description", "paitasks test",
             "--docker", f"host={self.host}"],
            capture_output=True, text=True, timeout=60,
        )
        if created.returncode != 0:
            self.remove()
            raise AssertionError(f"docker context create {self.name} failed: {created.stderr}")
        return self.name

    def remove(self) -> None:
        subprocess.run(["docker", "context", "rm", "-f", self.name],
                       capture_output=True, text=True, timeout=60)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()


# -- git ----------------------------------------------------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def git(folder: Path, *arguments: str) -> str:
    """`git -C FOLDER ARGUMENTS` with a throwaway identity and no user config; its output."""
    done = subprocess.run(["git", "-C", str(folder), *arguments], capture_output=True,
                          text=True, check=True, env={**os.environ, **GIT_ENV})
    return done.stdout.strip()


# -- what a run reports --------------------------------------------------------------

# One line per finished task: "[ 3/12] done build-image:x on m1 1.2s".
FINISHED = re.compile(
    r"^\[\s*\d+/\d+\] (?P<status>.+?) (?P<task>[a-z-]+:\S+)(?: on \S+)?(?: [\d.]+s)?(?:: .*)?$",
    re.MULTILINE,
)


def finished(output: str) -> dict[str, str]:
    """Each task a run's output reports as finished, with its status."""
    return {match["task"]: match["status"] for match in FINISHED.finditer(output)}


def ran(output: str, task: str) -> bool:
    """Whether the run did `task` (its action ran: built, pushed, ...)."""
    return finished(output).get(task) in ("done", "pulled")


def skipped(output: str, task: str) -> bool:
    """Whether the run found `task` up to date (also in the registry)."""
    return finished(output).get(task, "").startswith("up to date")


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a run that must have succeeded (else its whole output, as the error)."""
    assert result.returncode == 0, output(result)
    return result.stdout


def summary_rows(stdout: str, images: list[str]) -> dict[str, str]:
    """Image -> its row of the console's summary table."""
    rows = {}
    for line in stdout.splitlines():
        first = line.split("  ", 1)[0]
        if first in images:
            rows[first] = line
    return rows


def image_of(reference: str) -> str:
    """The image name in a reference: `host:port/ns/name:tag` or `...@sha256:...` -> name."""
    name = reference.split("@", 1)[0]
    repository, colon, tag = name.rpartition(":")
    if colon and "/" not in tag:
        name = repository
    return name.rsplit("/", 1)[-1]


def fingerprint_tag(fingerprint: str) -> str:
    """The tag an image of that fingerprint is published under (the tests' own spelling
    of paitasks' rule, to check it against)."""
    return "paitasks-" + fingerprint.removeprefix("sha256:")


# --- component rounds (temp folders, hooks) ---------------------------------------------


def round_spec(root: Path, name: str, **kw: Any) -> RoundSpec:
    """The round of component `name` under `root/src`, its build folder made."""
    folder = root / "src" / name
    (folder / "build").mkdir(parents=True, exist_ok=True)
    return RoundSpec(name=name, folder=str(folder), **kw)


def round_chain(root: Path) -> tuple[RoundSpec, RoundSpec, RoundSpec]:
    """lib <- mid <- app, each copying the one before (copies nest)."""
    lib = round_spec(root, "lib")
    (Path(lib.folder) / "data").mkdir()
    (Path(lib.folder) / "data" / "a.txt").write_text("a")
    (Path(lib.folder) / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(Path(lib.folder) / "run.sh", 0o750)
    os.symlink("data/a.txt", Path(lib.folder) / "link")
    mid = round_spec(root, "mid", copies=(lib,))
    (Path(mid.folder) / "mid.txt").write_text("m")
    app = round_spec(root, "app", copies=(mid,))
    return lib, mid, app
