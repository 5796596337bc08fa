"""The shared test helpers count what really happened: registry requests, engine events,
engine 2's images, and a registry reached by host name."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.support import (
    ENGINE2_ENV,
    ENGINE2_HOST,
    LoggedRegistry,
    RegistryAPI,
    busybox_context,
    engine2_images,
    engine_events,
    image_actions,
)


def docker_cli(*arguments: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["docker", *arguments], capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.engine
def test_requests_are_counted_from_a_mark(logged_registry: LoggedRegistry) -> None:
    api = logged_registry.api
    mark = logged_registry.mark()
    assert api.tags("nothing/here") == []
    assert api.manifest_digest("nothing/here", "v1") is None
    shown = [(r.method, r.path, r.status) for r in logged_registry.requests(mark)]
    assert shown == [
        ("GET", "/v2/nothing/here/tags/list", 404),
        ("HEAD", "/v2/nothing/here/manifests/v1", 404),
    ]
    assert logged_registry.requests(logged_registry.mark()) == []


@pytest.mark.engine
def test_login_registry_refuses_requests_without_the_password(tmp_path: Path) -> None:
    with LoggedRegistry(tmp_path, auth=("ci-user", "pa55")) as started:
        assert started.api.ping()
        assert not RegistryAPI(started.address).ping()
        assert [r.status for r in started.requests()][-2:] == [200, 401]


def unique_image(prefix: str, folder: Path, tag: str) -> None:
    """Build (on engine 1) a FROM-scratch image of one layer that no other test has."""
    (folder / "id").write_text(prefix)
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY id /id\n")
    docker_cli("build", "-q", "-t", tag, str(folder))


@pytest.mark.engine
def test_push_then_engine2_pull_are_counted(
    prefix: str,
    cleanup: None,
    logged_registry: LoggedRegistry,
    engine2_cleanup: None,
    tmp_path: Path,
) -> None:
    repository = f"{prefix}/unique"
    reference = f"{logged_registry.address}/{repository}:v1"
    unique_image(prefix, tmp_path, reference)
    mark, start = logged_registry.mark(), time.time()
    docker_cli("push", reference)
    assert logged_registry.manifest_puts(mark) == {repository: ["v1"]}
    layers = logged_registry.api.layers(repository, "v1")
    config = logged_registry.api.manifest(repository, "v1")["config"]["digest"]
    assert sorted(logged_registry.uploaded_blobs(mark)) == sorted([*layers, config])
    assert logged_registry.blob_gets(mark) == []
    assert image_actions(engine_events(None, start, time.time()), prefix) == [("push", reference)]

    digest = logged_registry.api.manifest_digest(repository, "v1")
    pinned = f"{logged_registry.address}/{repository}@{digest}"
    mark, start = logged_registry.mark(), time.time()
    docker_cli("pull", pinned, env=ENGINE2_ENV)
    assert len(layers) == 1 and logged_registry.blob_gets(mark, layers) == layers
    assert sorted(logged_registry.blob_gets(mark)) == sorted([*layers, config])
    assert logged_registry.manifest_puts(mark) == {}
    assert logged_registry.blob_uploads(mark) == []
    events = engine_events(ENGINE2_HOST, start, time.time())
    assert image_actions(events, prefix) == [("pull", pinned)]
    assert list(engine2_images(prefix)) == [pinned]


@pytest.mark.engine
def test_engine2_env_reaches_engine2_and_buildkit_builds_emit_no_event(
    prefix: str, engine2_cleanup: None, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    engine2_id = docker_cli("--context", "paitasks-engine2", "info", "--format", "{{.ID}}")
    assert docker_cli("info", "--format", "{{.ID}}", env=ENGINE2_ENV) == engine2_id
    assert docker_cli("info", "--format", "{{.ID}}").strip() == docker_client.info()["ID"]
    dockerfile = busybox_context(tmp_path)
    start = time.time()
    docker_cli(
        "buildx", "build", "--network", "host", "--load", "-t", f"{prefix}-built",
        "-f", str(dockerfile), str(tmp_path), env=ENGINE2_ENV,
    )
    assert list(engine2_images(prefix)) == [f"{prefix}-built:latest"]
    assert not docker_client.images.list(f"{prefix}-built")
    # dockerd 20.10 reports nothing for a BuildKit build, not even its tag: count builds
    # by the images an engine holds, not by its events.
    assert image_actions(engine_events(ENGINE2_HOST, start, time.time()), prefix) == []


@pytest.mark.engine
def test_registry_host_name_reaches_a_registry_over_http(
    registry_host_name: str,
    logged_registry: LoggedRegistry,
    busybox_image: str,
    prefix: str,
    docker_client: docker.DockerClient,
) -> None:
    port = logged_registry.address.rsplit(":", 1)[1]
    reference = f"{registry_host_name}:{port}/{prefix}/busybox:v1"
    docker_cli("tag", busybox_image, reference)
    mark = logged_registry.mark()
    docker_cli("push", reference)
    assert logged_registry.manifest_puts(mark) == {f"{prefix}/busybox": ["v1"]}
    answer = docker_client.api.inspect_distribution(reference)  # type: ignore[no-untyped-call]
    served = answer["Descriptor"]["digest"]
    assert served == logged_registry.api.manifest_digest(f"{prefix}/busybox", "v1")
