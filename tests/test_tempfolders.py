"""Temp folders: the record of what runs made (claim, refuse, remove), copies of
dependencies, what the folders hold while virtual, and hooks skipped on their declared
inputs (stage keys and saved stages)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from paitasks.errors import PaiTasksError, TreeError
from paitasks.settings import STATE_DIR
from paitasks.tempfolders import (
    SavedStage,
    TempFolders,
    copy_component,
)
from tests.support import ran, run_doit, skipped
from tests.support import round_chain as chain


def folders(root: Path) -> TempFolders:
    """The temp folders of the tree at `root`, for one run."""
    return TempFolders(root, root / STATE_DIR)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[TempFolders, Path]]:
    """A repository root with `src/comp/`; yields (its temp folders, component folder)."""
    root = tmp_path / "repo"
    folder = root / "src" / "comp"
    (folder / "build").mkdir(parents=True)
    (folder / "build" / "comp.dockerfile").write_text("FROM busybox\n")
    yield folders(root), folder


# --- virtual folders and making them ----------------------------------------------------


def test_the_run_end_removes_what_was_made(tmp_path: Path) -> None:
    _, mid, app = chain(tmp_path)
    temp = folders(tmp_path)
    temp.ensure_real(app, "copies")
    removed = temp.remove()
    assert Path(app.folder) / "dependency" in removed
    assert Path(mid.folder) / "dependency" in removed
    assert not temp.is_real(app)


# --- the record: claim -------------------------------------------------------------------


def test_claim_records_both_temp_folders(tree: tuple[TempFolders, Path]) -> None:
    temp, folder = tree
    temp.claim(folder, "comp")
    assert temp.recorded() == [folder / "dependency", folder / "generated"]
    assert (temp.root / ".paitasks" / "temp-folders").is_file()
    # claiming creates nothing in the component: the round does that
    assert not (folder / "dependency").exists() and not (folder / "generated").exists()


def test_claim_twice_records_once(tree: tuple[TempFolders, Path]) -> None:
    temp, folder = tree
    temp.claim(folder, "comp")
    (folder / "dependency").mkdir()  # made by this round after its claim
    temp.claim(folder, "comp")  # e.g. the pre hook's claim after copy-deps
    lines = (temp.root / ".paitasks" / "temp-folders").read_text().splitlines()
    assert lines == [str(folder / "dependency"), str(folder / "generated")]


@pytest.mark.parametrize("name", ["dependency", "generated"])
@pytest.mark.parametrize("kind", ["dir", "file", "link"])
def test_claim_refuses_unrecorded_temp_folder(
    tree: tuple[TempFolders, Path], tmp_path: Path, name: str, kind: str
) -> None:
    temp, folder = tree
    path = folder / name
    if kind == "dir":
        path.mkdir()
        (path / "mine.txt").write_text("the user's file")
    elif kind == "file":
        path.write_text("the user's file")
    else:
        path.symlink_to(tmp_path / "nowhere")  # a dangling link counts too
    with pytest.raises(TreeError) as caught:
        temp.claim(folder, "comp")
    message = str(caught.value)
    assert str(path) in message
    assert "comp" in message
    assert temp.recorded() == []
    assert path.is_symlink() or path.exists()  # left alone
    if kind == "dir":
        assert (path / "mine.txt").read_text() == "the user's file"
    with pytest.raises(TreeError, match=name):
        temp.refuse_unrecorded(folder, "comp")


def test_claim_refuses_folder_left_after_record_was_cleared(
    tree: tuple[TempFolders, Path],
) -> None:
    temp, folder = tree
    temp.claim(folder, "comp")
    (folder / "generated").mkdir()
    temp.refuse_unrecorded(folder, "comp")  # recorded: ours
    temp.remove()
    (folder / "generated").mkdir()  # the user makes one by hand after the run
    with pytest.raises(TreeError, match="generated"):
        temp.claim(folder, "comp")


# --- the record: remove ------------------------------------------------------------------


def test_remove_removes_exactly_the_recorded_folders(tree: tuple[TempFolders, Path]) -> None:
    temp, folder = tree
    other = temp.root / "src" / "other"
    other.mkdir()
    (other / "generated").mkdir()  # not recorded: not paitasks'
    (other / "generated" / "keep.txt").write_text("keep")
    temp.claim(folder, "comp")
    (folder / "dependency" / "dep").mkdir(parents=True)
    (folder / "dependency" / "dep" / "file").write_text("x")
    (folder / "generated").mkdir()

    removed = temp.remove()

    assert sorted(removed) == [folder / "dependency", folder / "generated"]
    assert not (folder / "dependency").exists()
    assert not (folder / "generated").exists()
    assert (folder / "build" / "comp.dockerfile").is_file()
    assert (other / "generated" / "keep.txt").read_text() == "keep"
    assert temp.recorded() == []


def test_remove_is_idempotent(tree: tuple[TempFolders, Path]) -> None:
    temp, folder = tree
    temp.claim(folder, "comp")
    (folder / "generated").mkdir()
    assert temp.remove() == [folder / "generated"]
    assert temp.remove() == []
    assert temp.remove() == []
    assert temp.recorded() == []


def test_remove_without_any_state_does_nothing(tmp_path: Path) -> None:
    assert folders(tmp_path / "never-used").remove() == []
    assert not (tmp_path / "never-used").exists()


def test_remove_only_some_keeps_the_rest_recorded(tree: tuple[TempFolders, Path]) -> None:
    temp, folder = tree
    other = temp.root / "src" / "other"
    other.mkdir()
    temp.claim(folder, "comp")
    temp.claim(other, "other")
    (folder / "generated").mkdir()
    (other / "generated").mkdir()

    removed = temp.remove(only=[folder / "dependency", folder / "generated"])

    assert removed == [folder / "generated"]
    assert (other / "generated").is_dir()
    assert temp.recorded() == [other / "dependency", other / "generated"]
    assert temp.remove() == [other / "generated"]


def precious_folder(tmp_path: Path) -> Path:
    """A folder outside the tree holding a file no cleanup may touch."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    return outside


def test_remove_unlinks_a_link_without_following_it(
    tree: tuple[TempFolders, Path], tmp_path: Path
) -> None:
    temp, folder = tree
    outside = precious_folder(tmp_path)
    temp.claim(folder, "comp")
    (folder / "dependency").symlink_to(outside, target_is_directory=True)

    removed = temp.remove()

    assert removed == [folder / "dependency"]
    assert not (folder / "dependency").is_symlink()
    assert (outside / "precious.txt").read_text() == "precious"


def test_remove_does_not_follow_links_inside_a_temp_folder(
    tree: tuple[TempFolders, Path], tmp_path: Path
) -> None:
    temp, folder = tree
    outside = precious_folder(tmp_path)
    temp.claim(folder, "comp")
    (folder / "dependency" / "dep").mkdir(parents=True)
    (folder / "dependency" / "dep" / "link").symlink_to(outside, target_is_directory=True)

    temp.remove()

    assert not (folder / "dependency").exists()
    assert (outside / "precious.txt").read_text() == "precious"


def test_remove_ignores_tampered_record_entries(
    tree: tuple[TempFolders, Path], tmp_path: Path
) -> None:
    temp, folder = tree
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("data")
    precious_file = tmp_path / "precious.txt"
    precious_file.write_text("data")
    temp.claim(folder, "comp")
    (folder / "generated").mkdir()
    record = temp.root / ".paitasks" / "temp-folders"
    with record.open("a") as handle:
        handle.write(f"{precious}\n{precious_file}\n{temp.root / 'src'}\n{folder / 'build'}\n")

    removed = temp.remove()

    assert removed == [folder / "generated"]
    assert (precious / "data.txt").read_text() == "data"
    assert precious_file.read_text() == "data"
    assert (folder / "build" / "comp.dockerfile").is_file()


# --- copy_component ----------------------------------------------------------------------


def test_copy_component_copies_everything_and_keeps_links(tmp_path: Path) -> None:
    source = tmp_path / "src" / "dep"
    (source / "build").mkdir(parents=True)
    (source / "build" / "dep.dockerfile").write_text("FROM busybox\n")
    (source / "generated").mkdir()
    (source / "generated" / "artifact.bin").write_bytes(b"\x00\x01")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the tree")
    (source / "to-outside").symlink_to(outside, target_is_directory=True)
    (source / "to-outside-file").symlink_to(outside / "secret.txt")
    (source / "relative").symlink_to("build/dep.dockerfile")
    (source / "dangling").symlink_to(tmp_path / "missing")
    destination = tmp_path / "src" / "user" / "dependency" / "dep"

    copy_component(source, destination)

    assert (destination / "build" / "dep.dockerfile").read_text() == "FROM busybox\n"
    assert (destination / "generated" / "artifact.bin").read_bytes() == b"\x00\x01"
    for name in ("to-outside", "to-outside-file", "relative", "dangling"):
        link = destination / name
        assert link.is_symlink(), name
        assert os.readlink(link) == os.readlink(source / name)
    # the outside folder was linked, not copied: no real file of it is in the copy
    real_files = [p for p in destination.rglob("*") if p.is_file() and not p.is_symlink()]
    assert sorted(p.relative_to(destination).as_posix() for p in real_files) == [
        "build/dep.dockerfile",
        "generated/artifact.bin",
    ]
    assert (outside / "secret.txt").read_text() == "outside the tree"


def test_copy_component_replaces_an_existing_destination(tmp_path: Path) -> None:
    source = tmp_path / "dep"
    source.mkdir()
    (source / "new.txt").write_text("new")
    destination = tmp_path / "user" / "dependency" / "dep"
    destination.mkdir(parents=True)
    (destination / "stale.txt").write_text("stale")
    (destination / "new.txt").write_text("old content")

    copy_component(source, destination)

    assert sorted(p.name for p in destination.iterdir()) == ["new.txt"]
    assert (destination / "new.txt").read_text() == "new"


def test_copy_component_replaces_a_link_destination_without_following_it(
    tmp_path: Path,
) -> None:
    source = tmp_path / "dep"
    source.mkdir()
    (source / "new.txt").write_text("new")
    outside = precious_folder(tmp_path)
    destination = tmp_path / "user" / "dependency" / "dep"
    destination.parent.mkdir(parents=True)
    destination.symlink_to(outside, target_is_directory=True)

    copy_component(source, destination)

    assert not destination.is_symlink()
    assert (destination / "new.txt").read_text() == "new"
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


def test_copy_component_of_a_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PaiTasksError) as caught:
        copy_component(tmp_path / "nosuch", tmp_path / "user" / "dependency" / "nosuch")
    assert str(tmp_path / "nosuch") in str(caught.value)


def test_store_and_restore_put_back_the_temp_folders(tmp_path: Path) -> None:
    folder = tmp_path / "comp"
    (folder / "generated").mkdir(parents=True)
    (folder / "generated" / "out").write_text("v1")
    saved = SavedStage(tmp_path / ".paitasks", "comp", "pre")
    assert not saved.matches("k")
    saved.store("k", folder)
    assert saved.matches("k") and not saved.matches("other")
    (folder / "generated" / "out").write_text("wrong")
    (folder / "dependency").mkdir()
    saved.restore(folder)
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
    (base / "build" / f"{prefix}-base.dockerfile").write_text("FROM scratch\nCOPY generated/ /\n")

    def build() -> tuple[str, int]:
        result = run_doit("build", f"src={src}")
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout, len(runs.read_text().splitlines())

    out, count = build()
    assert count == 1 and ran(out, f"build-image:{prefix}-base")
    out, count = build()
    assert count == 1, "the hook ran although nothing it reads changed"
    assert "reused prebuild:base" in out
    assert skipped(out, f"build-image:{prefix}-base")  # what it made last time matched
    assert not (base / "generated").exists()
    (tmp_path / "version.txt").write_text("2")
    out, count = build()
    assert count == 2 and ran(out, f"build-image:{prefix}-base")
