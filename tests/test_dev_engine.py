"""The second engine and the BuildKit builder `scripts/dev-engine up` starts, checked as
a user would.

Engine 2 stands for another machine: its own dockerd and image store, reached only
through the docker context `paitasks-engine2`, pulling by digest what engine 1 pushed to
the shared registry. Engine 1 is the one the docker CLI and SDK reach by default. The
builder `paitasks-buildkit` stands for a buildx builder of another driver.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import docker
import docker.errors
import pytest

from paitasks.builders import buildkit_takes_named_contexts
from paitasks.engine import BuildRequest, Engine
from tests.support import BUILDKIT, RegistryAPI, engine2, hello_context, on_engine2

pytestmark = pytest.mark.engine


def test_engine2_answers_through_its_context_and_is_another_engine(
    engine2_up: None, docker_client: docker.DockerClient
) -> None:
    info = engine2("info", "--format", "{{.ID}} {{.DockerRootDir}} {{.ServerVersion}}").stdout
    engine2_id, engine2_root, version = info.split()
    engine1 = docker_client.info()
    assert version, "engine 2 reports its version"
    assert engine2_root != engine1["DockerRootDir"], "engine 2 has its own data root"
    assert engine2_id != engine1["ID"], "engine 2 has its own engine ID, like another machine"
    # `up` created the context but left the CLI's default alone: it still reaches engine 1.
    plain = subprocess.run(
        ["docker", "info", "--format", "{{.ID}}"], capture_output=True, text=True, timeout=60
    )
    assert plain.stdout.strip() == engine1["ID"], plain.stderr


def test_image_stores_are_separate(
    prefix: str,
    busybox_image: str,
    engine2_cleanup: None,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    name = f"{prefix}-only-on-engine2"
    dockerfile = hello_context(tmp_path, f"{prefix}-built-on-engine2")
    build = ["buildx", "build", "--network", "host", "--load", "-t", name, "-f", str(dockerfile)]
    engine2(*build, str(dockerfile.parent))
    assert on_engine2(name)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(name)
    # ... and the other way round: engine 1's busybox base is not on engine 2.
    docker_client.images.get(busybox_image)
    assert not on_engine2(busybox_image)
    shown = engine2("run", "--rm", "--network", "none", name, "cat", "/hello").stdout
    assert shown.strip() == f"{prefix}-built-on-engine2"


def test_engine2_pulls_by_digest_what_engine1_pushed(
    prefix: str,
    engine: Engine,
    registry: RegistryAPI,
    cleanup: None,
    engine2_cleanup: None,
    tmp_path: Path,
) -> None:
    text = f"{prefix}-pushed-from-engine1"
    dockerfile = hello_context(tmp_path, text)
    engine.build(BuildRequest((f"{prefix}-shared",), dockerfile, tmp_path))
    repository = f"{registry.address}/{prefix}-shared"
    digest = engine.push(f"{prefix}-shared", repository, "v1")
    assert registry.manifest_digest(f"{prefix}-shared", "v1") == digest
    pinned = f"{repository}@{digest}"
    assert not on_engine2(pinned), "engine 2 starts without engine 1's image"

    engine2("pull", pinned)
    shown = engine2("run", "--rm", "--network", "none", pinned, "cat", "/hello").stdout
    assert shown.strip() == text
    repo_digests = engine2("image", "inspect", "--format", "{{json .RepoDigests}}", pinned).stdout
    assert pinned in repo_digests


def test_the_buildkit_builder_is_another_driver_on_a_unix_socket_only(buildkit_up: None) -> None:
    """A remote builder of a BuildKit new enough for named build contexts, whose daemon
    listens on its unix socket and on no TCP port."""
    inspected = subprocess.run(["docker", "buildx", "inspect", BUILDKIT], capture_output=True,
                               text=True, timeout=60, check=True).stdout
    assert re.search(r"^Driver:\s+remote$", inspected, re.MULTILINE), inspected
    assert re.search(r"^Status:\s+running$", inspected, re.MULTILINE), inspected
    version = next(line.split(":", 1)[1] for line in inspected.splitlines()
                   if line.startswith("BuildKit version"))
    assert buildkit_takes_named_contexts(version), inspected
    endpoint = next(line.split()[1] for line in inspected.splitlines()
                    if line.startswith("Endpoint:"))
    assert endpoint.startswith("unix:///"), inspected
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=60,
                               check=True).stdout
    assert "buildkitd" not in listening, listening
