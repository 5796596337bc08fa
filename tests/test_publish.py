"""Publishing (publish.py): what this process sends is the same on every try; the registry as
a cache (publish=fingerprints) and a fingerprint tag trusted by its label; overlapping runs."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import docker
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paitasks.fingerprint import LABEL
from paitasks.publish import _compressed
from tests.support import (
    FIXTURES,
    RegistryAPI,
    busybox_context,
    doit_on,
    fingerprint_tag,
    git,
    output,
    pai_build,
    prefixed_tree,
    ran,
    report,
    run_on_engine2_busybox,
    statuses,
    succeeded,
    write_config,
)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=1 << 16))
def test_a_layer_is_compressed_the_same_way_every_time(content: bytes) -> None:
    """Its digest, then, is the same on a retry, on another run, on another day."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "layer.tar"
        path.write_bytes(content)
        first = _compressed(path)
        assert _compressed(path) == first
        assert gzip.decompress(first) == content
        assert first[4:8] == b"\0\0\0\0"  # no time in the header


# -- publish=fingerprints: the registry as a cache for pull requests ----------------------

TAG = "v1"


def fresh_copy(src: Path, root: Path) -> Path:
    """The same tree on a fresh runner: no `.paitasks/`, no image of it in engine 2."""
    copy = root / "src"
    shutil.copytree(src, copy, symlinks=True)
    return copy


@pytest.mark.engine
def test_a_pull_request_rerun_builds_nothing_and_moves_no_tag(
    tmp_path: Path, prefix: str, registry: RegistryAPI, cleanup: None, engine2_cleanup: None,
) -> None:
    src = tmp_path / "first" / "src"
    names = prefixed_tree(FIXTURES, src, prefix)
    config = write_config(tmp_path / "cfg", registry.address, prefix, TAG)
    first = doit_on(src, "-n", "4", "build", "publish=fingerprints", f"config={config}")
    succeeded(first)
    images = report(src)["images"]
    assert {entry["status"] for entry in images.values()} == {"done"}, images
    for image, entry in images.items():  # each under its fingerprint tag, and only there
        assert registry.tags(f"{prefix}/{image}") == [fingerprint_tag(entry["fingerprint"])]
    watchdog = names["watchdog"]
    assert (registry.labels(f"{prefix}/{watchdog}", fingerprint_tag(
        images[watchdog]["fingerprint"]))[LABEL] == images[watchdog]["fingerprint"])
    # The same pull request again, on a fresh runner: nothing to build, no tag moves.
    rerun = fresh_copy(src, tmp_path / "rerun")
    second = doit_on(rerun, "-n", "4", "build", "publish=fingerprints", f"config={config}",
                     engine2=True)
    succeeded(second)
    assert set(statuses(rerun).values()) == {"up to date in the registry"}, output(second)
    assert not any(ran(second.stdout, f"build-image:{image}") for image in images)
    for image, entry in images.items():
        assert registry.tags(f"{prefix}/{image}") == [fingerprint_tag(entry["fingerprint"])]
    # pai-build says the same.
    third = pai_build("build", "--src", str(rerun), "-c", str(config), "--publish-fingerprints",
                      cwd=rerun.parent)
    assert third.returncode == 0, output(third)
    assert registry.tags(f"{prefix}/{watchdog}") == [
        fingerprint_tag(images[watchdog]["fingerprint"])]


@pytest.mark.engine
def test_an_image_whose_label_disagrees_is_ignored_and_rebuilt(
    tmp_path: Path, prefix: str, registry: RegistryAPI, cleanup: None, engine2_cleanup: None,
    docker_client: docker.DockerClient,
) -> None:
    src = tmp_path / "first" / "src"
    names = prefixed_tree(FIXTURES, src, prefix)
    config = write_config(tmp_path / "cfg", registry.address, prefix, TAG)
    succeeded(doit_on(src, "-n", "4", "build", "publish=fingerprints", f"config={config}"))
    watchdog = names["watchdog"]
    wanted = report(src)["images"][watchdog]["fingerprint"]
    # Someone pushes another image (without the label) under watchdog's fingerprint tag.
    stranger = f"{registry.address}/{prefix}/{watchdog}:{fingerprint_tag(wanted)}"
    dockerfile = busybox_context(tmp_path / "stranger")
    docker_client.images.build(path=str(dockerfile.parent), dockerfile=dockerfile.name,
                               tag=stranger, network_mode="host", rm=True, forcerm=True)
    docker_client.images.push(stranger)
    assert LABEL not in registry.labels(f"{prefix}/{watchdog}", fingerprint_tag(wanted))
    rerun = fresh_copy(src, tmp_path / "rerun")
    result = doit_on(rerun, "-n", "4", "build", "publish=fingerprints", f"config={config}",
                     engine2=True)
    succeeded(result)
    found = report(rerun)["images"]
    assert found[watchdog]["status"] == "done", output(result)
    assert {entry["status"] for name, entry in found.items() if name != watchdog} == {
        "up to date in the registry"}
    why = (f"{stranger} serves an image labelled with no fingerprint, not {wanted}: ignored")
    assert found[watchdog]["ignored"] == why
    assert f"{watchdog}: {why}" in result.stdout.splitlines()
    # The upload put the image of these inputs back under the tag.
    assert registry.labels(f"{prefix}/{watchdog}", fingerprint_tag(wanted))[LABEL] == wanted
    assert run_on_engine2_busybox(watchdog, "/etc/watchdog-build").strip() == "built-by-stage"


# -- overlapping runs: `:tag` never moves back to an older commit's images ----------------

@pytest.mark.engine
def test_an_older_commit_finishing_last_leaves_tag_on_the_newer_one(
    tmp_path: Path, prefix: str, registry: RegistryAPI, cleanup: None,
) -> None:
    """Two pipelines of one branch: commit A, then B (watchdog changed). B's run pushes
    first; A's, finishing last, leaves every `:tag` on B's images and says so;
    `force=1` moves them (a deliberate rollback)."""
    newer = tmp_path / "newer"
    names = prefixed_tree(FIXTURES, newer / "src", prefix)
    git(newer, "init", "-q")
    git(newer, "add", "-A")
    git(newer, "commit", "-qm", "A")
    commit_a = git(newer, "rev-parse", "HEAD")
    script = newer / "src" / "watchdog" / "cmd" / "main.sh"
    script.write_text(script.read_text() + "# changed in B\n")
    git(newer, "commit", "-qam", "B")
    commit_b = git(newer, "rev-parse", "HEAD")
    older = tmp_path / "older"  # A's checkout, which has fetched B as well
    git(tmp_path, "clone", "-q", str(newer), str(older))
    git(older, "checkout", "-q", commit_a)
    config = write_config(tmp_path / "cfg", registry.address, prefix, TAG)
    watchdog = f"{prefix}/{names['watchdog']}"

    succeeded(doit_on(newer / "src", "-n", "4", "build", "push", f"config={config}"))
    on_b = registry.manifest_digest(watchdog, TAG)
    assert registry.labels(watchdog, TAG)["org.opencontainers.image.revision"] == commit_b
    assert "org.opencontainers.image.created" in registry.labels(watchdog, TAG)

    late = doit_on(older / "src", "-n", "4", "build", "push", f"config={config}")
    succeeded(late)
    assert registry.manifest_digest(watchdog, TAG) == on_b  # left on B's image
    push = report(older / "src")["images"][names["watchdog"]]["push"]
    assert push["status"] == "kept", push
    assert push["kept"].startswith(f"newer: {names['watchdog']}'s :{TAG} serves commit "
                                   f"{commit_b[:12]}, newer than this run's {commit_a[:12]}")
    assert "kept " in late.stdout and "newer:" in late.stdout
    # A's watchdog is in the registry all the same, under its fingerprint tag.
    a_fingerprint = report(older / "src")["images"][names["watchdog"]]["fingerprint"]
    assert registry.manifest_digest(watchdog, fingerprint_tag(a_fingerprint)) not in (None, on_b)

    rollback = doit_on(older / "src", "-n", "4", "push", f"config={config}", "force=1")
    succeeded(rollback)
    assert registry.manifest_digest(watchdog, TAG) == registry.manifest_digest(
        watchdog, fingerprint_tag(a_fingerprint))
    assert registry.labels(watchdog, TAG)["org.opencontainers.image.revision"] == commit_a
