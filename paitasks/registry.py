"""Ask a registry, over its HTTP API, which digest it serves for a name and tag.

This is how a push is skipped: when the registry already serves the digest the local
image was last pushed with, there is nothing to publish. Basic auth and the bearer-token
flow (Docker Hub and most hosted registries) are both handled; credentials go in
headers only.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from paitasks.errors import EngineError

TIMEOUT = 10.0
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
DOCKER_HUB_API = "registry-1.docker.io"
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Registry:
    """One registry host, with optional credentials (never printed)."""

    host: str  # "127.0.0.1:5000", "docker.io", ...
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        host = DOCKER_HUB_API if self.host in ("docker.io", "index.docker.io") else self.host
        scheme = "http" if _is_loopback(host) else "https"
        return f"{scheme}://{host}"

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The digest served for repository:tag (repository without host), or None."""
        url = f"{self.base_url}/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        try:
            response = self._request(url, repository)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise EngineError(
                f"registry {self.host}: asking for {repository}:{tag} gave HTTP {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineError(f"registry {self.host} is unreachable: {reason}") from None
        digest = response.headers.get("Docker-Content-Digest")
        return str(digest) if digest else None

    def _request(self, url: str, repository: str) -> Any:
        headers = {"Accept": MANIFEST_TYPES}
        if self.username and self.password:
            headers["Authorization"] = "Basic " + _basic(self.username, self.password)
        try:
            return _open(url, "HEAD", headers)
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate", "")
            if exc.code != 401 or not challenge.lower().startswith("bearer"):
                raise
        token = self._token(challenge, repository)
        headers["Authorization"] = f"Bearer {token}"
        return _open(url, "HEAD", headers)

    def _token(self, challenge: str, repository: str) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise EngineError(f"registry {self.host}: unusable auth challenge")
        params.setdefault("scope", f"repository:{repository}:pull")
        headers = {}
        if self.username and self.password:
            headers["Authorization"] = "Basic " + _basic(self.username, self.password)
        url = realm + "?" + urllib.parse.urlencode(params)
        with _open(url, "GET", headers) as response:
            body = json.load(response)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise EngineError(f"registry {self.host}: no token in the auth answer")
        return str(token)


def _open(url: str, method: str, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, method=method, headers=headers)
    return urllib.request.urlopen(request, timeout=TIMEOUT)


def _basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _is_loopback(host: str) -> bool:
    if host.startswith("["):  # "[::1]:5000"
        name = host[1 : host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
