"""Hooks with declared inputs (build/hook-inputs) are skipped while nothing they read changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from paitasks.context import HashCache, folder_entries
from paitasks.rounds import RoundCache, declared_files, stage_key
from tests.support import REPO


def key(folder: Path, root: Path, hook: Path, **kw: object) -> str:
    cache = HashCache(None)
    return stage_key(
        stage=str(kw.get("stage", "pre")),
        hook=hook,
        component=folder_entries(folder, cache),
        root=root,
        patterns=list(kw.get("patterns", ["inputs/*.txt"])),  # type: ignore[call-overload]
        cache=cache,
        images=kw.get("images"),  # type: ignore[arg-type]
    )


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path
    folder = root / "src" / "comp"
    (folder / "build").mkdir(parents=True)
    hook = folder / "build" / "build-pre.sh"
    hook.write_text("echo hi\n")
    (folder / "app.txt").write_text("app")
    (root / "inputs").mkdir()
    (root / "inputs" / "a.txt").write_text("a")
    return root, folder, hook


def test_key_follows_every_input(layout: tuple[Path, Path, Path]) -> None:
    root, folder, hook = layout
    first = key(folder, root, hook)
    assert key(folder, root, hook) == first
    (root / "inputs" / "a.txt").write_text("changed")
    second = key(folder, root, hook)
    assert second != first
    (folder / "app.txt").write_text("changed")
    third = key(folder, root, hook)
    assert third != second
    hook.write_text("echo changed\n")
    fourth = key(folder, root, hook)
    assert fourth != third
    assert key(folder, root, hook, images={"x": "sha256:1"}) != fourth
    (root / "inputs" / "other.log").write_text("not declared")
    assert key(folder, root, hook) == fourth


def test_image_ids_count_only_after_the_build(layout: tuple[Path, Path, Path]) -> None:
    root, folder, hook = layout
    assert key(folder, root, hook, stage="post") != key(
        folder, root, hook, stage="post", images={"x": "1"}
    )
    assert key(folder, root, hook, stage="pre") != key(folder, root, hook, stage="post")


def test_declared_folders_and_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "sub" / "x.md").write_text("x")
    found = declared_files(tmp_path, ["docs", str(tmp_path / "docs" / "sub" / "x.md")])
    assert found == [tmp_path / "docs" / "sub" / "x.md"]


def test_store_and_restore_put_back_the_temp_folders(tmp_path: Path) -> None:
    folder = tmp_path / "comp"
    (folder / "generated").mkdir(parents=True)
    (folder / "generated" / "out").write_text("v1")
    cache = RoundCache(tmp_path / ".paitasks", "comp", "pre")
    assert not cache.matches("k")
    cache.store("k", folder)
    assert cache.matches("k") and not cache.matches("other")
    (folder / "generated" / "out").write_text("wrong")
    (folder / "dependency").mkdir()
    cache.restore(folder)
    assert (folder / "generated" / "out").read_text() == "v1"
    assert not (folder / "dependency").exists()


@pytest.mark.engine
def test_declared_hook_is_skipped_until_an_input_changes(
    tmp_path: Path, prefix: str, cleanup: None, engine: object
) -> None:
    src = tmp_path / "src"
    base = src / "base"
    (base / "build").mkdir(parents=True)
    runs = tmp_path / "hook-runs"
    (tmp_path / "version.txt").write_text("1")
    (base / "build" / "build-pre.sh").write_text(
        "set -e\n"
        f"echo ran >> {runs}\n"
        'mkdir -p "$PAI_COMPONENT_DIR/generated"\n'
        'cp /bin/busybox "$PAI_COMPONENT_DIR/generated/busybox"\n'
        'cp "$PAI_ROOT_DIR/version.txt" "$PAI_COMPONENT_DIR/generated/version.txt"\n'
    )
    (base / "build" / "hook-inputs").write_text("/bin/busybox\nversion.txt\n")
    (base / "build" / f"{prefix}-base.dockerfile").write_text(
        "FROM scratch\nCOPY generated/ /\n"
    )

    def build() -> tuple[str, int]:
        result = subprocess.run(
            [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py"), "build", f"src={src}"],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout, len(runs.read_text().splitlines())

    out, count = build()
    assert count == 1 and f".  build-image:{prefix}-base" in out
    out, count = build()
    assert count == 1, "the hook ran although nothing it reads changed"
    assert "reused prebuild:base" in out
    assert f"-- build-image:{prefix}-base" in out  # what it made last time matched
    assert not (base / "generated").exists()
    (tmp_path / "version.txt").write_text("2")
    out, count = build()
    assert count == 2 and f".  build-image:{prefix}-base" in out
