"""The registry as the source of truth, with two real engines and real registries.

Engine 1 builds and pushes a prefixed copy of src-fixtures once (`published`); engine 2
stands for a fresh CI runner: a fresh copy of the tree (no `.paitasks/`) and an engine
that holds none of the tree's images. What the runs did is read the way a user would:
`docker run` an image and read a file, ask the registry's HTTP API, count the requests
in the registry's access log.

The published namespace is shared by the tests that use it, in file order: the no-op and
pull runs first, then the leaf change (which moves component-b's `:v1`), the run that
moves it back, the stale-name run, and the base change last. Tests that need a registry
state of their own use their own namespace (the per-test `prefix`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

import paitasks.registry as registry_module
from paitasks import reference
from paitasks.config import RegistrySettings
from paitasks.engine import LocalImage, is_insecure
from paitasks.errors import EngineError
from paitasks.inputs import external_digest
from paitasks.reference import engine_name
from paitasks.registry import Bases, RegistryView, _split
from paitasks.retries import Policy
from tests.support import (
    BUSYBOX,
    ENGINE2_ENV,
    FIXTURES,
    PAI_BUILD,
    PASSWORD,
    LoggedRegistry,
    RegistryAPI,
    clear_engine2,
    doit_on,
    engine2,
    engine2_images,
    fingerprint_tag,
    free_port,
    image_of,
    output,
    prefixed_tree,
    report,
    run_on_engine1,
    run_on_engine1_busybox,
    run_on_engine2,
    run_on_engine2_busybox,
    statuses,
    succeeded,
    summary_rows,
    user_environ,
    write_config,
)

pytestmark = pytest.mark.engine

TAG = "v1"
REGISTRY_FRESH = "up to date in the registry"
# A file each image of src-fixtures holds, and what it starts with.
MARKERS = {
    "base-image": ("/etc/paitasks-base", "base-image"),
    "tools-base": ("/etc/tools-base", "tools-base"),
    "tools": ("/etc/tools", "tools"),
    "argbase": ("/etc/argbase", "argbase on tools"),
    "drivers": ("/etc/drivers", "drivers"),
    "component-b": ("/usr/local/componentA/generated/version.txt", "componentA 1.0"),
    "rest-server": ("/opt/rest-server/app/server.sh", "#!/bin/sh"),
    "watchdog": ("/etc/watchdog-build", "built-by-stage"),
}
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


# -- helpers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """The tree engine 1 built and pushed to `registry` under namespace `ns`."""

    src: Path  # engine 1's copy (its `.paitasks/` is next to it)
    names: dict[str, str]  # fixture name -> prefixed image name
    ns: str
    config: Path
    registry: LoggedRegistry
    fingerprints: dict[str, str]  # prefixed image name -> fingerprint
    digests: dict[str, str]  # prefixed image name -> digest of :v1 (= its fingerprint tag)

    def repository(self, image: str) -> str:
        return f"{self.ns}/{image}"

    @property
    def images(self) -> list[str]:
        return sorted(self.fingerprints)


def fresh_copy(src: Path, root: Path) -> Path:
    """A fresh clone of the tree: the source folder only, no `.paitasks/`."""
    copy = root / "src"
    shutil.copytree(src, copy, symlinks=True)
    assert not (root / ".paitasks").exists()
    return copy


def registry_json(api: RegistryAPI, path: str) -> Any:
    """GET a JSON document (a config blob, say) from the registry's API."""
    with _opener.open(f"http://{api.address}{path}", timeout=10) as response:
        return json.load(response)


def config_diff_ids(api: RegistryAPI, repository: str, reference: str) -> list[str]:
    """The layer diff_ids in the config of the image the registry serves."""
    manifest = api.manifest(repository, reference)
    config = registry_json(api, f"/v2/{repository}/blobs/{manifest['config']['digest']}")
    return list(config["rootfs"]["diff_ids"])


def all_layers(published: Published) -> set[str]:
    return {
        layer
        for image in published.images
        for layer in published.registry.api.layers(published.repository(image), TAG)
    }


def on_engine1(docker_client: docker.DockerClient, reference: str) -> bool:
    try:
        docker_client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


def small_tree(root: Path, prefix: str, note: str = "first") -> tuple[Path, str, str]:
    """A two-image tree: `<prefix>-base` (FROM scratch, busybox) and `<prefix>-app`
    (FROM the base, with a note). Returns the source folder and the two names."""
    src = root / "src"
    base, app = f"{prefix}-base", f"{prefix}-app"
    (src / "base" / "build").mkdir(parents=True)
    shutil.copy2(BUSYBOX, src / "base" / "busybox")
    (src / "base" / "build" / f"{base}.dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    (src / "app" / "build").mkdir(parents=True)
    (src / "app" / "note").write_text(note + "\n")
    (src / "app" / "build" / f"{app}.dockerfile").write_text(
        f"FROM {base}\nCOPY note /note\n"
    )
    return src, base, app


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def published(
    ns: str, logged_registry: LoggedRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """Engine 1 builds the whole tree and pushes it to `logged_registry` (`:v1`)."""
    root = tmp_path_factory.mktemp("published")
    src = root / "src"
    names = prefixed_tree(FIXTURES, src, ns)
    config = write_config(root / "cfg", logged_registry.address, ns, TAG)
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={config}"))
    images = report(src)["images"]
    fingerprints = {name: entry["fingerprint"] for name, entry in images.items()}
    assert len(fingerprints) == len(MARKERS), sorted(fingerprints)
    digests = {}
    for image, found in fingerprints.items():
        repository = f"{ns}/{image}"
        digest = logged_registry.api.manifest_digest(repository, TAG)
        assert digest is not None, f"{repository}:{TAG} was not pushed"
        assert logged_registry.api.manifest_digest(repository, fingerprint_tag(found)) == digest
        digests[image] = digest
    return Published(src, names, ns, config, logged_registry, fingerprints, digests)


@pytest.fixture
def fresh_runner(ns: str, tmp_path: Path) -> Path:
    """Engine 2 without any image of the published tree, and a fresh root folder."""
    clear_engine2(ns)
    assert engine2_images(ns) == {}
    return tmp_path / "runner"


@dataclass(frozen=True)
class LeafChange:
    src: Path
    image: str  # component-b, prefixed
    line: str  # the line added to start.sh
    result: subprocess.CompletedProcess[str]
    puts: dict[str, list[str]]
    engine2_images: dict[str, str]


@pytest.fixture(scope="module")
def leaf_change(
    published: Published, tmp_path_factory: pytest.TempPathFactory
) -> LeafChange:
    """On a fresh runner, component-b's start.sh (copied in by its build-pre.sh) gets a
    new line; the runner builds and pushes. This moves component-b's `:v1`."""
    clear_engine2(published.ns)
    src = fresh_copy(published.src, tmp_path_factory.mktemp("leaf-change"))
    line = f'echo "leaf change {secrets.token_hex(4)}"'
    script = src / "componentB" / "test-build" / "start.sh"
    script.write_text(script.read_text() + line + "\n")
    mark = published.registry.mark()
    result = doit_on(src, "-n", "4", "build", "push", f"config={published.config}", engine2=True)
    succeeded(result)
    return LeafChange(
        src, published.names["component-b"], line, result,
        published.registry.manifest_puts(mark), engine2_images(published.ns),
    )


# -- the published tree on a fresh runner --------------------------------------------


def test_plan_on_a_fresh_runner_finds_everything_in_the_registry(
    published: Published, fresh_runner: Path
) -> None:
    src = fresh_copy(published.src, fresh_runner)
    plan = subprocess.run(
        [PAI_BUILD, "plan", "-c", str(published.config), "--src", str(src)],
        cwd=fresh_runner, capture_output=True, text=True, timeout=300,
        env={**user_environ(), **ENGINE2_ENV},
    )
    assert plan.returncode == 0, output(plan)
    lines = plan.stdout.splitlines()
    # component-b's build-pre.sh declares no inputs: what it makes is known only once it
    # has run (the run then finds the image in the registry); base-image's hook declares
    # them, so its image and everything built on it are decided from the registry.
    later = published.names["component-b"]
    assert any(line.startswith(f"decided when its hooks run: {later}: ") for line in lines)
    for image in published.images:
        if image != later:
            assert f"{REGISTRY_FRESH}: {image}" in lines, plan.stdout
    total = len(published.images)
    assert f"0 of {total} images would be rebuilt; {total - 1} are up to date " \
        f"({total - 1} in the registry only); 1 decided when hooks run" in lines, plan.stdout
    assert engine2_images(published.ns) == {}


def test_fresh_runner_finds_everything_in_the_registry(
    published: Published, fresh_runner: Path
) -> None:
    src = fresh_copy(published.src, fresh_runner)
    registry = published.registry
    layers = all_layers(published)
    mark = registry.mark()
    result = doit_on(src, "-n", "4", "build", "push", f"config={published.config}", engine2=True)
    stdout = succeeded(result)

    assert statuses(src) == dict.fromkeys(published.images, REGISTRY_FRESH)
    rows = summary_rows(stdout, published.images)
    for image in published.images:
        assert REGISTRY_FRESH in rows[image] and "already in the registry" in rows[image], stdout
        assert report(src)["images"][image]["push"]["status"].startswith("up to date")
    assert registry.manifest_puts(mark) == {}
    assert registry.blob_uploads(mark) == []
    assert registry.blob_gets(mark, layers) == []
    assert engine2_images(published.ns) == {}
    # One request per question, asked by paitasks itself: a GET for each `:tag`, one for
    # each fingerprint tag known before the hooks run (both serve one image here), one
    # for that image's config (whose label must say that fingerprint), and the one
    # probe of the registry. componentB's fingerprint is known only after its hook: by
    # then the label of what its `:tag` serves says that fingerprint, and nothing more is
    # asked.
    asked = [(request.method, request.path) for request in registry.requests(mark)]
    questions = [path for _, path in asked if "/manifests/" in path]
    configs = [path for method, path in asked if method == "GET" and "/blobs/" in path]
    assert sorted(asked) == sorted([
        ("GET", "/v2/"),
        *(("GET", path) for path in questions),
        *(("GET", path) for path in configs),
    ])
    later = published.names["component-b"]
    expected = {f"/v2/{published.repository(image)}/manifests/{tag}"
                for image in published.images
                for tag in (TAG, fingerprint_tag(published.fingerprints[image]))
                if not (image == later and tag != TAG)}
    assert len(questions) == len(set(questions)) and set(questions) == expected, asked
    assert len(configs) == len(set(configs)) == len(published.images), asked


def test_pull_brings_every_image_to_a_fresh_runner(
    published: Published, fresh_runner: Path
) -> None:
    src = fresh_copy(published.src, fresh_runner)
    result = doit_on(src, "-n", "4", "build", f"config={published.config}", "pull=1", engine2=True)
    stdout = succeeded(result)
    assert statuses(src) == dict.fromkeys(published.images, "pulled")
    rows = summary_rows(stdout, published.images)
    address = published.registry.address
    for old, (path, content) in MARKERS.items():
        image = published.names[old]
        assert "pulled" in rows[image], stdout
        assert run_on_engine2(image, "cat", path).startswith(content)
        inspected = json.loads(engine2("image", "inspect", image).stdout)[0]
        served = f"{address}/{published.repository(image)}@{published.digests[image]}"
        assert served in inspected["RepoDigests"]


# -- a change on a fresh runner -----------------------------------------------------


def test_leaf_change_builds_only_that_image_on_its_registry_base(
    published: Published, leaf_change: LeafChange
) -> None:
    image, registry = leaf_change.image, published.registry
    base = published.names["base-image"]
    # Built on engine 2: that image only (under its name and the name it was pushed as),
    # on its base, which paitasks brought from the registry before the build.
    assert leaf_change.engine2_images, "engine 2 holds nothing"
    assert {image_of(ref) for ref in leaf_change.engine2_images} == {image, base}, \
        leaf_change.engine2_images
    found = statuses(leaf_change.src)
    assert found == {**dict.fromkeys(published.images, REGISTRY_FRESH), image: "done"}
    # Pushed: its fingerprint tag and :v1, nothing else.
    fingerprint = report(leaf_change.src)["images"][image]["fingerprint"]
    assert fingerprint != published.fingerprints[image]
    puts = leaf_change.puts
    assert list(puts) == [published.repository(image)], puts
    assert sorted(puts[published.repository(image)]) == sorted([fingerprint_tag(fingerprint), TAG])
    repository = published.repository(image)
    new_digest = registry.api.manifest_digest(repository, fingerprint_tag(fingerprint))
    assert new_digest is not None and new_digest != published.digests[image]
    # It runs the changed script.
    assert leaf_change.line.split('"')[1] in run_on_engine2(image)
    # Built on the base the registry serves: the engine's base is that image (its id is
    # the registry's config digest), and the image's first layers are the base's.
    served = registry.api.manifest(published.repository(base), TAG)["config"]["digest"]
    assert json.loads(engine2("image", "inspect", f"{base}:latest").stdout)[0]["Id"] == served
    base_layers = config_diff_ids(registry.api, published.repository(base), TAG)
    inspected = json.loads(engine2("image", "inspect", f"{image}:latest").stdout)[0]
    layers = inspected["RootFS"]["Layers"]
    assert layers[: len(base_layers)] == base_layers and len(layers) > len(base_layers)


def test_push_moves_the_tag_back_to_this_branch_build(
    published: Published, leaf_change: LeafChange
) -> None:
    """Another branch (the leaf change) moved component-b's :v1; engine 1, with the
    unchanged tree, builds nothing and moves :v1 back without uploading a layer."""
    image, registry = leaf_change.image, published.registry
    repository = published.repository(image)
    assert registry.api.manifest_digest(repository, TAG) != published.digests[image]
    mark = registry.mark()
    result = doit_on(published.src, "-n", "4", "build", "push", f"config={published.config}")
    succeeded(result)
    for name, status in statuses(published.src).items():
        assert status.startswith("up to date"), (name, status)
    assert registry.api.manifest_digest(repository, TAG) == published.digests[image]
    assert registry.api.manifest_digest(
        repository, fingerprint_tag(published.fingerprints[image])
    ) == published.digests[image]
    assert registry.manifest_puts(mark) == {repository: [TAG]}
    assert registry.uploaded_blobs(mark) == []
    assert [r for r in registry.blob_uploads(mark) if "mount=" not in r.query] == []
    push = report(published.src)["images"][image]["push"]
    assert push["status"] == "done" and push["digest"] == published.digests[image]


def test_a_fresh_runner_moves_a_tag_in_the_registry_without_pulling(
    published: Published, leaf_change: LeafChange, fresh_runner: Path
) -> None:
    """On runners that hold none of the images, `:v1` moves between the two builds of
    component-b as a manifest copy in the registry: no layer is pulled or uploaded, and
    the runner's engine stays empty."""
    image, registry = leaf_change.image, published.registry
    repository = published.repository(image)
    changed = registry.api.manifest_digest(repository, fingerprint_tag(
        report(leaf_change.src)["images"][image]["fingerprint"]
    ))
    assert changed is not None and changed != published.digests[image]
    layers = all_layers(published) | set(registry.api.layers(repository, changed))
    for src, serves in (
        (fresh_copy(leaf_change.src, fresh_runner / "changed"), changed),  # that branch
        (fresh_copy(published.src, fresh_runner / "unchanged"), published.digests[image]),
    ):
        clear_engine2(published.ns)
        mark = registry.mark()
        succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                       engine2=True))
        assert registry.api.manifest_digest(repository, TAG) == serves
        assert registry.manifest_puts(mark) == {repository: [TAG]}
        assert registry.blob_uploads(mark) == []
        assert registry.blob_gets(mark, layers) == []
        assert engine2_images(published.ns) == {}


def test_stale_local_name_is_untagged_or_replaced(
    published: Published,
    leaf_change: LeafChange,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """Engine 1 holds component-b built from the old inputs; the registry holds the new
    build (pushed from engine 2). Building the changed tree on engine 1 leaves no stale
    image under the bare name; with pull=1 the name is the new build."""
    image = leaf_change.image
    old_id = docker_client.images.get(image).id
    assert old_id is not None
    assert docker_client.images.get(image).labels["org.paitasks.fingerprint"] == \
        published.fingerprints[image]
    src = fresh_copy(leaf_change.src, tmp_path / "engine1")

    stdout = succeeded(doit_on(src, "-n", "4", "build", f"config={published.config}"))
    found = statuses(src)
    assert found[image] == REGISTRY_FRESH, stdout
    assert {found[name] for name in published.images if name != image} == {"up to date"}
    assert not on_engine1(docker_client, image), "the stale image is still named " + image
    # Only the name went: the old image, still tagged as it was pushed, stays.
    assert on_engine1(docker_client, old_id)

    succeeded(doit_on(src, "-n", "4", "build", f"config={published.config}", "pull=1"))
    assert statuses(src)[image] == "pulled"
    assert leaf_change.line.split('"')[1] in run_on_engine1(image)


def test_base_change_rebuilds_the_base_and_what_is_built_on_it(
    published: Published, fresh_runner: Path
) -> None:
    """tools-base changes: tools-base, tools (FROM it) and argbase (FROM tools) are
    rebuilt and pushed; every other image is up to date in the registry. (Every image
    of src-fixtures is built on base-image, so a change there would leave no "rest".)"""
    names, registry = published.names, published.registry
    src = fresh_copy(published.src, fresh_runner)
    token = secrets.token_hex(4)
    dockerfile = src / "tools" / "build" / f"{names['tools-base']}.dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"RUN echo {token} > /etc/base-change\n")
    rebuilt = {names["tools-base"], names["tools"], names["argbase"]}

    mark = registry.mark()
    stdout = succeeded(
        doit_on(src, "-n", "4", "build", "push", f"config={published.config}", engine2=True)
    )
    expected = {image: "done" if image in rebuilt else REGISTRY_FRESH
                for image in published.images}
    assert statuses(src) == expected, stdout
    images = report(src)["images"]
    puts = registry.manifest_puts(mark)
    assert set(puts) == {published.repository(image) for image in rebuilt}, puts
    for image in rebuilt:
        fingerprint = images[image]["fingerprint"]
        assert fingerprint != published.fingerprints[image]
        assert sorted(puts[published.repository(image)]) == \
            sorted([fingerprint_tag(fingerprint), TAG])
        assert images[image]["push"]["status"] == "done"
    # Those three, and base-image, which tools-base is built on: brought from the registry.
    assert {image_of(ref) for ref in engine2_images(published.ns)} == rebuilt | {
        names["base-image"]}
    assert run_on_engine2(names["argbase"], "cat", "/etc/base-change") == token
    assert run_on_engine2(names["argbase"], "cat", "/etc/argbase").startswith("argbase on tools")


# -- the layer cache -----------------------------------------------------------------


def test_rebuild_on_a_fresh_runner_reuses_the_registry_layer_cache(
    prefix: str,
    cleanup: None,
    engine2_cleanup: None,
    logged_registry: LoggedRegistry,
    tmp_path: Path,
) -> None:
    image = f"{prefix}-slow"
    src = tmp_path / "first" / "src"
    build = src / "slow" / "build"
    build.mkdir(parents=True)
    shutil.copy2(BUSYBOX, src / "slow" / "busybox")
    (src / "slow" / "note").write_text("first note\n")
    # The prefix in the command keeps engine 2's own build cache out of it.
    (build / f"{image}.dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo '
        + prefix
        + ' $(/bin/busybox date +%s) $(/bin/busybox cat /proc/sys/kernel/random/uuid)'
        ' > /stamp && /bin/busybox sleep 2"]\n'
        "COPY note /note\n"
    )
    config = write_config(tmp_path / "cfg", logged_registry.address, prefix, TAG)
    succeeded(doit_on(src, "build", "push", f"config={config}"))
    stamp = run_on_engine1_busybox(image, "/stamp")
    assert stamp.startswith(prefix)

    second = fresh_copy(src, tmp_path / "second")
    (second / "slow" / "note").write_text("second note\n")
    result = doit_on(second, "build", f"config={config}", "verbose=1", engine2=True)
    stdout = succeeded(result)
    assert statuses(second) == {image: "done"}
    assert run_on_engine2_busybox(image, "/note") == "second note\n"
    assert run_on_engine2_busybox(image, "/stamp") == stamp
    assert "CACHED" in stdout


# -- credentials and addresses ---------------------------------------------------------


@pytest.fixture(scope="module")
def login_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedRegistry]:
    """A registry of its own with an htpasswd login (user ci-user), requests counted."""
    folder = tmp_path_factory.mktemp("login-registry")
    with LoggedRegistry(folder, auth=("ci-user", PASSWORD)) as started:
        yield started


def test_docker_login_credentials_are_used(
    prefix: str, cleanup: None, login_registry: LoggedRegistry, tmp_path: Path
) -> None:
    """No username/password in the settings: `docker login`'s credentials (in
    DOCKER_CONFIG) are what the engine asks and pushes with."""
    src, base, app = small_tree(tmp_path / "tree", prefix)
    config = write_config(tmp_path / "cfg", login_registry.address, prefix, TAG)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    plugins = Path.home() / ".docker" / "cli-plugins"
    if plugins.is_dir():  # the user's docker CLI plugins (buildx), as before
        (docker_config / "cli-plugins").symlink_to(plugins)
    login = subprocess.run(
        ["docker", "--config", str(docker_config), "login", "-u", "ci-user",
         "--password-stdin", login_registry.address],
        input=PASSWORD, capture_output=True, text=True, timeout=60,
    )
    assert login.returncode == 0, output(login)
    env = {"DOCKER_CONFIG": str(docker_config)}

    first = doit_on(src, "build", "push", f"config={config}", env=env)
    succeeded(first)
    assert PASSWORD not in output(first)
    for image in (base, app):
        assert login_registry.api.manifest_digest(f"{prefix}/{image}", TAG) is not None

    mark = login_registry.mark()
    second = doit_on(src, "build", "push", f"config={config}", env=env)
    stdout = succeeded(second)
    assert login_registry.manifest_puts(mark) == {}
    rows = summary_rows(stdout, [base, app])
    for image in (base, app):
        assert "already in the registry" in rows[image], stdout


def test_a_registry_that_refuses_stops_the_run_before_any_work(
    prefix: str, cleanup: None, login_registry: LoggedRegistry, tmp_path: Path
) -> None:
    """No login anywhere (an empty DOCKER_CONFIG): the registry refuses, and the run
    says so, naming it, before any hook or build; no image is built or pushed."""
    src, base, app = small_tree(tmp_path / "tree", prefix)
    config = write_config(tmp_path / "cfg", login_registry.address, prefix, TAG)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    plugins = Path.home() / ".docker" / "cli-plugins"
    if plugins.is_dir():
        (docker_config / "cli-plugins").symlink_to(plugins)
    mark = login_registry.mark()
    result = doit_on(src, "build", "push", f"config={config}",
                  env={"DOCKER_CONFIG": str(docker_config)})
    text = output(result)
    assert result.returncode != 0, text
    assert f"registry {login_registry.address}: access to" in text, text
    assert "refused" in text and "docker login" in text, text
    assert "Traceback" not in text
    assert login_registry.manifest_puts(mark) == {}
    client = docker.from_env()
    for image in (base, app):
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(image)


def test_registry_by_host_name_over_plain_http(
    prefix: str,
    cleanup: None,
    engine2_cleanup: None,
    logged_registry: LoggedRegistry,
    registry_host_name: str,
    tmp_path: Path,
) -> None:
    port = logged_registry.address.rsplit(":", 1)[1]
    domain = f"{registry_host_name}:{port}"
    src, base, app = small_tree(tmp_path / "tree", prefix)
    config = write_config(tmp_path / "cfg", domain, prefix, TAG)

    succeeded(doit_on(src, "build", "push", f"config={config}"))
    for image in (base, app):
        assert logged_registry.api.manifest_digest(f"{prefix}/{image}", TAG) is not None

    mark = logged_registry.mark()
    succeeded(doit_on(src, "build", "push", f"config={config}"))
    assert logged_registry.manifest_puts(mark) == {}

    runner = fresh_copy(src, tmp_path / "runner")
    succeeded(doit_on(runner, "build", "push", f"config={config}", engine2=True))
    assert statuses(runner) == {base: REGISTRY_FRESH, app: REGISTRY_FRESH}
    assert logged_registry.manifest_puts(mark) == {}
    assert engine2_images(prefix) == {}


def test_unreachable_registry_stops_a_fresh_runner_before_any_work(
    prefix: str, engine2_cleanup: None, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    names = prefixed_tree(FIXTURES, src, prefix)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path / "cfg", address, prefix, TAG)
    result = doit_on(src, "-n", "4", "build", "push", f"config={config}", engine2=True)
    text = output(result)
    assert result.returncode != 0
    assert f"registry {address} is unreachable" in text, text
    assert "Traceback" not in text
    assert engine2_images(prefix) == {}
    assert not any(engine2("image", "inspect", name, check=False).returncode == 0
                   for name in names.values())
    assert not list(src.glob("*/generated")) and not list(src.glob("*/dependency"))


# -- pure logic: fingerprint tags, the run's registry answers, external digests ---------


class FakeEngine:
    """Answers registry questions from a dict, counting them; no Docker."""

    def __init__(
        self, served: dict[str, str | None], fail: Collection[str] = ()
    ) -> None:
        self.served = served
        self.fail = set(fail)
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def insecure_registry(self, host: str) -> bool:
        return True

    def has_mirrors(self) -> bool:
        return False

    def registry_digest(self, reference: str, auth: object = None) -> str | None:
        with self.lock:
            self.asked.append(reference)
        if reference in self.fail:
            raise EngineError(f"registry x is unreachable: {reference}")
        return self.served.get(reference)


SETTINGS = RegistrySettings("ns", "127.0.0.1:1", "v1")


class EngineOnly(RegistryView):
    """A view that asks every question through the engine (no registry to reach)."""

    def _client(self, host: str, again: object = None) -> None:
        return None


def engine_only(engine: FakeEngine) -> RegistryView:
    return EngineOnly(SETTINGS, lambda: engine)


@given(st.text("0123456789abcdef", min_size=64, max_size=64))
def test_fingerprint_tag_is_a_valid_tag_naming_the_fingerprint(hex_digits: str) -> None:
    tag = registry_module.fingerprint_tag(f"sha256:{hex_digits}")
    assert tag == f"paitasks-{hex_digits}"
    ref = reference.parse(f"127.0.0.1:5000/ns/image:{tag}")
    assert ref.tag == tag


def test_each_reference_is_asked_once_and_errors_are_not_remembered() -> None:
    engine = FakeEngine({"a": "sha256:1"}, fail={"bad"})
    view = engine_only(engine)
    assert view.digest("a") == "sha256:1"
    assert view.digest("a") == "sha256:1"
    assert view.digest("missing") is None
    assert view.digest("missing") is None
    assert engine.asked == ["a", "missing"]
    for _ in range(2):
        with pytest.raises(EngineError, match="unreachable"):
            view.digest("bad")
    assert engine.asked.count("bad") == 2
    view.learn("missing", "sha256:2")  # after a push
    assert view.digest("missing") == "sha256:2"


def test_prefetched_answers_serve_later_questions() -> None:
    engine = FakeEngine({f"r{i}": f"sha256:{i}" for i in range(20)}, fail={"bad"})
    view = engine_only(engine)
    view.prefetch([*(f"r{i}" for i in range(20)), "bad"])
    assert [view.digest(f"r{i}") for i in range(20)] == [f"sha256:{i}" for i in range(20)]
    with pytest.raises(EngineError):  # the caller gets the error, asked again
        view.digest("bad")
    view.close()
    assert sorted(engine.asked.count(f"r{i}") for i in range(20)) == [1] * 20


class RecordingClient:
    """A registry client that serves one image (digest sha256:d, labelled sha256:f)
    under any tag, recording what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def _note(self, what: str) -> None:
        with self.lock:
            self.asked.append(what)

    def digest(self, repository: str, tag: str, image: str | None = None) -> str:
        self._note(f"HEAD {tag}")
        return "sha256:d"

    def served(self, repository: str, tag: str, image: str | None = None
               ) -> tuple[str, bytes, str]:
        self._note(f"GET {tag}")
        return "sha256:d", b"{}", "application/json"

    def label(self, repository: str, manifest: bytes, name: str, image: str | None = None
              ) -> str:
        self._note("config")
        return "sha256:f"


@pytest.mark.parametrize(("domain", "question"), [("h.io", "GET"), ("public", "HEAD")])
def test_the_label_of_what_tag_serves_is_read_ahead_and_once(domain: str, question: str) -> None:
    """`:tag` is asked with a GET and its image's label read in the background, so the
    check of the fingerprint tag that serves the same image needs no second request;
    not on Docker Hub, which counts each GET of a manifest as a pull."""
    view = RegistryView(RegistrySettings("ns", domain, "v1"), lambda: FakeEngine({}))
    client = RecordingClient()
    assert view._served(client, view.by_tag("x")) == "sha256:d"  # type: ignore[arg-type]
    found = view._served(client, view.by_fingerprint("x", "sha256:f"))  # type: ignore[arg-type]
    assert found == "sha256:d"
    view.close()
    assert client.asked[0] == f"{question} v1"
    assert sorted(client.asked) == sorted([f"{question} v1", "GET paitasks-f", "config"])
    assert view.distrusted == {}


def test_a_tag_labelled_with_the_fingerprint_spares_the_question() -> None:
    """`find`: where `:tag` (asked when the run began) serves an image labelled with the
    fingerprint a check computed, that image is the answer and nothing more is asked;
    another fingerprint, or an image whose `:tag` was not asked, is asked under its
    fingerprint tag."""
    view = RegistryView(RegistrySettings("ns", "h.io", "v1"), lambda: FakeEngine({}))
    client = RecordingClient()
    fingerprint_tags: list[str] = []

    def ask(reference: str) -> str | None:
        fingerprint_tags.append(reference)
        return None

    view._ask = ask  # type: ignore[method-assign]
    tag = view.by_tag("x")
    view.learn(tag, view._served(client, tag))  # type: ignore[arg-type]
    assert view.find("x", "sha256:f") == "sha256:d"
    assert view.tagged("x", "sha256:f")
    assert not view.tagged("x", "sha256:g")
    # Without `ask` (the background bring), nothing more is asked: what is not known
    # yet is not found.
    assert view.find("z", "sha256:f", ask=False) is None
    assert view.answer(view.by_fingerprint("z", "sha256:f")) == (False, None)
    assert view.find("x", "sha256:g") is None
    assert view.answer(view.by_fingerprint("x", "sha256:g")) == (True, None)
    assert view.answer(tag) == (True, "sha256:d")
    assert view.find("y", "sha256:f") is None
    view.close()
    assert sorted(client.asked) == ["GET v1", "config"]
    assert fingerprint_tags == [view.by_fingerprint("x", "sha256:g"),
                                view.by_fingerprint("y", "sha256:f")]


def test_names_in_the_registry() -> None:
    view = RegistryView(SETTINGS, lambda: FakeEngine({}))
    assert view.by_tag("x") == "127.0.0.1:1/ns/x:v1"
    assert view.by_fingerprint("x", "sha256:ab") == "127.0.0.1:1/ns/x:paitasks-ab"
    assert view.by_digest("x", "sha256:cd") == "127.0.0.1:1/ns/x@sha256:cd"
    assert view.auth is None
    login = RegistryView(
        RegistrySettings("ns", "h.io", "v1", "u", "p"), lambda: FakeEngine({})
    )
    assert login.auth == {"username": "u", "password": "p"}


@pytest.mark.parametrize(
    ("name", "local", "served", "expected"),
    [
        # pulled: the digest it was pulled by, whatever the registry serves now
        ("ubuntu:20.04", LocalImage("sha256:id", {}, ("ubuntu@sha256:d1",)), "sha256:d2",
         "sha256:d1"),
        ("127.0.0.1:5000/a/b:1", LocalImage("sha256:id", {}, ("127.0.0.1:5000/a/b@sha256:d1",)),
         None, "sha256:d1"),
        # a digest of another repository does not count; built here: its id
        ("acme/x:1", LocalImage("sha256:id", {}, ("acme/y@sha256:d1",)), None, "sha256:id"),
        # not here: what the registry serves, else unknown
        ("acme/x:1", None, "sha256:d3", "sha256:d3"),
        ("acme/x:1", None, None, ""),
    ],
)
def test_an_external_image_counts_by_its_digest(
    name: str, local: LocalImage | None, served: str | None, expected: str
) -> None:
    engine = FakeEngine({name: served})
    remote = engine_only(engine)
    images = {engine_name(name): local} if local else {}
    assert external_digest(images, remote, name) == expected


class FlakyEngine(FakeEngine):
    """Fails each reference's first `flaky` questions with what dockerd says of a 503."""

    def __init__(self, served: dict[str, str | None], flaky: int = 0,
                 error: str = "") -> None:
        super().__init__(served)
        self.flaky = flaky
        self.error = error

    def registry_digest(self, reference: str, auth: object = None) -> str | None:
        with self.lock:
            self.asked.append(reference)
            asked = self.asked.count(reference)
        if self.error:
            raise EngineError(self.error)
        if asked <= self.flaky:
            raise EngineError(f"registry h.io: cannot read {reference}: 503 Service Unavailable")
        return self.served.get(reference)


QUICK = Policy(tries=3, within=5.0)


def test_external_bases_are_asked_of_the_engine_once_each_at_once() -> None:
    engine = FlakyEngine({f"h.io/b{i}:1": f"sha256:{i}" for i in range(20)}, flaky=1)
    bases = Bases(lambda: engine, QUICK)
    bases.ask([f"h.io/b{i}:1" for i in range(20)] * 2)
    assert [bases.digest(f"h.io/b{i}:1") for i in range(20)] == [f"sha256:{i}" for i in range(20)]
    assert bases.problem("h.io/b3:1") is None
    # every one failed once (a 503) and was asked again, never more
    assert sorted(engine.asked.count(f"h.io/b{i}:1") for i in range(20)) == [2] * 20
    bases.close()


@pytest.mark.parametrize(
    ("error", "why", "tries"),
    [
        ('registry docker.io is unreachable: Get "https://registry-1.docker.io/v2/": '
         "proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused",
         "registry-1.docker.io unreachable (proxy refused the connection)", 1),
        ("registry docker.io: access to ubuntu:16.04 refused (unauthorized)",
         "registry-1.docker.io refused access", 1),
        ("registry docker.io: cannot read ubuntu:16.04: 503 Service Unavailable",
         "registry-1.docker.io failed (registry docker.io: cannot read ubuntu:16.04: 503 Service "
         "Unavailable) after 3 tries", 3),
    ],
)
def test_a_base_the_engine_cannot_pull_says_why(error: str, why: str, tries: int) -> None:
    engine = FlakyEngine({}, error=error)
    bases = Bases(lambda: engine, QUICK)
    assert bases.problem("ubuntu:16.04") == (
        f"base docker.io/library/ubuntu:16.04 could not be pulled: {why}")
    assert len(engine.asked) == tries  # what no other try fixes is asked once
    missing = Bases(lambda: FlakyEngine({}), QUICK)
    assert missing.problem("gcr.io/x/pause:3.1") == (
        "base gcr.io/x/pause:3.1 could not be pulled: gcr.io does not have it")


def test_without_a_registry_an_absent_external_image_is_unknown() -> None:
    assert external_digest({}, None, "acme/x:1") == ""


@pytest.mark.parametrize(
    ("host", "config", "insecure"),
    [
        ("lan:5000", {"IndexConfigs": {"lan:5000": {"Secure": False}}}, True),
        ("127.0.0.1:5000", {"InsecureRegistryCIDRs": ["127.0.0.0/8"]}, True),
        ("localhost:5000", {"InsecureRegistryCIDRs": ["127.0.0.0/8"]}, True),
        ("10.1.2.3:5000", {"InsecureRegistryCIDRs": ["127.0.0.0/8"]}, False),
        ("10.1.2.3:5000", {"InsecureRegistryCIDRs": ["10.0.0.0/8"]}, True),
        ("[::1]:5000", {"InsecureRegistryCIDRs": ["::1/128"]}, True),
        ("127.0.0.1:5000", {}, False),
        ("docker.io", {"IndexConfigs": {"docker.io": {"Secure": True}}}, False),
    ],
)
def test_insecure_registries_as_the_engine_has_them(
    host: str, config: dict[str, object], insecure: bool
) -> None:
    assert is_insecure(host, config) is insecure


def test_references_split_into_repository_and_tag_or_digest() -> None:
    assert _split("ns/x:paitasks-ab") == ("ns/x", "paitasks-ab")
    assert _split("ns/deep/x@sha256:cd") == ("ns/deep/x", "sha256:cd")
    assert _split("ns/x:v1") == ("ns/x", "v1")


# -- pure logic of the registry client: scopes, tokens, the journal, hints ----------------


def test_a_challenge_scope_lists_repositories_and_actions() -> None:
    assert registry_module._scopes("repository:ns/x:pull,push repository:ns/y:pull") == {
        ("ns/x", frozenset({"pull", "push"})), ("ns/y", frozenset({"pull"})),
    }
    assert registry_module._scopes("registry:catalog:*") == frozenset()


def test_scopes_of_one_repository_are_merged() -> None:
    merged = registry_module._merged([
        ("ns/x", frozenset({"pull"})), ("ns/y", frozenset({"pull"})),
        ("ns/x", frozenset({"pull", "push"})),
    ])
    assert merged == [("ns/x", frozenset({"pull", "push"})), ("ns/y", frozenset({"pull"}))]


def test_a_token_serves_the_scopes_it_was_fetched_for_until_it_expires() -> None:
    client = registry_module.Client(
        "h.io", "https", lambda: None, Policy(), registry_module.Journal()
    )
    pull_push = ("ns/x", frozenset({"pull", "push"}))
    client._tokens.append((frozenset({pull_push}), "Bearer t1", time.monotonic() + 60))
    assert client._cached(("ns/x", frozenset({"pull"}))) == "Bearer t1"
    assert client._cached(pull_push) == "Bearer t1"
    assert client._cached(("ns/y", frozenset({"pull"}))) is None
    client._tokens[:] = [(frozenset({pull_push}), "Bearer t1", time.monotonic() - 1)]
    assert client._cached(pull_push) is None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    data: bytes


def test_a_manifest_or_config_is_read_once_per_run_and_only_if_it_matches_its_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = registry_module.Client(
        "h.io", "https", lambda: None, Policy(), registry_module.Journal()
    )
    body = b'{"schemaVersion": 2}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    served = {"digest": digest}  # what the registry says the manifest's digest is
    asked: list[str] = []

    def once(method: str, url: str, headers: Any, data: Any = None, redirect: bool = False
             ) -> Answer:
        asked.append(f"{method} {url.removeprefix('https://h.io')}")
        return Answer(200, {"Docker-Content-Digest": served["digest"],
                            "Content-Type": "application/json"}, body)

    monkeypatch.setattr(client, "_once", once)
    assert client.served("ns/x", "v1") == (digest, body, "application/json")
    assert client.manifest("ns/x", digest) == (body, "application/json")
    assert client.blob("ns/x", digest) == body  # the same bytes: kept by digest
    assert asked == ["GET /v2/ns/x/manifests/v1"]
    assert client.manifest("ns/y", digest) == (body, "application/json")  # another repository
    assert asked[1:] == [f"GET /v2/ns/y/manifests/{digest}"]
    wrong = served["digest"] = "sha256:" + "0" * 64  # an answer that is not what it says
    client.served("ns/z", "v1")
    client.manifest("ns/z", wrong)
    assert asked[2:] == ["GET /v2/ns/z/manifests/v1", f"GET /v2/ns/z/manifests/{wrong}"]
    assert client.put_manifest("ns/w", "v2", body, "application/json") == wrong
    client.manifest("ns/w", digest)  # stored under another digest: not kept
    assert asked[-1] == f"GET /v2/ns/w/manifests/{digest}"
    served["digest"] = digest
    assert client.put_manifest("ns/v", "v2", body, "application/json") == digest
    count = len(asked)
    assert client.manifest("ns/v", digest) == (body, "application/json")  # as stored here
    assert len(asked) == count


def test_the_journal_counts_time_in_flight_once() -> None:
    journal = registry_module.Journal()
    for start, end in ((0.0, 1.0), (0.5, 1.5), (3.0, 4.0)):
        journal.record(registry_module.Exchange("HEAD ns/x:v1", "h", start, end, 1, "200"))
    assert journal.busy() == pytest.approx(2.5)


def test_how_a_registry_was_reached_is_kept_for_the_next_run(tmp_path: Path) -> None:
    hints = tmp_path / "registries.json"
    hints.write_text(json.dumps({
        "h.io:5000": {"scheme": "http", "login": "bearer", "realm": "https://auth.h.io/t",
                      "service": "h"},
        "odd:1": {"scheme": "ftp"},
    }))
    view = RegistryView(SETTINGS, lambda: FakeEngine({}), hints=hints)
    found = view._hint("h.io:5000")
    assert found is not None
    client = registry_module.Client.from_hint(
        "h.io:5000", found, lambda: ("u", "p"), view.policy, view.journal
    )
    assert (client.scheme, client.hinted, client.wants_login) == ("http", True, True)
    assert client.hint() == {"scheme": "http", "login": "bearer",
                             "realm": "https://auth.h.io/t", "service": "h"}
    assert view._hint("odd:1") is None
    assert view._hint("elsewhere") is None
    client.close()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("HTTPConnection(host='h', port=1): Failed to establish a new connection: "
         "[Errno 111] Connection refused", "connection refused"),
        ("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
         "connection reset"),
        ("('Connection aborted.', RemoteDisconnected('Remote end closed connection'))",
         "connection closed before an answer"),
        ("something new", "something new"),
    ],
)
def test_network_failures_in_a_users_words(text: str, words: str) -> None:
    assert registry_module._network_reason(OSError(text)) == words
