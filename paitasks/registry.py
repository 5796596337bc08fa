"""What the registry serves, asked through the engine, remembered for one run.

The registry is where built images live and are found: an image is published under its
`:tag` and under a fingerprint tag, `paitasks-<the 64 hex digits of its fingerprint>`,
so any runner finds the image built from the same inputs by asking for that tag, even
after `:tag` moved on to another build.

The engine is the authority on how a registry is reached (`Engine.registry_digest`:
plain HTTP for its insecure registries, its certificates and mirrors) and on docker's
own credentials, used unless the registry settings name a user. Asking it costs about
10 ms a question, so where the registry answers this process directly (HTTPS, or plain
HTTP where the engine treats the registry as insecure), a `HEAD` of the manifest is
sent instead (about 2 ms); anything unclear (a certificate Python does not trust, a
refused login, an odd answer) goes to the engine, whose answer or error stands. Answers
are kept for the run; many can be asked at once in the background (`prefetch`).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from paitasks.errors import PaiTasksError

if TYPE_CHECKING:
    from paitasks.config import RegistrySettings
    from paitasks.engine import Engine

FINGERPRINT_TAG = "paitasks-"  # + the fingerprint's hex digits
PREFETCH_THREADS = 8
TIMEOUT = 10.0
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DOCKER_HUB = ("docker.io", "index.docker.io")
DOCKER_HUB_API = "registry-1.docker.io"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def fingerprint_tag(fingerprint: str) -> str:
    """The tag an image built from inputs with this fingerprint is published under."""
    return FINGERPRINT_TAG + fingerprint.removeprefix("sha256:")


class RegistryView:
    """The digests the registry serves, asked once per reference per run (thread-safe)."""

    def __init__(self, settings: RegistrySettings, engine: Callable[[], Engine]) -> None:
        self.settings = settings
        self._engine = engine
        self._lock = threading.Lock()
        self._known: dict[str, str | None] = {}
        self._pending: dict[str, Future[str | None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._direct: dict[str, Direct | None] = {}  # host -> how to ask it directly
        self._probe_lock = threading.Lock()

    @property
    def auth(self) -> dict[str, str] | None:
        """The settings' credentials, if they name a user; else docker's own are used."""
        if self.settings.username and self.settings.password:
            return {"username": self.settings.username, "password": self.settings.password}
        return None

    def by_fingerprint(self, image: str, fingerprint: str) -> str:
        """`<registry>/<namespace>/<image>:paitasks-<hex>`."""
        return f"{self.settings.repository(image)}:{fingerprint_tag(fingerprint)}"

    def by_tag(self, image: str) -> str:
        return self.settings.image_name(image)

    def by_digest(self, image: str, digest: str) -> str:
        return f"{self.settings.repository(image)}@{digest}"

    def digest(self, reference: str) -> str | None:
        """What the registry serves for `reference`, None for nothing; EngineError when
        it cannot be asked (unreachable, refused)."""
        with self._lock:
            if reference in self._known:
                return self._known[reference]
            pending = self._pending.get(reference)
        if pending is not None:
            try:
                return pending.result()
            except PaiTasksError:
                pass  # ask again below, so the error is this caller's
        found = self._ask(reference)
        self.learn(reference, found)
        return found

    def retag(self, image: str, digest: str, tag: str) -> str | None:
        """Make `<image>:<tag>` serve the manifest `digest` in the registry itself (a
        manifest copy: no layer moves); its digest, or None where this process cannot
        do it directly (the caller then goes through an engine)."""
        host, _, rest = self.by_tag(image).partition("/")
        direct = self._direct_for(host)
        if direct is None:
            return None
        repository = _split(rest)[0]
        try:
            body, media_type = direct.manifest(repository, digest)
            served = direct.put_manifest(repository, tag, body, media_type)
        except Unsure:
            return None
        self.learn(f"{host}/{repository}:{tag}", served)
        return served

    def learn(self, reference: str, digest: str | None) -> None:
        """Remember what the registry serves now (after a push, say)."""
        with self._lock:
            self._known[reference] = digest
            self._pending.pop(reference, None)

    def prefetch(self, references: Iterable[str]) -> None:
        """Start asking for `references` in the background; `digest` waits for them."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PREFETCH_THREADS, "registry")
            for reference in references:
                if reference in self._known or reference in self._pending:
                    continue
                self._pending[reference] = self._pool.submit(self._prefetched, reference)

    def _ask(self, reference: str) -> str | None:
        """The settings' registry directly where it allows it; else, when unsure, and
        for any other registry (an external base), the engine."""
        host, _, rest = reference.partition("/")
        ours = host == self.settings.registry and bool(rest)
        if ours:
            direct = self._direct_for(host)
            if direct is not None:
                try:
                    return direct.digest(*_split(rest))
                except Unsure:
                    pass
        # The settings' login goes to their registry only; docker's own to any other.
        return self._engine().registry_digest(reference, self.auth if ours else None)

    def _direct_for(self, host: str) -> Direct | None:
        with self._probe_lock:  # one probe per host, whichever thread asks first
            if host not in self._direct:
                insecure = self._engine().insecure_registry(host)
                self._direct[host] = Direct.probe(host, insecure, self._credentials)
            return self._direct[host]

    def _credentials(self, host: str) -> tuple[str, str] | None:
        """The settings' login, else docker's own for `host` (docker login, helpers)."""
        if self.auth is not None:
            return self.auth["username"], self.auth["password"]
        return docker_credentials(host)

    def _prefetched(self, reference: str) -> str | None:
        found = self._ask(reference)
        with self._lock:
            self._known[reference] = found
        return found

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class Unsure(Exception):
    """The direct answer cannot be trusted: ask the engine."""


class Direct:
    """One registry asked over its HTTP API from this process, the way the engine
    reaches it (`scheme`); credentials go in headers only and are never shown."""

    def __init__(
        self, host: str, scheme: str, credentials: Callable[[str], tuple[str, str] | None]
    ) -> None:
        self.host = host
        self.scheme = scheme
        self._credentials = credentials
        self._lock = threading.Lock()
        self._authorization: dict[str, str] = {}  # repository -> Authorization header

    @classmethod
    def probe(
        cls, host: str, insecure: bool, credentials: Callable[[str], tuple[str, str] | None]
    ) -> Direct | None:
        """How to reach `host` directly: HTTPS with a certificate Python trusts, else
        plain HTTP where the engine treats the registry as insecure; None when neither
        answers like a registry (`/v2/` with 200 or 401)."""
        for scheme in ("https", "http") if insecure else ("https",):
            try:
                with _open(f"{scheme}://{_api_host(host)}/v2/", "GET", {}) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (OSError, ValueError):
                continue
            if status in (200, 401):
                return cls(host, scheme, credentials)
        return None

    def digest(self, repository: str, reference: str) -> str | None:
        """The digest served for repository:reference; None when there is none."""
        url = (
            f"{self.scheme}://{_api_host(self.host)}/v2/{repository}/manifests/"
            f"{urllib.parse.quote(reference, safe=':')}"
        )
        headers = {"Accept": MANIFEST_TYPES}
        with self._lock:
            known = self._authorization.get(repository)
        if known:
            headers["Authorization"] = known
        try:
            try:
                response = _open(url, "HEAD", headers)
            except urllib.error.HTTPError as exc:
                if exc.code != 401 or known:
                    raise
                headers["Authorization"] = self._authorize(exc.headers, repository)
                response = _open(url, "HEAD", headers)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise Unsure(f"HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise Unsure(str(exc)) from None
        with response:
            digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise Unsure("no digest in the answer")
        if "Authorization" in headers:
            with self._lock:
                self._authorization[repository] = headers["Authorization"]
        return str(digest)

    def manifest(self, repository: str, digest: str) -> tuple[bytes, str]:
        """The manifest `digest` of `repository`, as stored, and its media type."""
        url = f"{self.scheme}://{_api_host(self.host)}/v2/{repository}/manifests/{digest}"
        response = self._send(url, "GET", {"Accept": MANIFEST_TYPES}, repository)
        with response:
            body = response.read()
            media_type = response.headers.get("Content-Type", "")
        if not media_type:
            raise Unsure("no media type")
        return body, str(media_type)

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        """Store `body` as `repository:tag`; the registry's digest for it."""
        url = f"{self.scheme}://{_api_host(self.host)}/v2/{repository}/manifests/{tag}"
        response = self._send(url, "PUT", {"Content-Type": media_type}, repository, body)
        with response:
            digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise Unsure("no digest in the answer")
        return str(digest)

    def _send(
        self, url: str, method: str, headers: dict[str, str], repository: str,
        body: bytes | None = None,
    ) -> Any:
        """One request, authorised as the registry's challenge asks (a push needs more
        than the pull a question needed); anything else than success is Unsure."""
        with self._lock:
            known = self._authorization.get(repository)
        if known:
            headers = {**headers, "Authorization": known}
        for attempt in (1, 2):
            try:
                return _open(url, method, headers, body)
            except urllib.error.HTTPError as exc:
                if exc.code != 401 or attempt == 2:
                    raise Unsure(f"HTTP {exc.code}") from None
                try:
                    authorization = self._authorize(exc.headers, repository)
                except (OSError, ValueError):
                    raise Unsure("the registry's login failed") from None
                headers = {**headers, "Authorization": authorization}
            except (OSError, ValueError) as exc:
                raise Unsure(str(exc)) from None
        raise Unsure("not authorised")

    def _authorize(self, answer: Any, repository: str) -> str:
        """The Authorization header the registry's challenge asks for."""
        challenge = str(answer.get("WWW-Authenticate", ""))
        login = self._credentials(self.host)
        if challenge.lower().startswith("basic"):
            if login is None:
                raise Unsure("a login is needed")
            return "Basic " + _basic(*login)
        if not challenge.lower().startswith("bearer"):
            raise Unsure("an unknown challenge")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise Unsure("an unusable challenge")
        params.setdefault("scope", f"repository:{repository}:pull")
        headers = {"Authorization": "Basic " + _basic(*login)} if login else {}
        with _open(realm + "?" + urllib.parse.urlencode(params), "GET", headers) as response:
            body = json.load(response)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise Unsure("no token in the answer")
        return f"Bearer {token}"


def docker_credentials(host: str) -> tuple[str, str] | None:
    """What docker itself would send to `host`: `docker login`'s entry, a credential
    store or helper (the docker SDK reads them as the CLI does). None for none, or for
    an identity token, which only the engine knows how to use."""
    import docker.auth

    try:
        found = docker.auth.resolve_authconfig(docker.auth.load_config(), host)
    except Exception:  # a broken helper: the engine will say why
        return None
    username = (found or {}).get("Username") or (found or {}).get("username")
    if not found or not username:
        return None
    password = found.get("Password") or found.get("password")
    return (str(username), str(password)) if password else None


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


def _split(rest: str) -> tuple[str, str]:
    """`ns/image:tag` or `ns/image@sha256:...` -> (repository, tag or digest)."""
    if "@" in rest:
        repository, _, digest = rest.partition("@")
        return repository, digest
    repository, _, tag = rest.rpartition(":")
    return repository, tag


def _api_host(host: str) -> str:
    return DOCKER_HUB_API if host in DOCKER_HUB else host


def _open(url: str, method: str, headers: dict[str, str], body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    return urllib.request.urlopen(request, timeout=TIMEOUT)


def _basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
