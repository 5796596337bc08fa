"""A base image named the long way (`FROM docker.io/org/base:1.0`) is found in the engine.

The engine lists `docker.io/org/base:1.0` as `org/base:1.0`. If paitasks looked the base
up under the dockerfile's spelling it would record it as missing, and re-tagging the base
to another image would leave the dependent "up to date": a stale image served.
"""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from paitasks.engine import BuildRequest, Engine
from tests.support import ran, run_doit, skipped

pytestmark = pytest.mark.engine

BUILD = "build-image"


def build_base(engine: Engine, busybox: str, folder: Path, tag: str, content: str) -> str:
    """An external base image (not part of the tree) holding /base.txt; its id."""
    folder.mkdir(parents=True)
    (folder / "base.txt").write_text(content)
    dockerfile = folder / "base.dockerfile"
    dockerfile.write_text(f"FROM {busybox}\nCOPY base.txt /base.txt\n")
    return engine.build(BuildRequest((tag,), dockerfile, folder))


def doit_build(src: Path) -> str:
    result = run_doit("-n", "2", "build", f"src={src}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return result.stdout


def test_retagged_base_spelled_with_docker_io_rebuilds_the_dependent(
    engine: Engine,
    busybox_image: str,
    prefix: str,
    cleanup: None,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    base = f"{prefix}/base:1.0"
    first_base = build_base(engine, busybox_image, tmp_path / "one", base, "one\n")
    app = f"{prefix}-app"
    dockerfile = tmp_path / "src" / "app" / "build" / f"{app}.dockerfile"
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text(f"FROM docker.io/{base}\nLABEL purpose=reference-test\n")

    # The engine lists the base under its familiar name, not the dockerfile's spelling.
    listed = {tag for entry in docker_client.api.images() for tag in entry["RepoTags"] or ()}
    assert base in listed and f"docker.io/{base}" not in listed

    first = doit_build(tmp_path / "src")
    assert ran(first, f"{BUILD}:{app}"), first
    assert skipped(doit_build(tmp_path / "src"), f"{BUILD}:{app}")  # nothing changed

    # Re-tag the base to another image: the dependent must not stay "up to date".
    second_base = build_base(engine, busybox_image, tmp_path / "two", f"{prefix}/base:2.0", "two\n")
    assert second_base != first_base
    docker_client.api.tag(second_base, f"{prefix}/base", "1.0", force=True)

    again = doit_build(tmp_path / "src")
    assert ran(again, f"{BUILD}:{app}"), again
    shown = docker_client.containers.run(app, ["cat", "/base.txt"], remove=True)
    assert shown == b"two\n"
