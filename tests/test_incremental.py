"""Incremental builds, seen the way a user sees them: what `doit` says it ran.

Every test builds its own prefixed copy of src-fixtures for real (`doit -n 4 build`), so
the state is warm, then changes one thing and checks which `build-image:` / `push:` tasks
ran (`.  task`) and which were up to date (`-- task`), cross-checked with the engine's
image ids and the registry's manifest digests.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from paitasks.engine import buildx_plugin
from paitasks.fingerprint import LABEL
from paitasks.tempfolders import TEMP_FOLDERS
from tests.support import (
    FIXTURES,
    REPO,
    RegistryAPI,
    prefixed_tree,
    run_on_engine1,
    user_environ,
    write_config,
)
from tests.support import run_doit as doit

# Images `doit build` makes (no variant selected: driver-k8s and driver-yarn are not built).
IMAGES = (
    "base-image",
    "tools-base",
    "tools",
    "argbase",
    "drivers",
    "rest-server",
    "watchdog",
    "component-b",
)
EVERYTHING = frozenset(IMAGES)  # every image is built FROM base-image, directly or not
TAG = "v1"
REPORT = re.compile(
    r"^\[\s*\d+/\d+\] (done|up to date(?: in the registry)?) (build-image|push):(\S+)"
    r"(?: on \S+)?(?: [\d.]+s)?$",
    re.MULTILINE,
)
STATUS = re.compile(r"^([A-Z]) +build-image:(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    """One doit run: its output and the tasks it reported as run or up to date."""

    output: str
    built: frozenset[str]  # old (unprefixed) image names
    skipped: frozenset[str]
    pushed: frozenset[str]
    not_pushed: frozenset[str]


@dataclass(frozen=True)
class Tree:
    src: Path
    names: dict[str, str]  # old name -> prefixed name, for the images `build` makes
    prefix: str

    @property
    def state(self) -> Path:
        return self.src.parent / ".paitasks"

    def old(self, name: str) -> str:
        """The fixture's image name of a prefixed image name."""
        prefix = f"{self.prefix}-"
        assert name.startswith(prefix), name
        return name[len(prefix) :]

    @property
    def images(self) -> frozenset[str]:
        return frozenset(self.names)

    def dockerfile(self, component: str, image: str) -> Path:
        return self.src / component / "build" / f"{self.names[image]}.dockerfile"


def run(tree: Tree, *arguments: str, src: Path | None = None) -> Run:
    """A successful `doit -n 4 ARGUMENTS src=...`, with what it built and pushed."""
    result = doit("-n", "4", *arguments, f"src={src or tree.src}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    sets: dict[tuple[str, str], set[str]] = {}
    for mark, kind, name in REPORT.findall(result.stdout):
        sets.setdefault((mark, kind), set()).add(tree.old(name))

    def pick(mark: str, kind: str) -> frozenset[str]:
        return frozenset(sets.get((mark, kind), set()))

    outcome = Run(
        output,
        pick("done", "build-image"),
        pick("up to date", "build-image") | pick("up to date in the registry", "build-image"),
        pick("done", "push"),
        pick("up to date", "push"),
    )
    assert not outcome.built & outcome.skipped, output
    assert not outcome.pushed & outcome.not_pushed, output
    return outcome


def build(tree: Tree, *arguments: str, src: Path | None = None) -> Run:
    """`doit -n 4 build`: every image is reported, as built or as up to date."""
    outcome = run(tree, "build", *arguments, src=src)
    assert outcome.built | outcome.skipped == tree.images, outcome.output
    return outcome


def image_ids(client: docker.DockerClient, tree: Tree) -> dict[str, str]:
    return {old: str(client.images.get(new).id) for old, new in tree.names.items()}


def digests(registry: RegistryAPI, tree: Tree) -> dict[str, str | None]:
    return {
        old: registry.manifest_digest(f"{tree.prefix}/{new}", TAG)
        for old, new in tree.names.items()
    }


def assert_rebuilt_exactly(
    outcome: Run, before: dict[str, str], after: dict[str, str], expected: frozenset[str]
) -> None:
    """`doit` built `expected` and skipped the rest; the engine's ids agree."""
    assert outcome.built == expected, outcome.output
    assert outcome.skipped == set(before) - expected, outcome.output
    changed = {name for name in before if before[name] != after[name]}
    assert changed == expected, outcome.output


def fixture_tree(tmp_path: Path, prefix: str) -> tuple[Path, dict[str, str]]:
    """A prefixed copy of src-fixtures at tmp_path/src (old name -> new name).

    Copied without temp folders: a build someone runs in src-fixtures meanwhile may have
    left dependency/ or generated/ there, which paitasks rightly refuses to use.
    """
    staging = tmp_path / "fixtures"
    shutil.copytree(
        FIXTURES, staging, symlinks=True, ignore=shutil.ignore_patterns(*TEMP_FOLDERS)
    )
    src = tmp_path / "src"
    return src, prefixed_tree(staging, src, prefix)


def warm_up(tree: Tree, client: docker.DockerClient) -> None:
    """The first `doit -n 4 build` builds every image and labels it with its fingerprint."""
    first = build(tree)
    assert first.built == tree.images, first.output
    for name in tree.names.values():
        labels = client.images.get(name).labels
        assert labels.get(LABEL, "").startswith("sha256:"), (name, labels)
    assert tree.state.is_dir()


@pytest.fixture
def warm(
    tmp_path: Path, prefix: str, cleanup: None, docker_client: docker.DockerClient
) -> Tree:
    """A prefixed copy of src-fixtures, fully built once by `doit -n 4 build`."""
    src, renamed = fixture_tree(tmp_path, prefix)
    tree = Tree(src, {old: renamed[old] for old in IMAGES}, prefix)
    warm_up(tree, docker_client)
    return tree


# -- 1. nothing changed, nothing runs ------------------------------------------------


@pytest.mark.engine
def test_second_build_builds_nothing(warm: Tree, docker_client: docker.DockerClient) -> None:
    before = image_ids(docker_client, warm)
    again = build(warm)
    assert again.built == frozenset(), again.output
    assert again.skipped == EVERYTHING
    assert image_ids(docker_client, warm) == before
    # And a third time, with the hash cache the second run wrote.
    assert build(warm).built == frozenset()
    assert image_ids(docker_client, warm) == before


CLIENT_LIBRARIES = ("docker", "python_on_whales", "requests", "yaml")


def client_libraries_loaded(tree: Tree) -> list[str]:
    """Run `doit -n 4 build` in a child process and say which client libraries it
    loaded: a run must not pay for importing what it does not use."""
    arguments = ["-f", str(REPO / "dodo.py"), "-n", "4", "build", f"src={tree.src}"]
    code = (
        "import sys\n"
        "from doit.doit_cmd import DoitMain\n"
        f"assert DoitMain().run({arguments!r}) == 0\n"
        f"print('LOADED', [m for m in {CLIENT_LIBRARIES!r} if m in sys.modules],"
        " file=sys.stderr)\n"  # doit is done with stdout by now
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
        env=user_environ(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = [line for line in result.stderr.splitlines() if line.startswith("LOADED ")]
    return list(ast.literal_eval(line[-1].removeprefix("LOADED ")))


@pytest.mark.engine
def test_runs_load_no_client_library_they_do_not_need(warm: Tree) -> None:
    """A no-op reads the engine over its socket; a buildx build runs the docker CLI:
    neither loads the docker SDK (and its requests), python-on-whales or PyYAML."""
    assert client_libraries_loaded(warm) == []
    append(warm.dockerfile("watchdog", "watchdog"), "RUN echo changed > /changed\n")
    assert client_libraries_loaded(warm) == []
    assert build(warm).built == frozenset()


@pytest.mark.engine
def test_second_push_pushes_nothing(
    warm: Tree, registry: RegistryAPI, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cfg", registry.address, warm.prefix, TAG)
    first = run(warm, "push", f"config={config}")
    assert first.pushed == EVERYTHING, first.output
    assert first.built == frozenset(), first.output
    published = digests(registry, warm)
    assert None not in published.values(), published
    ids = image_ids(docker_client, warm)

    second = run(warm, "push", f"config={config}")
    assert second.pushed == frozenset(), second.output
    assert second.not_pushed == EVERYTHING, second.output
    assert second.built == frozenset(), second.output
    assert digests(registry, warm) == published
    assert image_ids(docker_client, warm) == ids


# -- 2. each kind of change rebuilds the changed image and what is built on it -------


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def change_tools_base_dockerfile(tree: Tree) -> None:
    append(tree.dockerfile("tools", "tools-base"), "RUN echo x > /x\n")


def change_rest_server_script(tree: Tree) -> None:
    append(tree.src / "rest-server" / "app" / "server.sh", 'echo "changed"\n')


def change_ignored_files(tree: Tree) -> None:
    append(tree.src / "rest-server" / "app" / "debug.log", "a new log line\n")
    append(tree.src / "rest-server" / "secrets" / "token.txt", "another-secret\n")
    (tree.src / "rest-server" / "app" / "new.log").write_text("new log\n")
    (tree.src / "rest-server" / "secrets" / "new-token.txt").write_text("token\n")


def change_rest_server_script_same_size(tree: Tree) -> None:
    # Same size, so only the content hash (not the size) can tell: "rest-server" -> "rest-servex".
    script = tree.src / "rest-server" / "app" / "server.sh"
    text = script.read_text(encoding="utf-8")
    assert '"rest-server"' in text
    script.write_text(text.replace('"rest-server"', '"rest-servex"'), encoding="utf-8")


def add_empty_folders(tree: Tree) -> None:
    (tree.src / "rest-server" / "app" / "empty").mkdir()  # sent: COPY . copies it
    (tree.src / "rest-server" / "secrets" / "empty").mkdir()  # ignored


def stop_ignoring_secrets(tree: Tree) -> None:
    ignore = tree.src / "rest-server" / ".dockerignore"
    lines = ignore.read_text(encoding="utf-8").splitlines(keepends=True)
    assert "secrets/\n" in lines
    ignore.write_text("".join(line for line in lines if line != "secrets/\n"), encoding="utf-8")


def change_dependency_folder(tree: Tree) -> None:
    # componentB's copy-deps copies the whole componentA folder into its dependency/.
    append(tree.src / "componentA" / "bin" / "hello-a.sh", 'echo "changed"\n')


def change_hook_input(tree: Tree) -> None:
    # componentB's pre hook copies test-build into dependency/test-build.
    append(tree.src / "componentB" / "test-build" / "start.sh", 'echo "changed"\n')


def hook_writes_unread_file(tree: Tree) -> None:
    # componentB's pre hook (no declared inputs) also writes dependency/extra.txt: sent
    # with the context, but its dockerfile copies other folders, so nothing can change.
    append(
        tree.src / "componentB" / "build" / "build-pre.sh",
        'echo extra > "$(dirname "$0")/../dependency/extra.txt"\n',
    )


def declared_hook_changed(tree: Tree) -> None:
    # base-image's pre hook declares its inputs: what it makes counts by its key (known
    # before it runs, on any machine), and the hook is one of its inputs. So a change to
    # it rebuilds what reads its output, even if it then makes the same files.
    append(
        tree.src / "base-image" / "build" / "build-pre.sh",
        'echo extra > "$(dirname "$0")/../generated/extra.txt"\n',
    )


def hook_changes_copied_file(tree: Tree) -> None:
    # base-image's pre hook makes a different generated/busybox (a trailing byte, which
    # the ELF loader ignores): base-image and everything built on it.
    append(
        tree.src / "base-image" / "build" / "build-pre.sh",
        'printf "\\n" >> "$(dirname "$0")/../generated/busybox"\n',
    )


def hook_writes_copied_file(tree: Tree) -> None:
    # componentB's pre hook also writes dependency/test-build/extra.txt, which its
    # dockerfile copies (COPY dependency/test-build/ ...).
    append(
        tree.src / "componentB" / "build" / "build-pre.sh",
        'echo extra > "$(dirname "$0")/../dependency/test-build/extra.txt"\n',
    )


def change_base_image_dockerfile(tree: Tree) -> None:
    append(tree.dockerfile("base-image", "base-image"), "RUN echo x > /x\n")


def make_watchdog_source_executable(tree: Tree) -> None:
    script = tree.src / "watchdog" / "cmd" / "main.sh"
    assert script.stat().st_mode & 0o111 == 0
    script.chmod(0o755)


def change_tools_dockerfile(tree: Tree) -> None:
    # tools.dockerfile sits in the tools/ folder, which is also tools-base's context; but
    # tools-base's dockerfile copies nothing from its context, so its image cannot change.
    append(tree.dockerfile("tools", "tools"), "RUN echo x > /x\n")


def change_unselected_variant_dockerfile(tree: Tree) -> None:
    # driver-k8s is built only with variant=k8s; drivers.common.dockerfile copies nothing.
    path = tree.src / "drivers" / "build" / f"{tree.prefix}-driver-k8s.k8s.dockerfile"
    append(path, "RUN echo x > /x\n")


CHANGES: dict[str, tuple[Callable[[Tree], None], frozenset[str]]] = {
    "dockerfile": (
        change_tools_base_dockerfile,
        frozenset({"tools-base", "tools", "argbase"}),
    ),
    "context-file": (change_rest_server_script, frozenset({"rest-server"})),
    "context-file-same-size": (change_rest_server_script_same_size, frozenset({"rest-server"})),
    "empty-folders": (add_empty_folders, frozenset({"rest-server"})),
    "dockerignore": (stop_ignoring_secrets, frozenset({"rest-server"})),
    "ignored-files": (change_ignored_files, frozenset()),
    "dependency-folder": (change_dependency_folder, frozenset({"component-b"})),
    "hook-copies-changed-file": (change_hook_input, frozenset({"component-b"})),
    "hook-writes-unread-file": (hook_writes_unread_file, frozenset()),
    "declared-hook-changed": (declared_hook_changed, EVERYTHING),
    "hook-changes-copied-file": (hook_changes_copied_file, EVERYTHING),
    "hook-writes-copied-file": (hook_writes_copied_file, frozenset({"component-b"})),
    "base-image-dockerfile": (change_base_image_dockerfile, EVERYTHING),
    "file-mode": (make_watchdog_source_executable, frozenset({"watchdog"})),
    # The dockerfile of another image of the same component: only that image and what is
    # built on it (tools, argbase), not tools-base.
    "other-dockerfile-of-the-component": (
        change_tools_dockerfile,
        frozenset({"tools", "argbase"}),
    ),
    # A dockerfile this run does not build (no variant selected): nothing.
    "unselected-variant-dockerfile": (change_unselected_variant_dockerfile, frozenset()),
}


@pytest.mark.engine
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_change_rebuilds_exactly_what_depends_on_it(
    change: str, warm: Tree, docker_client: docker.DockerClient
) -> None:
    mutate, expected = CHANGES[change]
    before = image_ids(docker_client, warm)
    mutate(warm)
    outcome = build(warm)
    after = image_ids(docker_client, warm)
    assert_rebuilt_exactly(outcome, before, after, expected)
    # The new state is stable: the next run builds nothing.
    again = build(warm)
    assert again.built == frozenset(), again.output
    assert image_ids(docker_client, warm) == after


@pytest.mark.engine
def test_images_used_by_copy_from_and_mounts_are_inputs(
    tmp_path: Path, prefix: str, cleanup: None, docker_client: docker.DockerClient
) -> None:
    """An extra component uses images of the tree through COPY --from and RUN --mount."""
    src, renamed = fixture_tree(tmp_path, prefix)
    bundle = f"{prefix}-bundle"
    folder = src / "bundle" / "build"
    folder.mkdir(parents=True)
    (folder / f"{bundle}.dockerfile").write_text(
        f"FROM {renamed['base-image']}\n"
        f"COPY --from={renamed['watchdog']} /usr/bin/watchdog /usr/bin/watchdog\n"
        f"RUN --mount=type=bind,from={renamed['drivers']},source=/etc/drivers,"
        "target=/tmp/drivers cat /tmp/drivers > /etc/bundled-drivers\n"
    )
    tree = Tree(src, {**{old: renamed[old] for old in IMAGES}, "bundle": bundle}, prefix)
    warm_up(tree, docker_client)

    before = image_ids(docker_client, tree)
    append(src / "watchdog" / "cmd" / "main.sh", 'echo "changed"\n')
    copied = build(tree)
    middle = image_ids(docker_client, tree)
    assert_rebuilt_exactly(copied, before, middle, frozenset({"watchdog", "bundle"}))

    common = src / "drivers" / "build" / f"{renamed['drivers']}.common.dockerfile"
    append(common, "RUN echo x > /x\n")
    mounted = build(tree)
    assert_rebuilt_exactly(
        mounted, middle, image_ids(docker_client, tree), frozenset({"drivers", "bundle"})
    )
    assert build(tree).built == frozenset()


@pytest.mark.engine
def test_copied_symlink_is_followed_to_its_target(
    tmp_path: Path, prefix: str, cleanup: None, docker_client: docker.DockerClient
) -> None:
    """`COPY current.sh` where current.sh -> versions/run.sh copies run.sh's content (the
    engine follows a source that is a symlink): run.sh is an input of the image."""
    src, renamed = fixture_tree(tmp_path, prefix)
    linked = f"{prefix}-linked"
    folder = src / "linked"
    (folder / "build").mkdir(parents=True)
    (folder / "versions").mkdir()
    target = folder / "versions" / "run.sh"
    target.write_text("echo v1\n")
    (folder / "current.sh").symlink_to("versions/run.sh")
    (folder / "build" / f"{linked}.dockerfile").write_text(
        f"FROM {renamed['base-image']}\nCOPY current.sh /current.sh\n"
    )
    tree = Tree(src, {**{old: renamed[old] for old in IMAGES}, "linked": linked}, prefix)
    warm_up(tree, docker_client)
    assert run_on_engine1(linked, "cat", "/current.sh") == "echo v1"

    before = image_ids(docker_client, tree)
    target.write_text("echo v2\n")
    outcome = build(tree)
    assert run_on_engine1(linked, "cat", "/current.sh") == "echo v2", (
        "the image still has the old content: " + outcome.output
    )
    assert_rebuilt_exactly(
        outcome, before, image_ids(docker_client, tree), frozenset({"linked"})
    )


# -- 3. the engine is the truth -------------------------------------------------------


@pytest.mark.engine
def test_removed_image_is_rebuilt_alone(warm: Tree, docker_client: docker.DockerClient) -> None:
    before = image_ids(docker_client, warm)
    docker_client.images.remove(warm.names["watchdog"])
    outcome = build(warm)
    assert outcome.built == {"watchdog"}, outcome.output
    assert outcome.skipped == EVERYTHING - {"watchdog"}, outcome.output
    after = image_ids(docker_client, warm)
    assert {name: after[name] for name in IMAGES if name != "watchdog"} == {
        name: before[name] for name in IMAGES if name != "watchdog"
    }
    assert build(warm).built == frozenset()


@pytest.mark.engine
def test_removed_base_image_is_rebuilt_alone(
    warm: Tree, docker_client: docker.DockerClient
) -> None:
    # What is built on base-image counts it by its fingerprint, not its id: rebuilt
    # from the same inputs, it changes nothing for them.
    before = image_ids(docker_client, warm)
    docker_client.images.remove(warm.names["base-image"])
    outcome = build(warm)
    after = image_ids(docker_client, warm)
    assert outcome.built == {"base-image"}, outcome.output
    assert {name: after[name] for name in IMAGES if name != "base-image"} == {
        name: before[name] for name in IMAGES if name != "base-image"
    }
    assert build(warm).built == frozenset()


@pytest.mark.engine
def test_image_tagged_over_a_tree_name_is_rebuilt(
    warm: Tree, docker_client: docker.DockerClient
) -> None:
    before = image_ids(docker_client, warm)
    base = docker_client.images.get(warm.names["base-image"])
    assert base.tag(warm.names["watchdog"], "latest")
    assert docker_client.images.get(warm.names["watchdog"]).id == before["base-image"]
    outcome = build(warm)
    assert outcome.built == {"watchdog"}, outcome.output
    assert outcome.skipped == EVERYTHING - {"watchdog"}, outcome.output
    after = image_ids(docker_client, warm)
    assert after["watchdog"] != before["base-image"]
    assert after["base-image"] == before["base-image"]
    assert build(warm).built == frozenset()


# -- 4. no local database needed ------------------------------------------------------


@pytest.mark.engine
def test_deleted_state_folder_builds_nothing(
    warm: Tree, docker_client: docker.DockerClient
) -> None:
    before = image_ids(docker_client, warm)
    shutil.rmtree(warm.state)
    outcome = build(warm)
    assert outcome.built == frozenset(), outcome.output
    assert image_ids(docker_client, warm) == before


@pytest.mark.engine
def test_fresh_copy_of_the_tree_builds_nothing(
    warm: Tree, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    before = image_ids(docker_client, warm)
    clone = tmp_path / "elsewhere" / "clone" / "src"
    # Like a checkout: same contents and modes, new timestamps, no .paitasks/.
    shutil.copytree(warm.src, clone, symlinks=True, copy_function=shutil.copy)
    assert not (clone.parent / ".paitasks").exists()
    outcome = build(warm, src=clone)
    assert outcome.built == frozenset(), outcome.output
    assert image_ids(docker_client, warm) == before
    assert (clone.parent / ".paitasks").is_dir()


# -- 5. pushes --------------------------------------------------------------------------


@pytest.mark.engine
def test_push_publishes_only_what_changed(
    warm: Tree, registry: RegistryAPI, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cfg", registry.address, warm.prefix, TAG)
    first = run(warm, "build", "push", f"config={config}")
    assert first.pushed == EVERYTHING, first.output
    published = digests(registry, warm)
    assert None not in published.values(), published

    again = run(warm, "push", f"config={config}")
    assert again.pushed == frozenset(), again.output
    assert digests(registry, warm) == published

    change_rest_server_script(warm)
    changed = run(warm, "build", "push", f"config={config}")
    assert changed.built == {"rest-server"}, changed.output
    assert changed.pushed == {"rest-server"}, changed.output
    assert changed.not_pushed == EVERYTHING - {"rest-server"}, changed.output
    now = digests(registry, warm)
    assert now["rest-server"] is not None
    assert now["rest-server"] != published["rest-server"]
    assert {k: v for k, v in now.items() if k != "rest-server"} == {
        k: v for k, v in published.items() if k != "rest-server"
    }


@pytest.mark.engine
def test_manifest_deleted_in_registry_is_pushed_again(
    warm: Tree, registry: RegistryAPI, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "cfg", registry.address, warm.prefix, TAG)
    first = run(warm, "push", f"config={config}")
    assert first.pushed == EVERYTHING, first.output
    published = digests(registry, warm)
    repository = f"{warm.prefix}/{warm.names['watchdog']}"
    registry.delete_repository(repository)
    assert registry.manifest_digest(repository, TAG) is None

    outcome = run(warm, "push", f"config={config}")
    assert outcome.built == frozenset(), outcome.output
    assert outcome.pushed == {"watchdog"}, outcome.output
    assert outcome.not_pushed == EVERYTHING - {"watchdog"}, outcome.output
    assert digests(registry, warm) == published  # the same image, the same manifest


# -- 6. what would run, and why -----------------------------------------------------------


@pytest.mark.engine
def test_info_and_list_explain_a_pending_change(
    warm: Tree, docker_client: docker.DockerClient
) -> None:
    before = image_ids(docker_client, warm)
    change_rest_server_script(warm)

    info = doit("info", f"build-image:{warm.names['rest-server']}", f"src={warm.src}")
    output = info.stdout + info.stderr
    assert re.search(r"^status +: run$", info.stdout, re.MULTILINE), output
    reason = [line for line in info.stdout.splitlines() if "app/server.sh" in line]
    assert reason and "changed" in reason[0], output

    fresh = doit("info", f"build-image:{warm.names['watchdog']}", f"src={warm.src}")
    assert re.search(r"^status +: up-to-date$", fresh.stdout, re.MULTILINE), (
        fresh.stdout + fresh.stderr
    )

    listing = doit("list", "--all", "--status", f"src={warm.src}")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    marks = {warm.old(name): mark for mark, name in STATUS.findall(listing.stdout)}
    assert marks == {
        name: "R" if name == "rest-server" else "U" for name in IMAGES
    }, listing.stdout

    # Asking built nothing; the build then does what was announced.
    assert image_ids(docker_client, warm) == before
    outcome = build(warm)
    assert_rebuilt_exactly(
        outcome, before, image_ids(docker_client, warm), frozenset({"rest-server"})
    )


@pytest.mark.engine
def test_list_and_info_follow_a_base_that_would_rebuild(warm: Tree) -> None:
    change_tools_base_dockerfile(warm)
    listing = doit("list", "--all", "--status", f"src={warm.src}")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    marks = {warm.old(name): mark for mark, name in STATUS.findall(listing.stdout)}
    stale = {"tools-base", "tools", "argbase"}
    assert marks == {name: "R" if name in stale else "U" for name in IMAGES}, listing.stdout

    info = doit("info", f"build-image:{warm.names['argbase']}", f"src={warm.src}")
    assert re.search(r"^status +: run$", info.stdout, re.MULTILINE), info.stdout
    assert f"uses {warm.names['tools']}, which rebuilds" in info.stdout, info.stdout
    assert build(warm).built == stale


# -- 7. build settings are inputs ---------------------------------------------------------


@pytest.mark.engine
def test_switching_build_tool_rebuilds(warm: Tree, docker_client: docker.DockerClient) -> None:
    assert buildx_plugin(), "the default build tool should be buildx here"
    buildx = image_ids(docker_client, warm)
    same = build(warm, "build_tool=buildx")  # the default, named
    assert same.built == frozenset(), same.output

    classic = build(warm, "build_tool=classic")
    assert_rebuilt_exactly(classic, buildx, image_ids(docker_client, warm), EVERYTHING)
    again = build(warm, "builder=classic")  # its former name
    assert again.built == frozenset(), again.output

    back = build(warm)
    assert back.built == EVERYTHING, back.output
    assert build(warm, "build_tool=buildx").built == frozenset()


@pytest.mark.engine
def test_build_args_rebuild_only_the_images_that_declare_them(
    warm: Tree, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """A build arg reaches the images whose dockerfile declares it (ARG), and what is
    built on them; an arg no dockerfile declares changes nothing."""
    args = tmp_path / "build-args"
    args.write_text("# not declared by any dockerfile\nRELEASE=1\n")
    before = image_ids(docker_client, warm)
    unused = build(warm, f"build_args={args}")
    assert unused.built == frozenset(), unused.output

    # argbase: ARG BASE_IMAGE=tools, FROM ${BASE_IMAGE}
    args.write_text(f"RELEASE=1\nBASE_IMAGE={warm.names['tools-base']}\n")
    switched = build(warm, f"build_args={args}")
    assert_rebuilt_exactly(
        switched, before, image_ids(docker_client, warm), frozenset({"argbase"})
    )
    on_tools_base = docker_client.containers.run(
        warm.names["argbase"], ["ls", "/etc"], remove=True, network_mode="none"
    ).decode()
    assert "tools-base" in on_tools_base.split() and "tools" not in on_tools_base.split()
    assert build(warm, f"build_args={args}").built == frozenset()

    # tools-base changes: argbase, now FROM it, follows.
    append(warm.dockerfile("tools", "tools-base"), "RUN echo more > /etc/more\n")
    follows = build(warm, f"build_args={args}")
    assert follows.built == {"tools-base", "tools", "argbase"}, follows.output
    assert build(warm).built == {"argbase"}  # back to the default: FROM tools


@pytest.mark.engine
def test_target_platform_is_an_input(warm: Tree, docker_client: docker.DockerClient) -> None:
    before = image_ids(docker_client, warm)
    native = build(warm, "platform=linux/amd64")
    assert_rebuilt_exactly(native, before, image_ids(docker_client, warm), EVERYTHING)
    assert build(warm, "platform=linux/amd64").built == frozenset()
    image = docker_client.images.get(warm.names["tools"])
    assert image.attrs["Architecture"] == "amd64" and image.attrs["Os"] == "linux"
    assert build(warm).built == EVERYTHING


@pytest.mark.engine
def test_variant_builds_only_its_own_images(
    warm: Tree, docker_client: docker.DockerClient
) -> None:
    """The variant picks extra dockerfiles; it reaches no other image's build."""
    before = image_ids(docker_client, warm)
    k8s = run(warm, "build", "variant=k8s")
    assert k8s.built == {"driver-k8s"}, k8s.output
    assert k8s.skipped == EVERYTHING, k8s.output
    assert image_ids(docker_client, warm) == before
    yarn = run(warm, "build", "variant=yarn")
    assert yarn.built == {"driver-yarn"}, yarn.output
    assert yarn.skipped == EVERYTHING, yarn.output
    assert image_ids(docker_client, warm) == before
    plain = build(warm)
    assert plain.built == frozenset(), plain.output
