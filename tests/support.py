"""Test helpers that talk to the real engine and registry the way a user would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class RegistryAPI:
    """The registry's HTTP API (distribution v2), as a user's `curl` would see it."""

    address: str  # host:port

    def _request(self, method: str, path: str, accept: str | None = None) -> Any:
        request = urllib.request.Request(f"http://{self.address}{path}", method=method)
        if accept:
            request.add_header("Accept", accept)
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


REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "src-fixtures"
DODO = REPO / "dodo.py"
PAI_BUILD = str(Path(sys.executable).parent / "pai-build")  # the installed command
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


def run_doit(
    *arguments: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m doit -f dodo.py ARGUMENTS` with this repository's dodo.py, as a user
    runs it: no PAI_* settings leak in from the test's own environment; `env` adds to it."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PAI_")}
    return subprocess.run(
        [sys.executable, "-m", "doit", "-f", str(DODO), *arguments],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**environ, **(env or {})},
    )


def doit_on(
    src: Path, *arguments: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m doit -f dodo.py ARGUMENTS src=SRC`, from the tree's root by default."""
    return run_doit(*arguments, f"src={src}", cwd=cwd or src.parent)
