"""copy-deps makes its copies only when something reads them: a hook that runs, an image
that builds, or a component that copies this one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from python_on_whales import docker as whales

from tests.support import ran, run_doit, skipped


def build(src: Path, env: dict[str, str] | None = None) -> str:
    result = run_doit("-n", "2", "build", f"src={src}", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def app_on_lib(src: Path, dockerfiles: dict[str, str]) -> None:
    """lib (no image) and app, which copies lib and has one image per dockerfile."""
    (src / "lib" / "build").mkdir(parents=True)
    (src / "app" / "build").mkdir(parents=True)
    (src / "app" / "build" / "component.dep").write_text("lib\n")
    (src / "app" / "own.txt").write_text("own 1\n")
    for image, text in dockerfiles.items():
        (src / "app" / "build" / f"{image}.dockerfile").write_text(text)


def read(image: str, path: str) -> str:
    output = whales.run(image, ["cat", path], remove=True, networks=["none"])
    assert isinstance(output, str)
    return output.strip()


@pytest.mark.engine
def test_copies_are_skipped_only_while_nothing_changes(
    tmp_path: Path, prefix: str, busybox_image: str
) -> None:
    src = tmp_path / "src"
    app = f"{prefix}-app"
    app_on_lib(src, {app: f"FROM {busybox_image}\nCOPY dependency/lib/ /lib/\n"})
    (src / "lib" / "data.txt").write_text("data 1\n")
    (src / "lib" / "build" / "build-post.sh").write_text(
        'mkdir -p "$PAI_COMPONENT_DIR/generated"\n'
        f'cat {tmp_path}/version > "$PAI_COMPONENT_DIR/generated/version"\n'
    )
    (tmp_path / "version").write_text("v1\n")

    first = build(src)
    assert skipped(first, "copy-deps:app") and ran(first, f"build-image:{app}")
    assert read(app, "/lib/data.txt") == "data 1"

    second = build(src)
    assert skipped(second, "copy-deps:app") and skipped(second, f"build-image:{app}")
    assert not (src / "app" / "dependency").exists()

    (src / "lib" / "data.txt").write_text("data 2\n")
    third = build(src)
    assert ran(third, f"build-image:{app}")
    assert read(app, "/lib/data.txt") == "data 2"

    # What lib's hook makes (its generated/, copied along) counts too.
    (tmp_path / "version").write_text("v2\n")
    fourth = build(src)
    assert ran(fourth, f"build-image:{app}")
    assert read(app, "/lib/generated/version") == "v2"
    assert skipped(build(src), f"build-image:{app}")


@pytest.mark.engine
def test_nested_copies_are_made_only_when_an_image_reads_them(
    tmp_path: Path, prefix: str, busybox_image: str
) -> None:
    """base (a declared hook) <- mid <- app: a no-op runs no hook and copies nothing;
    a change deep down reaches the image that reads it through two copies."""
    src = tmp_path / "src"
    runs = tmp_path / "hook-runs"
    (tmp_path / "version").write_text("v1\n")
    (src / "base" / "build").mkdir(parents=True)
    (src / "base" / "build" / "build-pre.sh").write_text(
        f"echo ran >> {runs}\n"
        'mkdir -p "$PAI_COMPONENT_DIR/generated"\n'
        'cp "$PAI_ROOT_DIR/version" "$PAI_COMPONENT_DIR/generated/version"\n'
    )
    (src / "base" / "build" / "hook-inputs").write_text("version\n")
    (src / "mid" / "build").mkdir(parents=True)
    (src / "mid" / "build" / "component.dep").write_text("base\n")
    (src / "mid" / "own.txt").write_text("mid 1\n")
    mid, app = f"{prefix}-mid", f"{prefix}-app"
    (src / "mid" / "build" / f"{mid}.dockerfile").write_text(
        f"FROM {busybox_image}\nCOPY dependency/base/generated/ /base/\n"
    )
    (src / "app" / "build").mkdir(parents=True)
    (src / "app" / "build" / "component.dep").write_text("mid\n")
    (src / "app" / "build" / f"{app}.dockerfile").write_text(
        f"FROM {busybox_image}\nCOPY dependency/mid/ /mid/\n"
    )

    first = build(src)
    assert ran(first, f"build-image:{mid}") and ran(first, f"build-image:{app}")
    assert read(app, "/mid/dependency/base/generated/version") == "v1"
    assert runs.read_text().count("ran") == 1

    second = build(src)
    assert skipped(second, f"build-image:{mid}") and skipped(second, f"build-image:{app}")
    assert runs.read_text().count("ran") == 1, "a hook with unchanged inputs ran"

    (src / "mid" / "own.txt").write_text("mid 2\n")  # only app reads it (a copy of mid)
    third = build(src)
    assert skipped(third, f"build-image:{mid}") and ran(third, f"build-image:{app}")
    assert read(app, "/mid/own.txt") == "mid 2"
    assert read(app, "/mid/dependency/base/generated/version") == "v1"

    (tmp_path / "version").write_text("v2\n")
    fourth = build(src)
    assert ran(fourth, f"build-image:{mid}") and ran(fourth, f"build-image:{app}")
    assert read(mid, "/base/version") == "v2"
    assert read(app, "/mid/dependency/base/generated/version") == "v2"
    assert runs.read_text().count("ran") == 2
    assert not list(src.glob("*/dependency")) and not list(src.glob("*/generated"))


@pytest.mark.engine
def test_a_build_that_reads_no_copy_makes_none(
    tmp_path: Path, prefix: str, busybox_image: str
) -> None:
    """app has two images; only app-dep reads dependency/. A change that rebuilds only
    app-own copies nothing; a change to lib rebuilds app-dep from a fresh copy. The
    copies are counted by a `cp` on PATH that logs and runs the real one."""
    calls = tmp_path / "cp-calls"
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "cp").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec /bin/cp "$@"\n')
    (wrappers / "cp").chmod(0o755)
    env = {"PATH": f"{wrappers}:{os.environ['PATH']}"}

    src = tmp_path / "src"
    own, dep = f"{prefix}-app-own", f"{prefix}-app-dep"
    app_on_lib(
        src,
        {
            own: f"FROM {busybox_image}\nCOPY own.txt /own.txt\n",
            dep: f"FROM {busybox_image}\nCOPY dependency/lib/ /lib/\n",
        },
    )
    (src / "lib" / "data.txt").write_text("data 1\n")

    def run() -> str:
        calls.unlink(missing_ok=True)
        return build(src, env)

    def copies() -> list[str]:
        lines = calls.read_text().splitlines() if calls.exists() else []
        return [line for line in lines if line.startswith("-a ")]

    first = run()
    assert ran(first, f"build-image:{own}") and ran(first, f"build-image:{dep}")
    assert len(copies()) == 1 and copies()[0].endswith("app/dependency/lib")
    assert read(dep, "/lib/data.txt") == "data 1"

    (src / "app" / "own.txt").write_text("own 2\n")
    second = run()
    assert ran(second, f"build-image:{own}") and skipped(second, f"build-image:{dep}")
    assert read(own, "/own.txt") == "own 2"
    assert copies() == [], "a build that reads no copy made one"

    (src / "lib" / "data.txt").write_text("data 2\n")
    third = run()
    assert skipped(third, f"build-image:{own}") and ran(third, f"build-image:{dep}")
    assert len(copies()) == 1
    assert read(dep, "/lib/data.txt") == "data 2"


@pytest.mark.engine
def test_a_check_waits_for_copies_being_made(
    tmp_path: Path, prefix: str, busybox_image: str
) -> None:
    """Two images of app read its copy of lib. When only the first changed, its build
    makes the copy while the second is checked: the check must see the finished copy,
    not a part of it (a part could match an older build and keep a stale image)."""
    src = tmp_path / "src"
    first_image, second_image = f"{prefix}-app-a", f"{prefix}-app-b"
    app_on_lib(
        src,
        {
            first_image: f"FROM {busybox_image}\nCOPY own.txt /own.txt\n"
            "COPY dependency/lib/data/ /data/\n",
            second_image: f"FROM {busybox_image}\nCOPY dependency/lib/data/ /data/\n",
        },
    )
    for index in range(3000):  # a copy that takes a while
        folder = src / "lib" / "data" / f"{index % 30:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.txt").write_text(f"{index}\n")

    build(src)
    for attempt in range(3):
        (src / "app" / "own.txt").write_text(f"own {attempt + 2}\n")
        output = build(src)
        assert ran(output, f"build-image:{first_image}")
        assert skipped(output, f"build-image:{second_image}"), output
    assert read(first_image, "/own.txt") == "own 4"
