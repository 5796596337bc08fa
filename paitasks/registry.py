"""What registries serve, asked from this process over their HTTP API, for one run.

The registry is where built images live and are found: an image is published under its
`:tag` and under a fingerprint tag, `paitasks-<the 64 hex digits of its fingerprint>`,
so any runner finds the image built from the same inputs by asking for that tag, even
after `:tag` moved on to another build.

A registry is usually far away (20-150 ms a round trip) and busy, so every question is
cheap only if it costs no round trip of its own:

- `RegistryView.prefetch` asks many questions at once (a run asks every question it can
  know when it starts), and `digest` reads the answer; each reference is asked once.
- `Client` is one registry host: one pool of keep-alive connections (urllib3), reached
  the way the engine reaches it (plain HTTP only where the engine treats the registry
  as insecure), with its login: Basic, or Bearer tokens
  fetched once per set of scopes (many repositories in one token request) and kept
  until they expire. Every request is retried by the run's policy (retries.py), and
  recorded in the `Journal` (the timeline's registry lane, the report's waits). Each
  manifest and config read or stored in the run is kept by its digest: read once.
- The engine is still asked (`Engine.registry_digest`) where this process cannot be
  sure (docs/architecture.md says where); its answer or error stands.

Credentials go in request headers only; no message, log or record shows them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from paitasks import reference as references
from paitasks import retries
from paitasks.disk import read_json, write_json
from paitasks.errors import PaiTasksError, RegistryError
from paitasks.failures import network_words
from paitasks.fingerprint import LABEL

if TYPE_CHECKING:
    from paitasks.config import RegistrySettings

FINGERPRINT_TAG = "paitasks-"  # + the fingerprint's hex digits
CONNECTIONS = 64  # requests in flight at once, per registry
READ_AHEAD = 8  # of which reading ahead what no check waits for yet
TOKEN_SCOPES = 25  # repositories per token request (the URL stays short)
TOKEN_MARGIN = 30.0  # seconds before a token's expiry when it is no longer used
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DOCKER_HUB = (references.DEFAULT_DOMAIN, references.LEGACY_DOMAIN)
CERTS_D = Path("/etc/docker/certs.d")  # dockerd's per-registry certificate authorities
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_NEXT = re.compile(r'<([^>]+)>;\s*rel="?next"?')  # a Link header's next page


def fingerprint_tag(fingerprint: str) -> str:
    """The tag an image built from inputs with this fingerprint is published under."""
    return FINGERPRINT_TAG + fingerprint.removeprefix("sha256:")


class EngineSide(Protocol):
    """What the registry module needs of the engine: how it reaches registries, and an
    answer of its own where this process cannot be sure."""

    def insecure_registry(self, host: str) -> bool: ...

    def has_mirrors(self) -> bool: ...

    def registry_digest(
        self, reference: str, auth: Mapping[str, str] | None = None
    ) -> str | None: ...


# -- the record of a run's registry traffic ----------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One registry request (with its retries) as it went."""

    what: str  # "HEAD ns/x:v1", "token for 12 repositories", "push ns/x:paitasks-..."
    registry: str
    start: float  # time.time()
    end: float
    tries: int
    outcome: str  # the last status ("200", "404"), or what failed
    image: str | None = None  # the tree image it was about, if any


@dataclass
class Journal:
    """Every registry exchange of a run and each image's retries; thread-safe."""

    exchanges: list[Exchange] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)  # image -> retries
    waited: float = 0.0  # seconds doit's checks (its main thread) waited for answers
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def retried(self, image: str | None) -> None:
        if image is not None:
            with self._lock:
                self.retries[image] += 1

    def add_wait(self, seconds: float) -> None:
        """Count a wait for an answer if doit's checks waited it: they run one at a time
        in the main thread, so their waits add up to the run's time."""
        if threading.current_thread() is threading.main_thread():
            with self._lock:
                self.waited += seconds

    def busy(self) -> float:
        """Seconds during which at least one request was in flight."""
        with self._lock:
            spans = sorted((item.start, item.end) for item in self.exchanges)
        total, reach = 0.0, float("-inf")
        for start, end in spans:
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


# -- one registry host ---------------------------------------------------------------------


class Unsure(Exception):
    """This process cannot trust its own answer: ask the engine."""


class Unreachable(retries.Transient):
    """No connection could be made (refused, no such host, no answer to connect)."""


K = TypeVar("K")
V = TypeVar("V")
Scope = tuple[str, frozenset[str]]  # (repository, actions)


class Client:
    """One registry host asked over its HTTP API, the way the engine reaches it
    (`scheme`), with its login; thread-safe."""

    def __init__(
        self,
        host: str,
        scheme: str,
        login: Callable[[], tuple[str, str] | None],
        policy: retries.Policy,
        journal: Journal,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.scheme = scheme
        self.base = f"{scheme}://{api_host(host)}"
        self.policy = policy
        self.journal = journal
        self._tls = tls or _tls_context(host)  # also for a token server on HTTPS
        self._pools: dict[str, Any] = {}  # proxy ("" for none) -> urllib3 pool manager
        self._find_login: Callable[[], tuple[str, str] | None] | None = login  # asked once,
        self._login: tuple[str, str] | None = None  # when the registry first wants a login
        self._lock = threading.Lock()
        self._kind = ""  # "", "basic" or "bearer": what /v2/ asked for
        self._realm: dict[str, str] = {}  # Bearer: realm and service
        self._tokens: list[tuple[frozenset[Scope], str, float]] = []  # scopes, header, until
        self._fetching: dict[frozenset[Scope], Future[str]] = {}
        self.hinted = False  # made from an earlier run's hint, not probed
        # (repository, digest) -> a manifest (and its media type) or config seen this run
        self._content: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._reading: dict[tuple[str, str], Future[tuple[bytes, str]]] = {}  # being fetched

    @classmethod
    def probe(
        cls,
        host: str,
        insecure: bool,
        login: Callable[[], tuple[str, str] | None],
        policy: retries.Policy,
        journal: Journal,
    ) -> Client | None:
        """How to reach `host` directly: HTTPS (with a certificate Python trusts: the
        system's, or dockerd's `/etc/docker/certs.d/<host>/`), else plain HTTP where the
        engine treats the registry as insecure (both asked at once); None when neither
        answers like a registry (`/v2/` with 200 or 401). A registry that keeps failing
        is an error."""
        schemes = ("https", "http") if insecure else ("https",)
        tls = _tls_context(host)
        clients = [cls(host, scheme, login, policy, journal, tls) for scheme in schemes]
        with ThreadPoolExecutor(len(clients)) as pool:
            answers = [pool.submit(client._answers) for client in clients]
            found = [future.result() for future in answers]  # errors: HTTPS's first
        chosen = next((c for c, ok in zip(clients, found, strict=True) if ok), None)
        for client in clients:
            if client is not chosen:
                client.close()
        return chosen

    def _answers(self) -> bool:
        """Whether `/v2/` answers like a registry here (learning the login it wants)."""
        try:
            response = self._send(
                "GET", "/v2/", None, {}, what=f"GET /v2/ over {self.scheme.upper()}"
            )
        except Unsure:
            return False
        return response.status == 200 or (response.status == 401 and self._challenged(response))

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.clear()

    # -- questions --------------------------------------------------------------------

    def digest(self, repository: str, tag_or_digest: str, image: str | None = None) -> str | None:
        """The digest served for repository:tag (or @digest); None when there is none."""
        response = self._send(
            "HEAD", f"/v2/{repository}/manifests/{tag_or_digest}",
            (repository, frozenset({"pull"})), {"Accept": MANIFEST_TYPES},
            what=f"HEAD {repository}:{tag_or_digest}", image=image,
        )
        if response.status == 404:
            return None
        found = response.headers.get("Docker-Content-Digest")
        if response.status != 200 or not found:
            raise Unsure(f"HTTP {response.status}" if response.status != 200 else "no digest")
        return str(found)

    def served(
        self, repository: str, tag: str, image: str | None = None
    ) -> tuple[str, bytes, str] | None:
        """What repository:tag serves (its digest, manifest as stored and media type), in
        the one request a HEAD would cost; None when it serves nothing."""
        response = self._send(
            "GET", f"/v2/{repository}/manifests/{tag}", (repository, frozenset({"pull"})),
            {"Accept": MANIFEST_TYPES}, what=f"GET {repository}:{tag}", image=image,
        )
        if response.status == 404:
            return None
        found = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type", "")
        if response.status != 200 or not found or not media_type:
            raise Unsure(f"HTTP {response.status}" if response.status != 200 else "no digest")
        body = bytes(response.data)
        self._keep(repository, str(found), body, str(media_type))
        return str(found), body, str(media_type)

    def label(
        self, repository: str, manifest: bytes, name: str, image: str | None = None
    ) -> str | None:
        """Label `name` of the image `manifest` describes, read from its config."""
        labels = (self.config(repository, manifest, image)[0].get("config") or {}).get("Labels")
        value = (labels or {}).get(name)
        return str(value) if value is not None else None

    def config(
        self, repository: str, manifest: bytes, image: str | None = None
    ) -> tuple[dict[str, Any], int]:
        """The config of the image `manifest` describes (of an index: its first image of
        a real platform), and the bytes of the config and layers it names."""
        try:
            found = json.loads(manifest)
            if "manifests" in found:
                chosen = next(entry for entry in found["manifests"]
                              if (entry.get("platform") or {}).get("os") != "unknown")
                found = json.loads(self.manifest(repository, chosen["digest"], image)[0])
            parts = [found["config"], *found.get("layers", [])]
            config = json.loads(self.blob(repository, found["config"]["digest"], image))
            size = sum(int(part.get("size") or 0) for part in parts)
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
            raise Unsure("a manifest or config it cannot read") from None
        if not isinstance(config, dict):
            raise Unsure("a config it cannot read")
        return config, size

    def tags(self, repository: str, image: str | None = None) -> list[str]:
        """Every tag of `repository` (page after page, as the registry gives them)."""
        found: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n=1000"
        while path is not None:
            response = self._send("GET", path, (repository, frozenset({"pull"})), {},
                                  what=f"GET {repository} tags", image=image)
            if response.status == 404:
                return found
            if response.status != 200:
                raise Unsure(f"HTTP {response.status}")
            try:
                found.extend(str(tag) for tag in json.loads(response.data).get("tags") or ())
            except (ValueError, AttributeError):
                raise Unsure("a tag list it cannot read") from None
            link = _NEXT.search(response.headers.get("Link", ""))
            path = link[1] if link else None
        return found

    def delete(self, repository: str, reference: str, image: str | None = None) -> int:
        """Delete manifest `reference` (a tag or a digest) of `repository`; the status."""
        response = self._send(
            "DELETE", f"/v2/{repository}/manifests/{reference}",
            (repository, frozenset({"pull", "push", "delete"})), {},
            what=f"DELETE {repository}:{reference}", image=image,
        )
        return int(response.status)

    def manifest(self, repository: str, digest: str, image: str | None = None) -> tuple[bytes, str]:
        """The manifest `digest` of `repository`, as stored, and its media type."""
        def fetch() -> tuple[bytes, str]:
            response = self._send(
                "GET", f"/v2/{repository}/manifests/{digest}",
                (repository, frozenset({"pull"})), {"Accept": MANIFEST_TYPES},
                what=f"GET {repository}@{digest}", image=image,
            )
            media_type = response.headers.get("Content-Type", "")
            if response.status != 200 or not media_type:
                raise Unsure(f"HTTP {response.status}")
            self._keep(repository, digest, bytes(response.data), str(media_type))
            return bytes(response.data), str(media_type)

        return self._read(repository, digest, fetch)

    def put_manifest(
        self, repository: str, tag: str, body: bytes, media_type: str, image: str | None = None
    ) -> str:
        """Store `body` as `repository:tag`; the registry's digest for it."""
        response = self._send(
            "PUT", f"/v2/{repository}/manifests/{tag}", (repository, frozenset({"pull", "push"})),
            {"Content-Type": media_type}, body, what=f"PUT {repository}:{tag}", image=image,
        )
        found = response.headers.get("Docker-Content-Digest")
        if response.status not in (200, 201) or not found:
            raise Unsure(f"HTTP {response.status}")
        self._keep(repository, str(found), body, media_type)
        return str(found)

    def _keep(self, repository: str, digest: str, body: bytes, media_type: str = "") -> None:
        """Remember a manifest or config read or stored in this run: its digest names
        its content, so a second read needs no round trip (kept only if it matches)."""
        if digest == "sha256:" + hashlib.sha256(body).hexdigest():
            with self._lock:
                self._content[(repository, digest)] = (body, media_type)

    def _kept(self, repository: str, digest: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._content.get((repository, digest))

    def _read(
        self, repository: str, digest: str, fetch: Callable[[], tuple[bytes, str]]
    ) -> tuple[bytes, str]:
        """Content `digest` as kept, else fetched by one thread at a time: a second
        reader waits for the first (also while it waits for a 429's Retry-After)."""
        kept = self._kept(repository, digest)
        if kept is not None:
            return kept
        key = (repository, digest)
        # Fetched anew after an error, or when what came did not match its digest (called
        # under the lock, so it reads `_content` directly).
        return _one_at_a_time(self._lock, self._reading, key, fetch, lambda earlier: (
            earlier.done() and (earlier.exception() is not None or key not in self._content)
        ))

    def authorize(self, scopes: Iterable[Scope]) -> None:
        """Fetch one token for every scope not covered yet (Bearer registries), so that
        many requests about as many repositories share it."""
        if self._kind != "bearer":
            return
        wanted = frozenset(scope for scope in _merged(scopes) if self._covered(scope) is None)
        if wanted:
            self._token(wanted)

    def _covered(self, scope: Scope) -> str | None:
        """A token that covers `scope`: one kept, else one being fetched (waited for)."""
        found = self._cached(scope)
        if found is not None:
            return found
        repository, actions = scope
        with self._lock:
            pending = [future for scopes, future in self._fetching.items()
                       if not future.done()
                       and any(name == repository and actions <= granted
                               for name, granted in scopes)]
        for future in pending:
            with contextlib.suppress(PaiTasksError, Unsure):
                future.result()
        return self._cached(scope)

    # -- requests -----------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        scope: Scope | None,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        what: str,
        image: str | None = None,
    ) -> Any:
        """One request to the registry, authorised as it asks, retried while transient."""
        url = self.base + path
        return self._tried(lambda: self._authorized(method, url, headers, body, scope),
                           what, image)

    def _authorized(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
        scope: Scope | None, redirect: bool = False,
    ) -> Any:
        """One try, with the login the registry asks for: a 401 gets a token for exactly
        what it asked, and the request is sent once more."""
        response = self._once(method, url, {**headers, **self._auth(scope)}, body, redirect)
        challenge = response.headers.get("WWW-Authenticate", "")
        if (
            response.status == 401 and scope is not None and self._challenged(response)
            and self._kind == "bearer"
        ):
            asked = _scopes(dict(_CHALLENGE.findall(challenge)).get("scope", ""))
            self._token(asked or frozenset({scope}))
            response = self._once(method, url, {**headers, **self._auth(scope)}, body, redirect)
        return response

    # -- blobs (an image pushed from this process: publish.py) ----------------------------

    def blob(self, repository: str, digest: str, image: str | None = None) -> bytes:
        """Blob `digest` of `repository` (a small one: an image's config)."""
        url = f"{self.base}/v2/{repository}/blobs/{digest}"
        scope = (repository, frozenset({"pull"}))

        def fetch() -> tuple[bytes, str]:
            response = self._tried(  # a registry may send it from elsewhere (a redirect)
                lambda: self._authorized("GET", url, {}, None, scope, redirect=True),
                f"GET {repository}@{digest}", image,
            )
            if response.status != 200:
                raise Unsure(f"HTTP {response.status}")
            self._keep(repository, digest, bytes(response.data))
            return bytes(response.data), ""

        return self._read(repository, digest, fetch)[0]

    def mount(self, repository: str, digest: str, source: str, image: str | None = None) -> bool:
        """Make blob `digest` of repository `source` one of `repository`'s, without
        sending it (a cross-repository mount); False when the registry will not."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        response = self._send(
            "POST", f"/v2/{repository}/blobs/uploads/?{query}",
            (repository, frozenset({"pull", "push"})), {"Content-Length": "0"}, b"",
            what=f"mount {digest[:19]} from {source} into {repository}", image=image,
        )
        return bool(response.status == 201)

    def upload(self, repository: str, digest: str, body: bytes, image: str | None = None) -> None:
        """Send blob `digest` (`body`) to `repository`: an upload session, then its
        content in one request; a retry starts a new session."""
        scope = (repository, frozenset({"pull", "push"}))

        def attempt() -> Any:
            started = self._authorized(
                "POST", f"{self.base}/v2/{repository}/blobs/uploads/",
                {"Content-Length": "0"}, b"", scope,
            )
            location = started.headers.get("Location")
            if started.status != 202 or not location:
                return started
            url = urllib.parse.urljoin(self.base + "/", location)
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
            return self._authorized(
                "PUT", url, {"Content-Type": "application/octet-stream"}, body, scope
            )

        response = self._tried(attempt, f"upload {digest[:19]} to {repository}", image)
        if response.status != 201:
            raise Unsure(f"HTTP {response.status}")

    def _tried(self, attempt: Callable[[], Any], what: str, image: str | None = None) -> Any:
        """`attempt` as the policy says: a 429 or 5xx answer is transient too. Recorded
        in the journal; RegistryError once it gives up, Unsure for a problem another try
        cannot fix but the engine might (a certificate, an odd answer)."""
        tries, last = 0, ""

        def counted() -> Any:
            nonlocal tries, last
            tries += 1
            response = attempt()
            last = str(response.status)
            if retries.transient_status(response.status):
                wait = retries.retry_after(response.headers.get("Retry-After"))
                raise retries.Transient(f"HTTP {response.status}", wait, response.status == 429)
            return response

        start = time.time()
        try:
            response = retries.call(
                self.policy, counted, lambda failure, wait: self.journal.retried(image)
            )
        except retries.Transient as failure:
            self.journal.record(Exchange(what, self.host, start, time.time(), failure.tries,
                                         failure.reason, image))
            subject = f"image {image}: " if image else ""
            where = "is unreachable" if isinstance(failure, Unreachable) else "failed"
            raise RegistryError(
                f"{subject}registry {self.host} {where}: {what} {failure.gave_up}"
            ) from None
        except Unsure as exc:
            self.journal.record(Exchange(what, self.host, start, time.time(), tries,
                                         f"unsure: {exc}", image))
            raise
        self.journal.record(Exchange(what, self.host, start, time.time(), tries, last, image))
        return response

    def _once(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None,
        redirect: bool = False,
    ) -> Any:
        """One try, read whole: a connection refused or reset, or no byte for `stall`
        seconds, is transient; a certificate Python does not trust is Unsure. With
        `redirect`, redirects are followed (without the login, to another host)."""
        import urllib3
        import urllib3.exceptions

        stall = self.policy.stall
        follow = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5)
        try:
            return self._pool(url).request(
                method, url, headers=dict(headers), body=body,
                retries=follow if redirect else False, redirect=redirect,
                timeout=urllib3.Timeout(stall, stall),
            )
        except urllib3.exceptions.SSLError as exc:
            raise Unsure(f"TLS: {exc}") from None
        except urllib3.exceptions.NewConnectionError as exc:  # refused, no such host
            raise Unreachable(_network_reason(exc)) from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise Unreachable(f"no connection within {stall:g} s") from None
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            raise retries.Transient(f"no answer for {stall:g} s (stalled)") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # reset, closed early
            raise retries.Transient(_network_reason(exc)) from None

    def _pool(self, url: str) -> Any:
        """The pooled connections for `url` (keep-alive; a proxy of the environment's
        HTTP(S)_PROXY where NO_PROXY does not exempt the host, as docker's CLI does)."""
        import urllib.request

        import urllib3

        parts = urllib.parse.urlsplit(url)
        proxy = ""
        if not urllib.request.proxy_bypass(parts.hostname or ""):
            proxy = urllib.request.getproxies().get(parts.scheme, "")
        with self._lock:
            pool = self._pools.get(proxy)
            if pool is None:
                options: dict[str, Any] = {"maxsize": CONNECTIONS, "ssl_context": self._tls}
                pool = (urllib3.ProxyManager(proxy, **options) if proxy
                        else urllib3.PoolManager(**options))
                self._pools[proxy] = pool
            return pool

    def _challenged(self, response: Any) -> bool:
        """Learn the login the registry asks for from a 401; False for one this process
        cannot give (the engine may)."""
        challenge = response.headers.get("WWW-Authenticate", "")
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic" and self._credentials() is not None:
            self._kind = "basic"
            return True
        if kind == "bearer":
            params = dict(_CHALLENGE.findall(challenge))
            if params.get("realm", "").startswith(("https://", "http://")):
                with self._lock:
                    self._kind = "bearer"
                    self._realm = {"realm": params["realm"], "service": params.get("service", "")}
                return True
        return False

    def _credentials(self) -> tuple[str, str] | None:
        """The login for this registry, looked up when it first asks for one."""
        with self._lock:
            if self._find_login is not None:
                self._login, self._find_login = self._find_login(), None
            return self._login

    @property
    def wants_login(self) -> bool:
        return bool(self._kind)

    def hint(self) -> dict[str, str]:
        """How this registry was reached (no secret), for the next run's `from_hint`."""
        with self._lock:
            return {"scheme": self.scheme, "login": self._kind, **self._realm}

    @classmethod
    def from_hint(
        cls,
        host: str,
        hint: Mapping[str, str],
        login: Callable[[], tuple[str, str] | None],
        policy: retries.Policy,
        journal: Journal,
    ) -> Client:
        """A client that reaches `host` the way an earlier run found it did, without
        asking first (the caller probes again if it turns out wrong)."""
        client = cls(host, hint["scheme"], login, policy, journal)
        client.hinted = True
        if hint.get("login") in ("basic", "bearer"):
            client._kind = hint["login"]
        if client._kind == "bearer":
            client._realm = {"realm": hint.get("realm", ""), "service": hint.get("service", "")}
        return client

    def _auth(self, scope: Scope | None) -> dict[str, str]:
        if self._kind == "basic" and self._credentials() is not None:
            login = self._credentials()
            assert login is not None
            return {"Authorization": "Basic " + _basic(*login)}
        if self._kind == "bearer" and scope is not None:
            return {"Authorization": self._covered(scope) or self._token(frozenset({scope}))}
        return {}

    def _cached(self, scope: Scope) -> str | None:
        repository, actions = scope
        now = time.monotonic()
        with self._lock:
            for scopes, header, until in self._tokens:
                if until > now and any(
                    name == repository and actions <= granted for name, granted in scopes
                ):
                    return header
        return None

    def _token(self, scopes: frozenset[Scope]) -> str:
        """A Bearer token for `scopes`: one request, shared by the threads that need it
        at the same time; kept until shortly before it expires."""
        def fetch() -> str:
            header, lifetime = self._fetch_token(scopes)
            until = time.monotonic() + max(lifetime - min(TOKEN_MARGIN, lifetime / 10), 1.0)
            with self._lock:
                self._tokens.append((scopes, header, until))
            return header

        return _one_at_a_time(self._lock, self._fetching, scopes, fetch, Future.done)

    def _fetch_token(self, scopes: frozenset[Scope]) -> tuple[str, float]:
        """One request to the token server for every scope at once."""
        params = [("service", self._realm.get("service", ""))]
        for repository, actions in sorted(scopes, key=lambda item: item[0]):
            params.append(("scope", f"repository:{repository}:{','.join(sorted(actions))}"))
        headers = {}
        login = self._credentials()
        if login is not None:
            params.append(("account", login[0]))
            headers["Authorization"] = "Basic " + _basic(*login)
        url = f"{self._realm['realm']}?{urllib.parse.urlencode(params)}"
        what = f"token for {len(scopes)} repositor{'y' if len(scopes) == 1 else 'ies'}"
        response = self._tried(lambda: self._once("GET", url, headers), what)
        if response.status != 200:
            raise Unsure(f"the token server answered {response.status}")
        try:
            answer = json.loads(response.data)
            token = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or 60)
        except (ValueError, TypeError, AttributeError):
            raise Unsure("the token server's answer is not a token") from None
        if not token:
            raise Unsure("no token in the answer")
        return f"Bearer {token}", lifetime


# -- the run's view of its registry ------------------------------------------------------


class RegistryView:
    """What the registries serve, asked once per reference per run (thread-safe): the
    settings' registry (ours), and any other a dockerfile names (external bases)."""

    def __init__(
        self,
        settings: RegistrySettings,
        engine: Callable[[], EngineSide],
        policy: retries.Policy | None = None,
        hints: Path | None = None,
        sent: Path | None = None,
        labels: Path | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self.policy = policy or retries.Policy()
        self.journal = Journal()
        self._lock = threading.Lock()
        self._known: dict[str, str | None] = {}
        self._pending: dict[str, Future[str | None]] = {}
        self._pools: dict[bool, ThreadPoolExecutor] = {}  # background? -> its threads
        self._clients: dict[str, Future[Client | None]] = {}  # host -> how to ask it
        self._images: dict[str, str] = {}  # reference -> the tree image it is about
        self._standing: set[Scope] = set()  # the login every token request asks for
        self._hints_file = hints  # how each registry was reached in the last run
        self._hints: dict[str, dict[str, str]] | None = None
        self._sent_file = sent  # the digests images were sent from here under
        self._sent: dict[str, str] | None = None
        self._sent_changed = False
        # Manifest digest -> the fingerprint label of its image, as checked (a digest
        # names its content: true for ever); kept in `labels` for later runs.
        self._labels_file = labels
        self._labels: dict[str, str] | None = None
        self._labels_changed = False
        self._reading: dict[str, Future[str]] = {}  # digest -> its label, being read
        self._ahead: dict[str, Future[None]] = {}  # digest -> its label's read ahead
        self._tagged: dict[tuple[str, str], str] = {}  # (image, fingerprint) -> `find`
        # The fingerprint tags whose image carries another fingerprint: ignored (why).
        self.distrusted: dict[str, str] = {}  # image -> why

    @property
    def auth(self) -> dict[str, str] | None:
        """The settings' credentials, if they name a user; else docker's own are used."""
        if self.settings.username and self.settings.password:
            return {"username": self.settings.username, "password": self.settings.password}
        return None

    # -- names --------------------------------------------------------------------------

    def by_fingerprint(self, image: str, fingerprint: str) -> str:
        """`<registry>/<namespace>/<image>:paitasks-<hex>`."""
        return self._named(f"{self.settings.repository(image)}:{fingerprint_tag(fingerprint)}",
                           image)

    def by_tag(self, image: str) -> str:
        return self._named(self.settings.image_name(image), image)

    def by_digest(self, image: str, digest: str) -> str:
        return self._named(f"{self.settings.repository(image)}@{digest}", image)

    def repository(self, image: str) -> str:
        """`<namespace>/<image>`: the image's repository in the registry's API."""
        return self._parts(self.by_tag(image))[1]

    def client(self) -> Client | None:
        """How this process reaches the settings' registry; None: only through an
        engine."""
        return self._client(self.settings.host)

    def _named(self, reference: str, image: str) -> str:
        with self._lock:
            self._images[reference] = image
        return reference

    # -- answers ------------------------------------------------------------------------

    def digest(self, reference: str) -> str | None:
        """What the registry serves for `reference`, None for nothing; a PaiTasksError
        when it cannot be asked (unreachable, refused, failing after every try)."""
        with self._lock:
            if reference in self._known:
                return self._known[reference]
            pending = self._pending.get(reference)
        if pending is not None:
            started = time.monotonic()
            try:
                return pending.result()
            except PaiTasksError:
                pass  # ask again below, so the error is this caller's
            finally:
                self.journal.add_wait(time.monotonic() - started)
        started = time.monotonic()
        try:
            found = self._ask(reference)
        finally:
            self.journal.add_wait(time.monotonic() - started)
        self.learn(reference, found)
        return found

    def answer(self, reference: str) -> tuple[bool, str | None]:
        """Whether the registry answered `reference` (waiting for the question if it is
        in flight), and what: never asks, so a background thread adds no request."""
        with self._lock:
            if reference in self._known:
                return True, self._known[reference]
            pending = self._pending.get(reference)
        if pending is None:
            return False, None
        try:
            return True, pending.result()
        except Exception:  # CancelledError too
            return False, None

    def find(self, image: str, fingerprint: str, ask: bool = True) -> str | None:
        """The digest of an image built from inputs `fingerprint` in the settings'
        registry, None for none. What `:tag` serves counts when its label says so and
        that is known without a new question (`:tag` asked when the run began, its
        label read, or being read, ahead): where little changed that is the image, so
        the check behind a hook costs no round trip. Else the fingerprint tag, asked if
        it was not (without `ask`: None)."""
        with self._lock:
            found = self._tagged.get((image, fingerprint))
        if found is None:
            found = self._served_by_tag(image, fingerprint, wait=True)
        if found is not None:
            with self._lock:
                self._tagged[(image, fingerprint)] = found  # one answer for the run
            return found
        reference = self.by_fingerprint(image, fingerprint)
        return self.digest(reference) if ask else self.answer(reference)[1]

    def tagged(self, image: str, fingerprint: str) -> bool:
        """Whether `:tag` is known now, without waiting, to serve an image of
        `fingerprint` (`find` will need no question)."""
        return self._served_by_tag(image, fingerprint, wait=False) is not None

    def _served_by_tag(self, image: str, fingerprint: str, wait: bool) -> str | None:
        reference = self.by_tag(image)
        with self._lock:
            known = reference in self._known
            digest = self._known.get(reference)
            pending = self._pending.get(reference)
        started = time.monotonic()
        try:
            if not known:
                if pending is None or not wait:
                    return None  # not asked: the fingerprint tag is the one question
                digest = pending.result()
            if digest is None:
                return None
            with self._lock:
                ahead = self._ahead.get(digest)
            if ahead is not None and wait:
                ahead.result()  # read ahead (or being read): wait for it
            label = self._label(digest)
        except (Exception, CancelledError):  # the fingerprint tag's question reports it
            return None
        finally:
            if wait:
                self.journal.add_wait(time.monotonic() - started)
        return digest if label == fingerprint else None

    def prefetch(self, references_: Iterable[str], scopes: Iterable[Scope] = ()) -> None:
        """Start asking for every one of `references_` at once; `digest` waits for them.
        A Bearer registry is first asked for one token for all their repositories (and
        `scopes`, of the settings' registry)."""
        by_host: dict[str, list[str]] = {self.settings.host: []}
        wanted = list(dict.fromkeys(references_))  # before the lock: naming takes it
        with self._lock:
            for reference in wanted:
                if reference in self._known or reference in self._pending:
                    continue
                self._pending[reference] = Future()
                by_host.setdefault(self._parts(reference)[0], []).append(reference)
        extra = set(scopes)
        for host, asked in by_host.items():
            if asked or (extra and host == self.settings.host):
                self._executor().submit(self._batch, host, asked, extra)

    def warm(self, images: Iterable[str] = (), push: bool = False) -> None:
        """Start reaching the settings' registry now (how to reach it, its login, a
        token for the repositories of `images`, and with `push` what their `:tag`
        serves), so that the run's questions cost one round trip when it begins."""
        names = list(images)
        actions = frozenset({"pull", "push"} if push else {"pull"})
        scopes = {(self._parts(self.by_tag(image))[1], actions) for image in names}
        with self._lock:  # every batch asks for these too: one token for them all
            self._standing.update(scopes)
        self.prefetch([self.by_tag(image) for image in names] if push else [], scopes)

    def _batch(self, host: str, asked: list[str], scopes: Iterable[Scope]) -> None:
        """Reach `host`, get tokens for `scopes` and the repositories of `asked` (in a
        few requests, at once), then ask every one of `asked` at once."""
        wanted = {(self._parts(ref)[1], frozenset({"pull"})) for ref in asked}
        if host == self.settings.host:
            with self._lock:
                wanted.update(scopes, self._standing)
        try:
            client = self._client(host)
        except BaseException as exc:
            for reference in asked:
                self._settle(reference, error=exc)
            return
        if client is not None and wanted:
            ordered = _merged(wanted)
            chunks = [ordered[i : i + TOKEN_SCOPES] for i in range(0, len(ordered), TOKEN_SCOPES)]
            tokens = [self._executor().submit(_quietly, client.authorize, chunk)
                      for chunk in chunks[1:]]
            _quietly(client.authorize, chunks[0])
            for future in tokens:
                future.result()
        for reference in asked:
            self._executor().submit(self._prefetched, reference)

    def _prefetched(self, reference: str) -> None:
        try:
            found = self._ask(reference)
        except BaseException as exc:
            self._settle(reference, error=exc)
            return
        self._settle(reference, found)

    def _settle(
        self, reference: str, found: str | None = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            pending = self._pending.get(reference)
            if error is None:
                self._known[reference] = found
        if pending is not None and not pending.done():
            if error is None:
                pending.set_result(found)
            else:
                pending.set_exception(error)

    def check(self, reference: str) -> None:
        """Raise a clear error now, before any work, if the settings' registry cannot be
        reached or refuses the login: waits for how to reach it and, where it wants a
        login (or only the engine can ask it), for the answer about `reference`."""
        client = self._client(self.settings.host)
        if client is None or client.wants_login:
            self.digest(reference)

    def reach(self) -> None:
        """Start finding out how to reach the settings' registry now, in the background
        (the HTTP client's import, the engine's settings, the probe)."""
        self._executor().submit(_quietly, self._client, self.settings.host)

    def retag(self, image: str, digest: str, tag: str) -> str | None:
        """Make `<image>:<tag>` serve the manifest `digest` in the registry itself (a
        manifest copy: no layer moves); its digest, or None where this process cannot
        do it directly (the caller then goes through an engine)."""
        host, repository, _ = self._parts(self.by_tag(image))
        client = self._client(host)
        if client is None:
            return None
        try:
            body, media_type = client.manifest(repository, digest, image)
            served = client.put_manifest(repository, tag, body, media_type, image)
        except Unsure:
            return None
        self.learn(f"{self.settings.repository(image)}:{tag}", served)
        return served

    def learn(self, reference: str, digest: str | None) -> None:
        """Remember what the registry serves now (after a push, say): under a fingerprint
        tag, an image of that fingerprint (this run put it there)."""
        with self._lock:
            self._known[reference] = digest
            self._pending.pop(reference, None)
        _, _, tag = self._parts(reference)
        if digest is not None and tag.startswith(FINGERPRINT_TAG):
            self._label(digest, "sha256:" + tag.removeprefix(FINGERPRINT_TAG))

    def image_of(self, reference: str) -> str | None:
        with self._lock:
            return self._images.get(reference)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
            clients = list(self._clients.values())
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for future in clients:
            if future.done() and future.exception() is None and future.result() is not None:
                client = future.result()
                assert client is not None
                client.close()

    # -- internals ----------------------------------------------------------------------

    def _executor(self, background: bool = False) -> ThreadPoolExecutor:
        """The threads that ask; `background`: the few that read ahead what no check
        waits for yet, so that they never delay one that does."""
        with self._lock:
            pool = self._pools.get(background)
            if pool is None:
                pool = self._pools[background] = ThreadPoolExecutor(
                    READ_AHEAD if background else CONNECTIONS,
                    "registry-ahead" if background else "registry",
                )
            return pool

    def _parts(self, reference: str) -> tuple[str, str, str]:
        """(host, repository, tag or digest) of `reference`, the way docker reads it."""
        try:
            parsed = references.parse(reference)
        except references.ReferenceError:
            host, _, rest = reference.partition("/")
            return (host, *_split(rest))
        return parsed.domain, parsed.path, parsed.digest or parsed.tag or "latest"

    def _ask(self, reference: str) -> str | None:
        """Directly where this process can be sure; else (and for what it cannot reach
        at all) through the engine, whose answer or error stands."""
        host = self._parts(reference)[0]
        ours = host == self.settings.host
        client = self._client(host)
        if client is not None and client.hinted:
            try:
                return self._served(client, reference)
            except Unsure:  # reached otherwise now: find out again, once
                client = self._client(host, again=client)
        if client is not None:
            try:
                return self._served(client, reference)
            except Unsure:
                pass
        # The settings' login goes to their registry only; docker's own to any other.
        return self._engine().registry_digest(reference, self.auth if ours else None)

    def _served(self, client: Client, reference: str) -> str | None:
        """What `reference` serves, asked with `client`. Under a fingerprint tag of the
        settings' registry, only an image labelled with that fingerprint counts: another
        one (pushed there by mistake or by someone else) is ignored, and the reason kept
        in `distrusted`."""
        host, repository, tag = self._parts(reference)
        image = self.image_of(reference)
        fingerprinted = tag.startswith(FINGERPRINT_TAG)
        # A tree image's `:tag` is asked with a GET too, to read its label ahead; not on
        # Docker Hub, which counts a GET of a manifest as a pull and a HEAD not.
        ahead = image is not None and host not in DOCKER_HUB
        if host != self.settings.host or not (fingerprinted or ahead):
            return client.digest(repository, tag, image)
        found = client.served(repository, tag, image)
        if found is None:
            return None
        digest, manifest, _ = found
        if not fingerprinted:
            # In a run where little changed, the fingerprint tags serve what `:tag`
            # serves: its label, read now in the background, spares each of those
            # checks the second round trip (the chain of hooks waits for them).
            if self._label(digest) is None:
                pool = self._executor(background=True)  # takes the lock
                with self._lock:
                    if digest not in self._ahead:
                        self._ahead[digest] = pool.submit(
                            _quietly, self._read_label, client, repository, manifest,
                            digest, image,
                        )
            return digest
        label = self._read_label(client, repository, manifest, digest, image)
        wanted = "sha256:" + tag.removeprefix(FINGERPRINT_TAG)
        if label != wanted:
            with self._lock:
                self.distrusted[image or reference] = (
                    f"{reference} serves an image labelled "
                    f"{label or 'with no fingerprint'}, not {wanted}: ignored"
                )
            return None
        return digest

    def _read_label(
        self, client: Client, repository: str, manifest: bytes, digest: str, image: str | None
    ) -> str:
        """The fingerprint label of manifest `digest`'s image: as checked before, else
        read from its config, by one thread at a time per digest."""
        def read() -> str:
            label = self._label(digest)
            if label is None:
                label = client.label(repository, manifest, LABEL, image) or ""
                self._label(digest, label)
            return label

        known = self._label(digest)
        if known is not None:
            return known
        return _one_at_a_time(self._lock, self._reading, digest, read,
                              lambda earlier: earlier.done() and earlier.exception() is not None)

    def _label(self, digest: str, label: str | None = None) -> str | None:
        """The fingerprint label of manifest `digest`'s image, as checked before (here
        or by an earlier run); with `label`, note it."""
        with self._lock:
            if self._labels is None:
                found = read_json(self._labels_file).items()
                self._labels = {str(key): str(value) for key, value in found}
            if label is not None:
                self._labels[digest] = label
                self._labels_changed = True
            return self._labels.get(digest)

    def _client(self, host: str, again: Client | None = None) -> Client | None:
        """How this process reaches `host`: as the last run did (its hint), else
        probed, once, by whichever thread asks first; None: through the engine. `again`:
        that client turned out wrong: probe (once)."""
        def wrong(found: Future[Client | None]) -> bool:
            return found.done() and found.exception() is None and found.result() is again

        client = _one_at_a_time(self._lock, self._clients, host,
                                lambda: self._probe(host, hinted=again is None),
                                wrong if again is not None else lambda found: False)
        if again is not None and client is not again:
            again.close()  # idempotent: so does any thread that asked again meanwhile
        return client

    def _probe(self, host: str, hinted: bool) -> Client | None:
        engine = self._engine()
        if host in DOCKER_HUB and engine.has_mirrors():
            return None  # the engine pulls Docker Hub's images through its mirrors
        login = functools.partial(self._login, host)
        hint = self._hint(host) if hinted else None
        if hint is not None:
            return Client.from_hint(host, hint, login, self.policy, self.journal)
        return Client.probe(host, engine.insecure_registry(host), login, self.policy,
                            self.journal)

    def _hint(self, host: str) -> dict[str, str] | None:
        with self._lock:
            if self._hints is None:
                self._hints = read_json(self._hints_file)
            hint = self._hints.get(host)
        if not isinstance(hint, dict) or hint.get("scheme") not in ("https", "http"):
            return None
        return {str(key): str(value) for key, value in hint.items()}

    def sent(self, image_id: str, digest: str | None = None) -> str | None:
        """The manifest digest under which this machine sent the engine's image
        `image_id` to the settings' registry, or brought it from there (publish.send,
        publish.bring; the engine does not know it); with `digest`, note it. Kept for
        later runs by `save`."""
        with self._lock:
            if self._sent is None:
                found = read_json(self._sent_file).items()
                self._sent = {str(key): str(value) for key, value in found}
            key = f"{self.settings.host}/{self.settings.namespace}|{image_id}"
            if digest is not None:
                self._sent[key] = digest
                self._sent_changed = True
            return self._sent.get(key)

    def save(self) -> None:
        """Keep, for the next run, how each registry was reached and what was sent to
        the settings' registry from here (nothing secret)."""
        with self._lock:
            sent = dict(self._sent or {}) if self._sent_changed else None
        if sent is not None and self._sent_file is not None:
            with contextlib.suppress(OSError):
                write_json(self._sent_file, sent)
        with self._lock:
            labels = dict(self._labels or {}) if self._labels_changed else None
        if labels is not None and self._labels_file is not None:
            with contextlib.suppress(OSError):
                write_json(self._labels_file, labels)
        if self._hints_file is None:
            return
        with self._lock:
            found = dict(self._hints or {})
            clients = list(self._clients.items())
        for host, future in clients:
            if future.done() and future.exception() is None:
                client = future.result()
                if client is not None:
                    found[host] = client.hint()
        with contextlib.suppress(OSError):
            write_json(self._hints_file, found)

    def _login(self, host: str) -> tuple[str, str] | None:
        """The settings' login for their registry, else docker's own for `host`."""
        if host == self.settings.host and self.auth is not None:
            return self.auth["username"], self.auth["password"]
        return docker_credentials(host)



class Bases:
    """The run's external bases (images from outside the tree), each asked of the engine
    once, all at once, when the run begins.

    The engine is the one that pulls them in builds, through its own proxy, mirrors,
    certificates and logins, so its answer is the build's: a base it cannot get fails
    its images at once, with why, and no build is started for them. A transient failure
    (a 429, a 5xx, a reset) is tried again as the run's policy says.
    """

    def __init__(self, engine: Callable[[], EngineSide], policy: retries.Policy) -> None:
        self._engine = engine
        self.policy = policy
        self._asked: dict[str, Future[str | None]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def ask(self, names: Iterable[str]) -> None:
        """Start asking for each of `names` not asked yet."""
        with self._lock:
            for name in names:
                if name not in self._asked:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(CONNECTIONS, "bases")
                    self._asked[name] = self._pool.submit(self._lookup, name)

    def digest(self, name: str) -> str | None:
        """The digest `name`'s registry serves, None when it serves none; a
        PaiTasksError saying why it cannot be had."""
        self.ask([name])
        return self._asked[name].result()

    def problem(self, name: str) -> str | None:
        """Why the engine cannot pull `name`, in one line; None when it can."""
        try:
            if self.digest(name) is not None:
                return None
        except PaiTasksError as exc:
            return str(exc)
        return f"base {_full_name(name)} could not be pulled: {_host(name)} does not have it"

    def _lookup(self, name: str) -> str | None:
        engine = self._engine()

        def once() -> str | None:
            try:
                return engine.registry_digest(name)
            except PaiTasksError as exc:
                if retries.transient_text(str(exc)):
                    raise retries.Transient(str(exc)) from None
                raise

        try:
            return retries.call(self.policy, once)
        except retries.Transient as failure:
            why = f"{network_words(failure.reason)} after {failure.tries} tries"
        except PaiTasksError as exc:
            why = network_words(str(exc))
        raise PaiTasksError(f"base {_full_name(name)} could not be pulled: {_host(name)} {why}")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _full_name(name: str) -> str:
    """`docker.io/library/ubuntu:16.04` for `ubuntu:16.04`."""
    try:
        parsed = references.parse(name)
    except references.ReferenceError:
        return name
    suffix = f"@{parsed.digest}" if parsed.digest else f":{parsed.tag or 'latest'}"
    return parsed.name + suffix


def _host(name: str) -> str:
    """The host the engine asks for `name` (registry-1.docker.io for Docker Hub)."""
    try:
        return api_host(references.parse(name).domain)
    except references.ReferenceError:
        return name.split("/", 1)[0]


def _one_at_a_time(
    lock: threading.Lock, pending: dict[K, Future[V]], key: K, make: Callable[[], V],
    again: Callable[[Future[V]], bool],
) -> V:
    """`make()` for `key` by the first thread that asks; threads that ask meanwhile wait
    for its answer (or error). `again(earlier)`: whether an earlier one is made anew."""
    with lock:
        future = pending.get(key)
        mine = future is None or again(future)
        if mine:
            future = pending[key] = Future()
    assert future is not None
    if not mine:
        return future.result()
    try:
        value = make()
    except BaseException as exc:
        future.set_exception(exc)
        raise
    future.set_result(value)
    return value


def _quietly(function: Callable[..., Any], *arguments: Any) -> None:
    """Run a warm-up step whose failure the question that needs it will report."""
    with contextlib.suppress(PaiTasksError, Unsure, OSError):
        function(*arguments)


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


def api_host(host: str) -> str:
    return references.DOCKER_HUB_API if host in DOCKER_HUB else host


def _split(rest: str) -> tuple[str, str]:
    """`ns/image:tag` or `ns/image@sha256:...` -> (repository, tag or digest)."""
    if "@" in rest:
        repository, _, digest = rest.partition("@")
        return repository, digest
    repository, _, tag = rest.rpartition(":")
    return repository, tag


def _merged(scopes: Iterable[Scope]) -> list[Scope]:
    """One scope per repository, with every action asked for it."""
    actions: dict[str, set[str]] = {}
    for repository, wanted in scopes:
        actions.setdefault(repository, set()).update(wanted)
    return [(repository, frozenset(found)) for repository, found in sorted(actions.items())]


def _scopes(text: str) -> frozenset[Scope]:
    """`repository:ns/x:pull,push repository:ns/y:pull` -> its scopes."""
    found = set()
    for item in text.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name:
            found.add((name, frozenset(actions.split(","))))
    return frozenset(found)


def _tls_context(host: str) -> ssl.SSLContext:
    """The system's certificate authorities, and dockerd's own for this registry."""
    context = ssl.create_default_context()
    folder = CERTS_D / host
    if folder.is_dir():
        for authority in sorted(folder.glob("*.crt")):
            try:
                context.load_verify_locations(cafile=str(authority))
            except (OSError, ssl.SSLError):
                continue
    return context


_NETWORK_WORDS = (  # what urllib3 says of a failed connection -> in a user's words
    ("refused", "connection refused"),
    ("Name or service not known", "no such host"),
    ("name resolution", "no such host"),
    ("reset by peer", "connection reset"),
    ("RemoteDisconnected", "connection closed before an answer"),
    ("Connection aborted", "connection closed before an answer"),
    ("IncompleteRead", "connection closed mid-answer"),
)


def _network_reason(exc: BaseException) -> str:
    text = str(exc)
    for marker, words in _NETWORK_WORDS:
        if marker in text:
            return words
    return text.split("): ", 1)[-1].strip() or type(exc).__name__


def _basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
