"""Several builders (`builders=NAME,...`): docker contexts that build, with a registry.

Engine 1 (context `default`) and engine 2 (context `paitasks-engine2`) are real engines;
a registry of this module's own logs every request. A tree of a FROM-scratch base and
independent images built on it is spread over both engines; what happened is read the
way a user would: report.json and the summary, each engine's image store, the registry's
HTTP API and access log, `docker run` of the images. An engine that stops answering is a
docker context whose socket is a relay process the test kills by its pid.

The spread tree (`spread`) is shared by the tests that read it, in file order: the
first run, the rerun from a fresh copy, the plan, then the pull onto engine 1. Every
other test has a tree, namespace and engine state of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from paitasks.builders import Builders, buildkit_takes_named_contexts
from paitasks.errors import EngineError
from tests.support import (
    BUILDKIT,
    BUILDKIT_SOCKET,
    BUSYBOX,
    CONTEXT,
    DODO,
    ENGINE2_SOCKET,
    PAI_BUILD,
    DockerContext,
    LoggedRegistry,
    UnixRelay,
    clear_engine1,
    clear_engine2,
    doit_on,
    engine2,
    engine2_images,
    fingerprint_tag,
    image_of,
    output,
    pai_build,
    report,
    run_on_engine1,
    statuses,
    succeeded,
    summary_rows,
    user_environ,
    write_config,
)

pytestmark = pytest.mark.engine

TAG = "v1"
ENGINE1 = "default"
BOTH = f"{ENGINE1},{CONTEXT}"
REGISTRY_FRESH = "up to date in the registry"
BASE_MARK = "/etc/base-mark"
OWN_FILE = "/etc/own"


# -- helpers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A base `<prefix>-base` (FROM scratch, busybox) and leaves `<prefix>-leafN`, each
    its own component FROM the base, with a `RUN sleep` and a file of its own. The first
    leaf's component has a build-pre.sh that appends to `<root>/hook-ran` and makes its
    `generated/` folder: a sign that a hook ran."""

    src: Path
    base: str
    leaves: tuple[str, ...]

    @property
    def root(self) -> Path:
        return self.src.parent

    @property
    def images(self) -> list[str]:
        return sorted((self.base, *self.leaves))

    @property
    def hook_ran(self) -> Path:
        return self.root / "hook-ran"


def make_tree(root: Path, prefix: str, leaves: int, sleep: int) -> Tree:
    src = root / "src"
    base = f"{prefix}-base"
    (src / "base" / "build").mkdir(parents=True)
    shutil.copy2(BUSYBOX, src / "base" / "busybox")
    (src / "base" / "mark").write_text(f"{base}\n")
    (src / "base" / "build" / f"{base}.dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        f"COPY mark {BASE_MARK}\n"
    )
    names = []
    for number in range(leaves):
        name = f"{prefix}-leaf{number}"
        folder = src / f"leaf{number}"
        (folder / "build").mkdir(parents=True)
        (folder / "own").write_text(f"{name}\n")
        (folder / "build" / f"{name}.dockerfile").write_text(
            f"FROM {base}\nRUN sleep {sleep}\nCOPY own {OWN_FILE}\n"
        )
        names.append(name)
    (src / "leaf0" / "build" / "build-pre.sh").write_text(
        'mkdir -p "$PAI_COMPONENT_DIR/generated"\n'
        'echo "$PAI_COMPONENT" >> "$PAI_ROOT_DIR/hook-ran"\n'
    )
    return Tree(src, base, tuple(names))


def built_on(tree: Tree) -> dict[str, str]:
    """Image -> the engine report.json says built it in the last run."""
    images = report(tree.src)["images"]
    return {name: entry["builder"] for name, entry in images.items() if "builder" in entry}


def engine1_references(client: docker.DockerClient, prefix: str) -> set[str]:
    """Engine 1's tags (`repo:tag`) that carry `prefix`, from one listing."""
    return {
        tag
        for entry in client.api.images()
        for tag in entry.get("RepoTags") or ()
        if prefix in tag
    }


def engine2_tags(prefix: str) -> set[str]:
    return {reference for reference in engine2_images(prefix) if "@" not in reference}


def registry_label(registry: LoggedRegistry, repository: str, reference: str) -> str | None:
    """The fingerprint label in the config of the image the registry serves."""
    manifest = registry.api.manifest(repository, reference)
    path = f"/v2/{repository}/blobs/{manifest['config']['digest']}"
    with registry.api._request("GET", path) as response:
        config = json.load(response)
    labels = (config.get("config") or {}).get("Labels") or {}
    return labels.get("org.paitasks.fingerprint")


def assert_published(registry: LoggedRegistry, ns: str, tree: Tree) -> dict[str, str]:
    """Every image's `:v1` and its fingerprint tag serve the same digest, an image that
    carries that fingerprint; returns image -> digest."""
    digests = {}
    for image, entry in report(tree.src)["images"].items():
        repository = f"{ns}/{image}"
        digest = registry.api.manifest_digest(repository, TAG)
        assert digest is not None, f"{repository}:{TAG} is not in the registry"
        by_fingerprint = registry.api.manifest_digest(
            repository, fingerprint_tag(entry["fingerprint"])
        )
        assert by_fingerprint == digest, (image, digest, by_fingerprint)
        assert registry_label(registry, repository, digest) == entry["fingerprint"]
        digests[image] = digest
    assert sorted(digests) == tree.images
    return digests


def assert_no_hook_build_or_push(tree: Tree, registry: LoggedRegistry, mark: int,
                                 client: docker.DockerClient, prefix: str) -> None:
    """No hook ran, no temp folder is left, nothing was pushed or built."""
    assert not tree.hook_ran.exists()
    assert not list(tree.src.glob("*/generated")), list(tree.src.glob("*/generated"))
    assert not list(tree.src.glob("*/dependency"))
    assert registry.manifest_puts(mark) == {}
    assert registry.blob_uploads(mark) == []
    assert engine1_references(client, prefix) == set()
    assert engine2_images(prefix) == {}


def assert_leaves_run(tree: Tree) -> None:
    """Each leaf, on engine 1, runs and shows its own file and its base's."""
    for leaf in tree.leaves:
        shown = run_on_engine1(leaf, "/bin/cat", OWN_FILE, BASE_MARK)
        assert shown.split() == [leaf, tree.base]


def assert_refused_before_any_work(
    tmp_path: Path, prefix: str, registry: LoggedRegistry, client: docker.DockerClient,
    engines: str, message: str,
) -> None:
    """`doit build push builders=BUILDERS` on a new tree fails saying `message`, and
    nothing ran."""
    tree = make_tree(tmp_path, prefix, leaves=2, sleep=0)
    config = write_config(tmp_path / "cfg", registry.address, prefix, TAG)
    mark = registry.mark()
    result = doit_on(tree.src, "-n", "4", "build", "push", f"config={config}",
                     f"builders={engines}")
    text = output(result)
    assert result.returncode != 0, text
    assert message in text, text
    assert "Traceback" not in text, text
    assert_no_hook_build_or_push(tree, registry, mark, client, prefix)


# -- the spread tree -------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """The first run: the tree built on both engines and pushed to `registry`."""

    tree: Tree
    ns: str
    config: Path
    registry: LoggedRegistry
    result: subprocess.CompletedProcess[str]
    engine1_after: set[str]  # engine 1's tags with the prefix right after the run
    engine2_after: set[str]  # engine 2's


@pytest.fixture(scope="module")
def spread(
    ns: str, docker_client: docker.DockerClient, logged_registry: LoggedRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Spread:
    root = tmp_path_factory.mktemp("spread")
    tree = make_tree(root, ns, leaves=7, sleep=1)
    config = write_config(root / "cfg", logged_registry.address, ns, TAG)
    result = doit_on(tree.src, "-n", "4", "build", "push", f"config={config}", f"builders={BOTH}")
    succeeded(result)
    return Spread(tree, ns, config, logged_registry, result,
                  engine1_references(docker_client, ns), engine2_tags(ns))


def test_builds_spread_over_both_engines_and_reach_the_registry(
    spread: Spread, docker_client: docker.DockerClient
) -> None:
    tree, ns = spread.tree, spread.ns
    found = report(tree.src)["images"]
    assert sorted(found) == tree.images
    assert {name: entry["status"] for name, entry in found.items()} == dict.fromkeys(
        tree.images, "done"
    ), found
    engines = built_on(tree)
    assert sorted(engines) == tree.images, found
    counts = {name: list(engines.values()).count(name) for name in (ENGINE1, CONTEXT)}
    assert counts[ENGINE1] >= 1 and counts[CONTEXT] >= 1, engines
    assert sum(counts.values()) == len(tree.images), engines
    assert tree.hook_ran.read_text().split() == ["leaf0"]  # the hooks did run

    # The summary names the engine of each build.
    rows = summary_rows(spread.result.stdout, tree.images)
    for image, engine in engines.items():
        assert f"done (on {engine})" in rows[image], spread.result.stdout

    # Each engine's store holds what it built (pushed as the registry's :v1), nothing else.
    on_engine1 = {image_of(tag) for tag in spread.engine1_after}
    on_engine2 = {image_of(tag) for tag in spread.engine2_after}
    assert on_engine1 == {image for image, e in engines.items() if e == ENGINE1}, (
        spread.engine1_after, engines)
    assert on_engine2 == {image for image, e in engines.items() if e == CONTEXT}, (
        spread.engine2_after, engines)
    # Nothing under the bare names on either engine: nothing came back to engine 1.
    for image in tree.images:
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(f"{image}:latest")
        assert engine2("image", "inspect", image, check=False).returncode != 0

    digests = assert_published(spread.registry, ns, tree)
    # Every leaf, wherever built, was built on the registry's base, named by digest.
    base_repository = f"{ns}/{tree.base}"
    base_reference = f"{spread.registry.address}/{base_repository}@{digests[tree.base]}"
    base_layers = spread.registry.api.layers(base_repository, TAG)
    for leaf in tree.leaves:
        dockerfile = tree.root / ".paitasks" / "dockerfiles" / f"{leaf}.dockerfile"
        assert dockerfile.read_text().splitlines()[0] == f"FROM {base_reference}", leaf
        layers = spread.registry.api.layers(f"{ns}/{leaf}", TAG)
        assert layers[: len(base_layers)] == base_layers and len(layers) > len(base_layers)


def test_rerun_from_a_fresh_copy_builds_and_pushes_nothing(
    spread: Spread, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    runner = Tree(tmp_path / "src", spread.tree.base, spread.tree.leaves)
    shutil.copytree(spread.tree.src, runner.src, symlinks=True)
    assert not (runner.root / ".paitasks").exists()
    before = {image: spread.registry.api.manifest_digest(f"{spread.ns}/{image}", TAG)
              for image in runner.images}
    engine1_before = engine1_references(docker_client, spread.ns)
    engine2_before = engine2_images(spread.ns)
    mark = spread.registry.mark()

    result = doit_on(runner.src, "-n", "4", "build", "push", f"config={spread.config}",
                     f"builders={BOTH}")
    stdout = succeeded(result)
    assert statuses(runner.src) == dict.fromkeys(runner.images, REGISTRY_FRESH), stdout
    assert built_on(runner) == {}
    assert spread.registry.manifest_puts(mark) == {}
    assert spread.registry.blob_uploads(mark) == []
    layers = {layer for image in runner.images
              for layer in spread.registry.api.layers(f"{spread.ns}/{image}", TAG)}
    assert spread.registry.blob_gets(mark, layers) == []  # nothing pulled, nothing built
    # Only each image's config, read once to check its fingerprint label.
    assert len(spread.registry.blob_gets(mark)) == len(runner.images)
    assert engine1_references(docker_client, spread.ns) == engine1_before
    assert engine2_images(spread.ns) == engine2_before
    rows = summary_rows(stdout, runner.images)
    for image in runner.images:
        assert REGISTRY_FRESH in rows[image] and "already in the registry" in rows[image], stdout
        assert "(on " not in rows[image], stdout
    after = {image: spread.registry.api.manifest_digest(f"{spread.ns}/{image}", TAG)
             for image in runner.images}
    assert after == before
    assert not (runner.root / ".paitasks" / "dockerfiles").exists()


def test_a_run_that_builds_nothing_does_not_load_python_on_whales(
    spread: Spread, tmp_path: Path
) -> None:
    """The engines are checked through the docker CLI; python-on-whales is for builds."""
    src = tmp_path / "src"  # a copy: the spread tree's report stays the first run's
    shutil.copytree(spread.tree.src, src, symlinks=True)
    arguments = ["-f", str(DODO), "-n", "4", "build", "push", f"src={src}",
                 f"config={spread.config}", f"builders={BOTH}"]
    code = (
        "import sys\n"
        "from doit.doit_cmd import DoitMain\n"
        f"assert DoitMain().run({arguments!r}) == 0\n"
        "print('LOADED', 'python_on_whales' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600, env=user_environ(), cwd=tmp_path)
    assert result.returncode == 0, output(result)
    assert "LOADED False" in result.stderr, output(result)
    assert "up to date" in result.stdout


def test_plan_names_the_builders_and_where_each_image_was_built(
    spread: Spread, tmp_path: Path
) -> None:
    tree = spread.tree
    engines = built_on(tree)
    assert sorted(engines) == tree.images

    result = pai_build("plan", "-c", str(spread.config), "--builders", BOTH, "--src",
                       str(tree.src), cwd=tree.root)
    stdout = succeeded(result)
    assert f"builders: {ENGINE1}, {CONTEXT} " in stdout, stdout
    for image, engine in engines.items():
        assert (f"up to date in the registry: {image} (last built on builder {engine})"
                in stdout.splitlines()), stdout
    assert f"0 of {len(tree.images)} images would be rebuilt" in stdout, stdout

    # A copy of the root (with its .paitasks/) where one leaf changed: plan and
    # `doit info` say it would rebuild, and where it was built last.
    copy = Tree(tmp_path / "root" / "src", tree.base, tree.leaves)
    shutil.copytree(tree.root, copy.root, symlinks=True)
    leaf = tree.leaves[0]
    (copy.src / "leaf0" / "own").write_text("changed\n")
    result = pai_build("plan", "-c", str(spread.config), "--builders", BOTH, "--src",
                       str(copy.src), cwd=copy.root)
    stdout = succeeded(result)
    line = next((text for text in stdout.splitlines() if text.startswith(f"rebuild {leaf}:")),
                None)
    assert line is not None and f"last built on builder {engines[leaf]}" in line, stdout
    assert f"1 of {len(tree.images)} images would be rebuilt" in stdout, stdout
    info = doit_on(copy.src, "info", f"build-image:{leaf}", f"config={spread.config}",
                   f"builders={BOTH}")
    assert f"last built on builder {engines[leaf]}" in output(info), output(info)
    unchanged = tree.leaves[1]  # up to date: doit shows no reasons, the task's doc says it
    info = doit_on(copy.src, "info", f"build-image:{unchanged}", f"config={spread.config}",
                   f"builders={BOTH}")
    text = output(info)
    assert "up-to-date" in text and f"last built on builder {engines[unchanged]}" in text, text


def test_pulled_images_run_with_their_own_and_their_base_files(
    spread: Spread, docker_client: docker.DockerClient
) -> None:
    """Engine 1 pulls (pull=1) what the two engines built; each image runs there."""
    tree = spread.tree
    digests = assert_published(spread.registry, spread.ns, tree)
    mark = spread.registry.mark()
    stdout = succeeded(doit_on(tree.src, "-n", "4", "build", f"config={spread.config}", "pull=1"))
    assert statuses(tree.src) == dict.fromkeys(tree.images, "pulled"), stdout
    assert spread.registry.manifest_puts(mark) == {}
    for image in tree.images:
        pulled = docker_client.images.get(image)
        assert f"{spread.registry.address}/{spread.ns}/{image}@{digests[image]}" in (
            pulled.attrs["RepoDigests"])
    assert_leaves_run(tree)


@pytest.fixture
def engines_clean(
    prefix: str, cleanup: None, engine2_cleanup: None, docker_client: docker.DockerClient
) -> Iterator[None]:
    """Afterwards, neither engine holds an image whose name carries the test's prefix,
    also under a digest only (what a pull by digest leaves once its tags are gone)."""
    yield
    clear_engine1(docker_client, prefix)
    clear_engine2(prefix)


# -- before any work: unknown engines, no registry --------------------------------------


def test_an_unknown_context_stops_the_run_before_any_work(
    prefix: str, engines_clean: None, logged_registry: LoggedRegistry,
    docker_client: docker.DockerClient, tmp_path: Path,
) -> None:
    tree = make_tree(tmp_path, prefix, leaves=2, sleep=0)
    config = write_config(tmp_path / "cfg", logged_registry.address, prefix, TAG)
    missing = f"{prefix}-nosuch"
    mark = logged_registry.mark()
    ways: list[tuple[tuple[str, ...], dict[str, str]]] = [
        ((f"builders={ENGINE1},{missing}",), {}),  # the doit variable
        ((), {"PAI_ENGINES": f"{missing},{CONTEXT}"}),  # the environment variable
    ]
    for arguments, env in ways:
        result = doit_on(tree.src, "-n", "4", "build", "push", f"config={config}", *arguments,
                         env=env)
        text = output(result)
        assert result.returncode != 0, text
        assert f"no docker context or buildx builder named '{missing}'" in text, text
        assert CONTEXT in text.split("there are:", 1)[-1], text  # it lists the known ones
        assert "Traceback" not in text, text
        assert_no_hook_build_or_push(tree, logged_registry, mark, docker_client, prefix)


def test_engines_without_a_registry_stop_with_a_clear_error(
    prefix: str, engines_clean: None, logged_registry: LoggedRegistry,
    docker_client: docker.DockerClient, tmp_path: Path,
) -> None:
    tree = make_tree(tmp_path, prefix, leaves=2, sleep=0)
    mark = logged_registry.mark()
    result = doit_on(tree.src, "-n", "4", "build", f"builders={BOTH}")
    text = output(result)
    assert result.returncode != 0, text
    assert f"builders={BOTH} needs a registry (config=DIR or PAI_CONFIG)" in text, text
    assert "Traceback" not in text, text
    cli = subprocess.run(
        [PAI_BUILD, "build", "--builders", BOTH, "--src", str(tree.src)],
        cwd=tree.root, capture_output=True, text=True, timeout=120,
        env=user_environ(),
    )
    assert cli.returncode != 0, output(cli)
    assert "needs a registry (config=DIR or PAI_CONFIG)" in output(cli), output(cli)
    assert_no_hook_build_or_push(tree, logged_registry, mark, docker_client, prefix)


# -- an engine that stops answering ------------------------------------------------------


@pytest.fixture
def relay(prefix: str, tmp_path: Path) -> Iterator[tuple[UnixRelay, str]]:
    """A relay process to engine 2's socket and a docker context `<prefix>-relay` on
    it; the relay is not started. Both go afterwards."""
    folder = tmp_path / "relay"
    folder.mkdir()
    relay = UnixRelay(folder / "engine.sock", ENGINE2_SOCKET, folder / "requests.log")
    try:
        with DockerContext(f"{prefix}-relay", f"unix://{relay.listen}") as context:
            yield relay, context
    finally:
        relay.stop()
        # buildx keeps a note per context it built with; the context is gone, so is it
        (Path.home() / ".docker" / "buildx" / "activity" / f"{prefix}-relay").unlink(
            missing_ok=True)
    listed = subprocess.run(["docker", "context", "ls", "--format", "{{.Name}}"],
                            capture_output=True, text=True, timeout=60).stdout.split()
    assert context not in listed


def test_an_engine_that_does_not_answer_stops_the_run_before_any_work(
    prefix: str, engines_clean: None, logged_registry: LoggedRegistry,
    docker_client: docker.DockerClient, relay: tuple[UnixRelay, str], tmp_path: Path,
) -> None:
    proxy, context = relay
    proxy.start()  # it answers as engine 2 does...
    info = subprocess.run(["docker", "--context", context, "info", "--format", "{{.ID}}"],
                          capture_output=True, text=True, timeout=60)
    assert info.stdout.strip() == engine2("info", "--format", "{{.ID}}").stdout.strip()
    proxy.stop()  # ...until it is gone: its socket refuses
    assert_refused_before_any_work(
        tmp_path, prefix, logged_registry, docker_client, f"{ENGINE1},{context}",
        f"builder {context} (unix://{proxy.listen}) does not answer",
    )


@dataclass(frozen=True)
class Dying:
    """A builder of `builders=` behind a relay (not started), and how to tell that a
    build on it has started."""

    relay: UnixRelay
    name: str
    building: Callable[[list[str]], bool]  # of the relay's requests


@pytest.fixture(params=["context", "builder"])
def dying(
    request: pytest.FixtureRequest, prefix: str, tmp_path: Path
) -> Iterator[Dying]:
    """A docker context on a relay to engine 2 (a build has started once the relay
    carried a `/session` request), or a buildx builder of the remote driver on a relay
    to dev-engine's buildkitd (once more than the 8 HTTP/2 connections of the run's
    check and builder inspection were made: each buildx process opens 4)."""
    if request.param == "context":
        proxy, context = request.getfixturevalue("relay")
        yield Dying(proxy, context, lambda requests: any("/session" in line for line in requests))
        return
    request.getfixturevalue("buildkit_up")
    folder = tmp_path / "relay"
    folder.mkdir()
    proxy = UnixRelay(folder / "buildkitd.sock", BUILDKIT_SOCKET, folder / "requests.log")
    name = f"{prefix}-relay"
    subprocess.run(["docker", "buildx", "create", "--name", name, "--driver", "remote",
                    f"unix://{proxy.listen}"], check=True, capture_output=True, timeout=60)
    try:
        yield Dying(proxy, name, lambda requests: len(requests) > 8)
    finally:
        proxy.stop()
        subprocess.run(["docker", "buildx", "rm", name], capture_output=True, timeout=60)


def test_a_builder_that_stops_mid_run_fails_only_its_builds(
    prefix: str, engines_clean: None, logged_registry: LoggedRegistry,
    docker_client: docker.DockerClient, dying: Dying, tmp_path: Path,
) -> None:
    """The relay dies once the first build on it has started: the builds there fail,
    naming the engine, those on `default` complete, nothing is published; with the
    relay back, the rerun builds only the missing images and publishes everything."""
    proxy, context = dying.relay, dying.name
    proxy.start()
    tree = make_tree(tmp_path, prefix, leaves=6, sleep=3)
    config = write_config(tmp_path / "cfg", logged_registry.address, prefix, TAG)
    engines = f"builders={ENGINE1},{context}"
    with subprocess.Popen(
        [sys.executable, "-m", "doit", "-f", str(DODO), "--continue", "-n", "4", "build",
         "push", f"config={config}", engines, f"src={tree.src}"],
        cwd=tree.root, env=user_environ(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as run:
        try:
            started = proxy.wait_for(dying.building, timeout=120)
            proxy.stop()
            stdout, stderr = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
    text = stdout + stderr
    assert started, f"no build started on {context}:\n{text}\n{proxy.requests()}"
    assert run.returncode != 0, text
    first = report(tree.src)["images"]
    failed = sorted(name for name, entry in first.items() if entry["status"] == "failed")
    done = sorted(name for name, entry in first.items() if entry["status"] == "done")
    assert failed and sorted(failed + done) == tree.images, first
    assert all(first[name].get("builder") == ENGINE1 for name in done), first
    assert tree.base in done  # built first, alone, on the first engine
    assert f"builder {context} no longer answers" in text, text
    assert "Traceback" not in text, text
    # Nothing published (push waits for every image); what built is in the registry by
    # its fingerprint.
    for image in tree.images:
        repository = f"{prefix}/{image}"
        assert logged_registry.api.manifest_digest(repository, TAG) is None, image
        if image in done:
            assert logged_registry.api.manifest_digest(
                repository, fingerprint_tag(first[image]["fingerprint"])) is not None, image

    proxy.start()
    second = doit_on(tree.src, "--continue", "-n", "4", "build", "push", f"config={config}",
                     engines)
    succeeded(second)
    now = statuses(tree.src)
    assert now == {image: "done" if image in failed else REGISTRY_FRESH
                   for image in tree.images}, output(second)
    assert sorted(built_on(tree)) == failed
    assert set(built_on(tree).values()) <= {ENGINE1, context}
    assert_published(logged_registry, prefix, tree)


# -- build and push in separate runs ------------------------------------------------------


def test_a_later_push_run_moves_the_tag_on_the_engine_that_built_the_image(
    prefix: str, engines_clean: None, logged_registry: LoggedRegistry,
    docker_client: docker.DockerClient, tmp_path: Path,
) -> None:
    """`doit build ... builders=` then `doit push ... builders=` (what `pai-build push -i X`
    does too: a build run, then a push run): the push run makes `:v1` serve what each
    engine pushed, and nothing engine 2 built is loaded into engine 1."""
    tree = make_tree(tmp_path, prefix, leaves=4, sleep=1)
    config = write_config(tmp_path / "cfg", logged_registry.address, prefix, TAG)
    succeeded(doit_on(tree.src, "-n", "4", "build", f"config={config}", f"builders={BOTH}"))
    engines = built_on(tree)
    assert sorted(engines) == tree.images
    elsewhere = sorted(image for image, engine in engines.items() if engine == CONTEXT)
    assert elsewhere, engines
    for image in tree.images:  # nothing published yet
        assert logged_registry.api.manifest_digest(f"{prefix}/{image}", TAG) is None

    mark = logged_registry.mark()
    stdout = succeeded(doit_on(tree.src, "-n", "4", "push", f"config={config}", f"builders={BOTH}"))
    assert statuses(tree.src) == dict.fromkeys(tree.images, REGISTRY_FRESH), stdout
    assert_published(logged_registry, prefix, tree)
    assert sorted(logged_registry.manifest_puts(mark)) == [
        f"{prefix}/{image}" for image in tree.images]
    on_engine1 = {image_of(reference) for reference in engine1_references(docker_client, prefix)}
    pulled = sorted(set(elsewhere) & on_engine1)
    assert pulled == [], (
        f"the push run loaded images engine 2 built into engine 1: {pulled}\n{stdout}")
    # `:v1` is a manifest copy in the registry: no layer moves, no engine involved.
    assert logged_registry.blob_uploads(mark) == []


def test_where_the_registry_cannot_be_asked_directly_the_building_engine_pushes_the_tag(
    prefix: str, engines_clean: None, docker_client: docker.DockerClient, tmp_path: Path,
) -> None:
    """A registry over HTTPS with a certificate Python does not trust, which the engines
    reach (to dockerd a registry on 127.0.0.1 is insecure: no certificate check). No
    manifest can be copied from here, so each `:v1` is pushed by the engine that built
    the image, from what it holds: nothing of engine 2's is loaded into engine 1, and
    engine 2 keeps no fingerprint tag once it pushed. The images are independent (FROM
    scratch): dockerd 20.10's BuildKit would pull a base from 127.0.0.1 over plain HTTP,
    which this registry does not serve."""
    with LoggedRegistry(tmp_path / "registry", tls=True) as registry:
        tree = make_tree(tmp_path, prefix, leaves=4, sleep=1)
        for number, leaf in enumerate(tree.leaves):
            (tree.src / f"leaf{number}" / "build" / f"{leaf}.dockerfile").write_text(
                f"FROM scratch\nCOPY own {OWN_FILE}\n")
        config = write_config(tmp_path / "cfg", registry.address, prefix, TAG)
        stdout = succeeded(doit_on(tree.src, "-n", "4", "build", f"config={config}",
                                   f"builders={BOTH}"))
        where = built_on(tree)
        elsewhere = sorted(image for image, engine in where.items() if engine == CONTEXT)
        assert elsewhere and sorted(where) == tree.images, (where, stdout)
        mark = registry.mark()
        stdout = succeeded(doit_on(tree.src, "-n", "4", "push", f"config={config}",
                                   f"builders={BOTH}"))
        assert_published(registry, prefix, tree)
        # Engines pushed `:v1` (a push asks for each layer first; a manifest copy would
        # not), and each image's manifest was pushed once, under `:v1`.
        assert sorted(registry.manifest_puts(mark)) == [f"{prefix}/{image}"
                                                        for image in tree.images]
        assert all(tags == [TAG] for tags in registry.manifest_puts(mark).values())
        asked = {request.path.split("/blobs/")[0].removeprefix("/v2/")
                 for request in registry.requests(mark)
                 if request.method == "HEAD" and "/blobs/" in request.path}
        assert asked == {f"{prefix}/{image}" for image in tree.images}, asked
        on_engine1 = {image_of(reference)
                      for reference in engine1_references(docker_client, prefix)}
        assert not set(elsewhere) & on_engine1, on_engine1
        on_engine2 = engine2_tags(prefix)
        assert {image_of(reference) for reference in on_engine2} == set(elsewhere), on_engine2
        assert not [reference for reference in on_engine2 if ":paitasks-" in reference]


# -- choosing an engine (pure logic) ----------------------------------------------------


def test_each_build_goes_to_the_least_busy_engine_that_answers() -> None:
    pool = Builders(("m1", "m2", "m3"))
    with pool.choose() as first, pool.choose() as second, pool.choose() as third:
        assert (first, second, third) == ("m1", "m2", "m3")
        with pool.choose() as fourth:
            assert fourth == "m1"  # all equally busy: the first in order
    with pool.choose() as again:
        assert again == "m1"  # every build finished: m1 is free again
    pool.mark_down("m1")  # as a failed build that found m1 silent does
    with pool.choose() as name:
        assert name == "m2"


def test_when_no_engine_answers_a_build_is_refused_clearly() -> None:
    pool = Builders(("m1", "m2"))
    pool.mark_down("m1")
    pool.mark_down("m2")
    with pytest.raises(EngineError, match="no builder of builders=m1,m2 answers"), pool.choose():
        pass


# -- builders: their BuildKit versions (pure logic, then the engines here) -------------


@pytest.mark.parametrize(
    ("version", "named"),
    [("v0.8+unknown", False), ("v0.9.3", False), ("v0.10.0-rc1", True), ("v0.13.2", True),
     ("0.12.5", True), ("v1.0.0", True), ("", False), ("unknown", False)],
)
def test_named_contexts_from_buildkit_0_10_on(version: str, named: bool) -> None:
    assert buildkit_takes_named_contexts(version) is named


def test_named_contexts_follow_each_builders_buildkit(buildkit_up: None, engine2_up: None) -> None:
    """buildx inspection: dockerd 20.10's builder is BuildKit 0.8 (no named contexts),
    dev-engine's buildkitd is 0.13 (named contexts)."""
    pool = Builders((ENGINE1, CONTEXT, BUILDKIT))
    pool.check()
    assert pool.takes_named_contexts(ENGINE1) is False
    assert pool.takes_named_contexts(CONTEXT) is False
    assert pool.takes_named_contexts(BUILDKIT) is True


# -- a buildx builder of another driver (remote: scripts/dev-engine's buildkitd) ---------


def test_a_buildkit_builder_and_an_engine_share_the_builds(
    prefix: str, engines_clean: None, buildkit_up: None, logged_registry: LoggedRegistry,
    docker_client: docker.DockerClient, tmp_path: Path,
) -> None:
    """builders=default,paitasks-buildkit: both build. The builder (BuildKit 0.13) takes
    the base from the registry by digest as a named build context, the engine (0.8)
    through a rewritten dockerfile; every image is published, none is loaded anywhere,
    and pulled onto engine 1 each runs with its own and its base's file."""
    tree = make_tree(tmp_path, prefix, leaves=4, sleep=2)
    config = write_config(tmp_path / "cfg", logged_registry.address, prefix, TAG)
    engines = f"builders={ENGINE1},{BUILDKIT}"
    stdout = succeeded(doit_on(tree.src, "-n", "4", "build", "push", f"config={config}", engines))
    where = built_on(tree)
    assert sorted(where) == tree.images, stdout
    on_buildkit = sorted(image for image, engine in where.items() if engine == BUILDKIT)
    assert on_buildkit and set(where.values()) == {ENGINE1, BUILDKIT}, where
    assert f"done (on {BUILDKIT})" in stdout, stdout
    rewritten = {path.name for path in (tree.root / ".paitasks" / "dockerfiles").iterdir()}
    for leaf in tree.leaves:  # the base is the first built, on default: leaves name it
        assert (f"{leaf}.dockerfile" in rewritten) is (where[leaf] == ENGINE1), (leaf, where)
    assert_published(logged_registry, prefix, tree)
    on_engine1 = {image_of(reference) for reference in engine1_references(docker_client, prefix)}
    assert not set(on_buildkit) & on_engine1, on_engine1
    assert engine2_images(prefix) == {}

    stdout = succeeded(doit_on(tree.src, "-n", "4", "build", f"config={config}", "pull=1"))
    assert statuses(tree.src) == dict.fromkeys(tree.images, "pulled"), stdout
    assert_leaves_run(tree)


def test_a_builder_that_does_not_answer_stops_the_run_before_any_work(
    prefix: str, engines_clean: None, logged_registry: LoggedRegistry,
    docker_client: docker.DockerClient, tmp_path: Path,
) -> None:
    """A remote builder whose daemon is gone: buildx gives up on it after 20 s."""
    name = f"{prefix}-gone"
    subprocess.run(["docker", "buildx", "create", "--name", name, "--driver", "remote",
                    f"unix://{tmp_path / 'nobody.sock'}"],
                   check=True, capture_output=True, timeout=60)
    try:
        assert_refused_before_any_work(
            tmp_path, prefix, logged_registry, docker_client, f"{ENGINE1},{name}",
            f"builder {name} (buildx builder, driver remote) does not answer",
        )
    finally:
        subprocess.run(["docker", "buildx", "rm", name], capture_output=True, timeout=60)
