"""copy-deps is skipped when nothing reads the copies but images that are up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from python_on_whales import docker as whales

from tests.support import REPO


def build(src: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "-n", "2", "build",
         f"src={src}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def read(image: str, path: str) -> str:
    output = whales.run(image, ["cat", path], remove=True, networks=["none"])
    assert isinstance(output, str)
    return output.strip()


@pytest.mark.engine
def test_copies_are_skipped_only_while_nothing_changes(
    tmp_path: Path, prefix: str, busybox_image: str
) -> None:
    src = tmp_path / "src"
    (src / "lib" / "build").mkdir(parents=True)
    (src / "lib" / "data.txt").write_text("data 1\n")
    (src / "lib" / "build" / "build-post.sh").write_text(
        'mkdir -p "$PAI_COMPONENT_DIR/generated"\n'
        f'cat {tmp_path}/version > "$PAI_COMPONENT_DIR/generated/version"\n'
    )
    (tmp_path / "version").write_text("v1\n")
    (src / "app" / "build").mkdir(parents=True)
    (src / "app" / "build" / "component.dep").write_text("lib\n")
    app = f"{prefix}-app"
    (src / "app" / "build" / f"{app}.dockerfile").write_text(
        f"FROM {busybox_image}\nCOPY dependency/lib/ /lib/\n"
    )

    first = build(src)
    assert ".  copy-deps:app" in first and f".  build-image:{app}" in first
    assert read(app, "/lib/data.txt") == "data 1"

    second = build(src)
    assert "-- copy-deps:app" in second and f"-- build-image:{app}" in second
    assert not (src / "app" / "dependency").exists()

    (src / "lib" / "data.txt").write_text("data 2\n")
    third = build(src)
    assert ".  copy-deps:app" in third and f".  build-image:{app}" in third
    assert read(app, "/lib/data.txt") == "data 2"

    # What lib's hook makes (its generated/, copied along) counts too.
    (tmp_path / "version").write_text("v2\n")
    fourth = build(src)
    assert f".  build-image:{app}" in fourth
    assert read(app, "/lib/generated/version") == "v2"
    assert f"-- build-image:{app}" in build(src)
