"""Build src-fixtures for real, in parallel, and check every image the way a user would."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from python_on_whales import docker as whales

from paitasks import builds
from paitasks.inputs import ImageSpec
from paitasks.run import Run
from paitasks.settings import Settings
from tests.support import FIXTURES, REPO, pai_build, prefixed_tree, run_on_engine1, temp_folders
from tests.support import run_doit as doit

# The console script pip installed next to this interpreter, as a user runs it.


def snapshot(src: Path) -> dict[str, str]:
    """Every file of the tree with its content hash and mode: the user's files."""
    files = {}
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            files[str(path.relative_to(src))] = (
                f"{hashlib.sha256(data).hexdigest()} {oct(path.stat().st_mode)}"
            )
    return files


@pytest.fixture
def tree(tmp_path: Path, prefix: str, cleanup: None) -> tuple[Path, dict[str, str]]:
    src = tmp_path / "src"
    names = prefixed_tree(FIXTURES, src, prefix)
    return src, names


@pytest.mark.engine
def test_fixtures_build_in_parallel(
    tree: tuple[Path, dict[str, str]], engine: object
) -> None:
    src, names = tree
    before = snapshot(src)
    result = doit("-n", "4", "build", f"src={src}")
    assert result.returncode == 0, result.stdout + result.stderr

    assert run_on_engine1(names["base-image"], "cat", "/etc/paitasks-base") == "base-image"
    # componentB: guide example; its pre hook copied test-build, copy-deps brought
    # componentA with the generated/ folder its post hook wrote.
    assert run_on_engine1(names["component-b"]) == "componentA 1.0\ncomponentB test-build"
    assert run_on_engine1(names["tools"], "cat", "/etc/tools-all") == "tools-base\ntools"
    assert run_on_engine1(names["watchdog"], "/usr/bin/watchdog") == "watchdog built-by-stage"
    assert run_on_engine1(names["argbase"], "cat", "/etc/argbase") == "argbase on tools"
    listing = run_on_engine1(names["rest-server"], "find", "/opt/rest-server")
    assert "/opt/rest-server/app/server.sh" in listing
    assert "debug.log" not in listing and "secrets" not in listing  # .dockerignore
    assert run_on_engine1(names["drivers"], "cat", "/etc/drivers") == "drivers"
    # Variant images are built only when their variant is selected.
    assert not whales.image.exists(names["driver-k8s"])
    assert not whales.image.exists(names["driver-yarn"])

    assert temp_folders(src) == []
    assert snapshot(src) == before, "the build changed the user's files"
    assert (src.parent / ".paitasks").is_dir()
    assert not (REPO / "src-fixtures" / "componentB" / "dependency").exists()


@pytest.mark.engine
def test_variant_selects_its_dockerfiles(
    tree: tuple[Path, dict[str, str]], engine: object
) -> None:
    src, names = tree
    result = doit("build:drivers", f"src={src}", "variant=k8s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_on_engine1(names["driver-k8s"], "cat", "/etc/driver-kind") == "k8s"
    assert not whales.image.exists(names["driver-yarn"])
    # build:drivers needs base-image, nothing else.
    assert whales.image.exists(names["base-image"])
    assert not whales.image.exists(names["tools"])


@pytest.mark.engine
def test_pai_build_selects_components_and_their_dependencies(
    tree: tuple[Path, dict[str, str]], engine: object
) -> None:
    src, names = tree
    result = pai_build("build", "--src", str(src), "-s", "componentB", "-j", "2", cwd=src.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_on_engine1(names["component-b"]) == "componentA 1.0\ncomponentB test-build"
    assert not whales.image.exists(names["tools"])
    assert temp_folders(src) == []


@pytest.mark.engine
def test_failed_hook_names_component_and_cleans_up(
    tree: tuple[Path, dict[str, str]], engine: object
) -> None:
    src, _ = tree
    hook = src / "componentB" / "build" / "build-pre.sh"
    hook.write_text("echo about to fail\necho the-hook-said-this >&2\nexit 7\n")
    os.chmod(hook, 0o644)  # not executable: paitasks runs it with bash anyway
    result = doit("build:componentB", f"src={src}")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "componentB" in output and "build-pre.sh" in output
    assert "the-hook-said-this" in output
    assert "Traceback" not in output
    assert temp_folders(src) == []
    assert oct(hook.stat().st_mode & 0o777) == "0o644"


def test_a_base_from_the_registry_is_a_named_context_where_the_builder_takes_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """BuildKit 0.10+: the image's own dockerfile and `--build-context`; older: a copy
    of the dockerfile naming the base by digest (test_registry.py builds with it)."""
    src = tmp_path / "src"
    dockerfile = src / "app" / "build" / "app.dockerfile"
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text("FROM base\nRUN true\n")
    pinned = "127.0.0.1:5000/ns/base@sha256:" + "b" * 64
    monkeypatch.setattr(builds, "base_references", lambda run, spec: {"base": pinned})
    run = Run(Settings(src=src))
    spec = ImageSpec(name="app", dockerfile=str(dockerfile), context=str(src / "app"),
                     uses=("base",))
    assert builds.base_inputs(run, spec, named=True) == (
        dockerfile, {"base": f"docker-image://{pinned}"}
    )
    copy, contexts = builds.base_inputs(run, spec, named=False)
    assert contexts == {} and copy.parent == run.state / "dockerfiles"
    assert copy.read_text() == f"FROM {pinned}\nRUN true\n"
    assert dockerfile.read_text() == "FROM base\nRUN true\n"  # the user's file untouched
