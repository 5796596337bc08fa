"""Fixtures for tests that drive the real Docker engine and registry.

Without an engine, engine tests skip with a hint locally and fail in CI (CI=true), so a
green CI always means they ran. Every test gets a random name prefix; images and
registry repositories with that prefix are removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from paitasks.engine import BuildRequest, Engine
from paitasks.fingerprint import LABEL
from tests.support import (
    BUILDKIT,
    BUSYBOX,
    CONTEXT,
    REGISTRY_HOST_NAME,
    LoggedRegistry,
    RegistryAPI,
    busybox_context,
    clear_engine1,
    clear_engine2,
    engine2,
)

HINT = "no Docker engine/registry answers: run `scripts/dev-engine up` first"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: engine tests must run)", pytrace=False)
    pytest.skip(f"{reason}: {HINT}")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        _unavailable(f"no Docker engine ({exc.__class__.__name__})")
        raise AssertionError("unreachable") from exc
    if not BUSYBOX.is_file():
        _unavailable(f"{BUSYBOX} is missing (Debian's busybox-static)")
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry(docker_client: docker.DockerClient) -> RegistryAPI:
    api = RegistryAPI(os.environ.get("PAITASKS_REGISTRY", "127.0.0.1:5000"))
    if not api.ping():
        _unavailable(f"no registry answers on {api.address}")
    return api


@pytest.fixture(scope="session")
def engine(docker_client: docker.DockerClient) -> Engine:
    return Engine()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A name prefix unique to this test, so tests never collide with each other."""
    return f"pt{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def ns(docker_client: docker.DockerClient, engine2_up: None) -> Iterator[str]:
    """A prefix and registry namespace for a whole module's tree (a module that builds
    once and checks many things); its images leave both engines after the module."""
    prefix = f"pt{secrets.token_hex(4)}"
    clear_engine2(prefix)
    yield prefix
    clear_engine1(docker_client, prefix)
    clear_engine2(prefix)


@pytest.fixture
def cleanup(
    prefix: str, docker_client: docker.DockerClient, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Remove every image and registry repository whose name carries this test's prefix,
    and the images paitasks built in the test and later replaced (left untagged)."""
    before = {entry["Id"] for entry in docker_client.api.images(filters={"dangling": True})}
    yield
    clear_engine1(docker_client, prefix)  # tags, and the digests of images pulled by one
    replaced = docker_client.api.images(filters={"dangling": True, "label": LABEL})
    for entry in replaced:
        if entry["Id"] not in before:
            with contextlib.suppress(docker.errors.APIError):  # gone, or still in use
                docker_client.api.remove_image(entry["Id"])
    if "registry" in request.fixturenames:
        api: RegistryAPI = request.getfixturevalue("registry")
        for repository in api.repositories(prefix):
            api.delete_repository(repository)


@pytest.fixture
def busybox_image(
    engine: Engine, prefix: str, cleanup: None, tmp_path: Path
) -> str:
    """A FROM-scratch busybox base image, named `<prefix>-busybox`."""
    name = f"{prefix}-busybox"
    dockerfile = busybox_context(tmp_path / "busybox-context")
    engine.build(BuildRequest((name,), dockerfile, dockerfile.parent))
    return name


@pytest.fixture(scope="module")
def logged_registry(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoggedRegistry]:
    """A registry of this module's own (no login) whose requests tests can count:
    `mark = logged_registry.mark()`, then `logged_registry.manifest_puts(mark)`..."""
    if not LoggedRegistry.available():
        _unavailable("docker-registry is not installed (Debian's docker-registry)")
    with LoggedRegistry(tmp_path_factory.mktemp("logged-registry")) as started:
        yield started


@pytest.fixture(scope="session")
def engine2_up(docker_client: docker.DockerClient) -> None:
    """Engine 2 answers through its context: skip locally, fail in CI, otherwise."""
    result = engine2("info", "--format", "{{.ID}}", check=False)
    if result.returncode != 0:
        _unavailable(f"docker context {CONTEXT} does not answer ({result.stderr.strip()[:200]})")


@pytest.fixture(scope="session")
def buildkit_up() -> None:
    """The buildx builder BUILDKIT answers: skip locally, fail in CI, otherwise."""
    result = subprocess.run(["docker", "buildx", "inspect", "--bootstrap", BUILDKIT],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        _unavailable(f"buildx builder {BUILDKIT} does not answer ({result.stderr.strip()[:200]})")


@pytest.fixture
def engine2_cleanup(prefix: str, engine2_up: None) -> Iterator[None]:
    """Remove engine 2's images whose repository carries this test's prefix, by
    reference (tag or digest), so an identical image of another test stays."""
    yield
    clear_engine2(prefix)


@pytest.fixture(scope="session")
def registry_host_name(docker_client: docker.DockerClient) -> str:
    """`paitasks-registry.test`: a host name for 127.0.0.1 that `scripts/dev-engine up`
    keeps in /etc/hosts and in the engines' NO_PROXY, so a test reaches a registry "by
    host name over plain HTTP" (dockerd treats a name resolving to 127.0.0.0/8 as an
    insecure registry) without any traffic leaving the machine."""
    try:
        address = socket.gethostbyname(REGISTRY_HOST_NAME)
    except OSError:
        address = "nothing"
    no_proxy = docker_client.info().get("NoProxy", "").split(",")
    if address != "127.0.0.1" or REGISTRY_HOST_NAME not in no_proxy:
        _unavailable(
            f"{REGISTRY_HOST_NAME} resolves to {address} and the engine's NO_PROXY is "
            f"{','.join(no_proxy)}: restart the engines with scripts/dev-engine"
        )
    return REGISTRY_HOST_NAME
