"""Pushing to real registries: the local one and one that requires a login."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from paitasks.engine import Engine
from tests.support import (
    FIXTURES,
    PASSWORD,
    LoggedRegistry,
    RegistryAPI,
    free_port,
    pai_build,
    prefixed_tree,
    report,
    temp_folders,
    write_config,
)
from tests.support import run_doit as doit


@pytest.fixture
def tree(tmp_path: Path, prefix: str, cleanup: None) -> tuple[Path, dict[str, str]]:
    src = tmp_path / "src"
    return src, prefixed_tree(FIXTURES, src, prefix)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryAPI]:
    """Debian's registry with an htpasswd file, on its own loopback port."""
    folder = tmp_path_factory.mktemp("auth-registry")
    with LoggedRegistry(folder, auth=("ci-user", PASSWORD)) as started:
        yield started.api


@pytest.mark.engine
def test_push_all_publishes_every_image_with_local_digest(
    tree: tuple[Path, dict[str, str]],
    prefix: str,
    registry: RegistryAPI,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    src, names = tree
    config = write_config(tmp_path / "cfg", registry.address, prefix, "v1")
    result = doit("-n", "4", "build", "push", f"src={src}", f"config={config}")
    assert result.returncode == 0, result.stdout + result.stderr
    built = [name for old, name in names.items() if old not in ("driver-k8s", "driver-yarn")]
    for image in built:
        repository = f"{prefix}/{image}"
        served = registry.manifest_digest(repository, "v1")
        assert served is not None, f"{repository}:v1 missing"
        local = docker_client.images.get(f"{registry.address}/{repository}:v1")
        # The registry serves the image the build made (its config is the image's).
        assert registry.manifest(repository, served)["config"]["digest"] == local.id
        assert local.id == docker_client.images.get(image).id
    assert registry.tags(f"{prefix}/{names['driver-k8s']}") == []
    found = report(src)
    watchdog = found["images"][names["watchdog"]]
    assert watchdog["push"]["status"] == "done"
    assert watchdog["push"]["name"] == f"{registry.address}/{prefix}/{names['watchdog']}:v1"
    assert watchdog["push"]["digest"] == registry.manifest_digest(
        f"{prefix}/{names['watchdog']}", "v1"
    )
    assert watchdog["id"] == docker_client.images.get(names["watchdog"]).id
    assert found["result"] == "success"
    assert "image" in result.stdout and f"{len(built)} images:" in result.stdout


@pytest.mark.engine
def test_old_settings_schema_and_image_selection(
    tree: tuple[Path, dict[str, str]], prefix: str, registry: RegistryAPI, tmp_path: Path
) -> None:
    src, names = tree
    config = tmp_path / "old-cfg"
    config.mkdir()
    (config / "services-configuration.yaml").write_text(
        "cluster:\n"
        "  docker-registry-info:\n"
        f"    docker-namespace: {prefix}\n"
        f"    docker-registry-domain: '{registry.address}'\n"
        "    docker-tag: old\n"
        "    secret-name: pai-secret\n"
    )
    result = pai_build(
        "push", "-c", str(config), "--src", str(src), "-i", names["tools"], "-j", "2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # tools and the images it is built on (tools-base, base-image), nothing else.
    pushed = {name for name in names.values() if registry.tags(f"{prefix}/{name}")}
    assert pushed == {names["tools"], names["tools-base"], names["base-image"]}
    tags = registry.tags(f"{prefix}/{names['tools']}")
    assert [tag for tag in tags if not tag.startswith("paitasks-")] == ["old"]


@pytest.mark.engine
def test_login_registry_keeps_the_password_secret(
    tree: tuple[Path, dict[str, str]],
    prefix: str,
    auth_registry: RegistryAPI,
    tmp_path: Path,
    engine: object,
) -> None:
    src, names = tree
    config = write_config(
        tmp_path / "cfg", auth_registry.address, prefix, "v1",
        username="ci-user", password=PASSWORD,
    )
    result = pai_build(
        "push", "-c", str(config), "--src", str(src), "-i", names["base-image"], "-v",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    state = tmp_path / ".paitasks"
    for path in state.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    docker_config = Path.home() / ".docker" / "config.json"
    if docker_config.exists():
        assert auth_registry.address not in docker_config.read_text()
    # The registry holds it: ask with the user's credentials, as `curl -u` would.
    listing = subprocess.run(
        ["curl", "-fsS", "--noproxy", "*", "-u", f"ci-user:{PASSWORD}",
         f"http://{auth_registry.address}/v2/{prefix}/{names['base-image']}/tags/list"],
        capture_output=True, text=True, timeout=30,
    )
    assert '"v1"' in listing.stdout, listing.stderr


@pytest.mark.engine
def test_wrong_password_fails_clearly(
    tree: tuple[Path, dict[str, str]], prefix: str, auth_registry: RegistryAPI, tmp_path: Path,
    engine: object,
) -> None:
    src, names = tree
    wrong = "wrong-Pa55word-xyz"
    config = write_config(
        tmp_path / "cfg", auth_registry.address, prefix, "v1", username="ci-user", password=wrong
    )
    result = pai_build(
        "push", "-c", str(config), "--src", str(src), "-i", names["base-image"], cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert auth_registry.address in output and "refused" in output
    assert wrong not in output and "Traceback" not in output


@pytest.mark.engine
def test_unreachable_registry_fails_clearly(
    tree: tuple[Path, dict[str, str]], prefix: str, tmp_path: Path, engine: Engine
) -> None:
    src, names = tree
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path / "cfg", address, prefix, "v1")
    result = pai_build(
        "push", "-c", str(config), "--src", str(src), "-i", names["base-image"], cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"registry {address} is unreachable" in output, output
    assert "Traceback" not in output
    # Said before any work: no hook ran, nothing was built.
    assert engine.image(names["base-image"]) is None
    assert temp_folders(src) == []


@pytest.mark.engine
def test_failed_build_publishes_nothing(
    tree: tuple[Path, dict[str, str]], prefix: str, registry: RegistryAPI, tmp_path: Path
) -> None:
    src, names = tree
    broken = src / "watchdog" / "build" / f"{names['watchdog']}.dockerfile"
    broken.write_text(broken.read_text() + "RUN echo watchdog-is-broken && exit 1\n")
    config = write_config(tmp_path / "cfg", registry.address, prefix, "v1")
    result = doit("-n", "4", "--continue", "build", "push", f"src={src}", f"config={config}")
    assert result.returncode != 0
    assert "watchdog-is-broken" in result.stdout + result.stderr
    # The images that built are in the registry under their fingerprint tags (a cache
    # the next run finds them in), but no `:v1` moved: nothing is published.
    repositories = registry.repositories(prefix)
    assert repositories, "the images that built were not uploaded"
    tags = {repository: registry.tags(repository) for repository in repositories}
    assert all(tag.startswith("paitasks-") for found in tags.values() for tag in found), tags
    assert f"{prefix}/{names['watchdog']}" not in tags


@pytest.mark.engine
def test_push_without_config_says_how(tree: tuple[Path, dict[str, str]], engine: object) -> None:
    src, names = tree
    result = doit(f"push:{names['base-image']}", f"src={src}")
    assert result.returncode != 0
    assert "config=DIR" in result.stdout + result.stderr
