"""Temp folders: the record of what runs made (claim, refuse, remove), copies of
dependencies, what the folders hold while virtual, and hooks skipped on their declared
inputs (stage keys and saved stages)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks.context import HashCache, folder_entries
from paitasks.errors import PaiTasksError, TreeError
from paitasks.settings import STATE_DIR
from paitasks.tempfolders import (
    TEMP_FOLDERS,
    RoundSpec,
    SavedStage,
    TempFolders,
    copy_component,
    declared_files,
    folder_temp_entries,
    hook_output,
    stage_key,
)
from tests.support import ran, run_doit, skipped


def folders(root: Path) -> TempFolders:
    """The temp folders of the tree at `root`, for one run."""
    return TempFolders(root, root / STATE_DIR)


def spec(root: Path, name: str, **kw: Any) -> RoundSpec:
    folder = root / "src" / name
    (folder / "build").mkdir(parents=True, exist_ok=True)
    return RoundSpec(name=name, folder=str(folder), **kw)


def chain(root: Path) -> tuple[RoundSpec, RoundSpec, RoundSpec]:
    """lib <- mid <- app, each copying the one before (copies nest)."""
    lib = spec(root, "lib")
    (Path(lib.folder) / "data").mkdir()
    (Path(lib.folder) / "data" / "a.txt").write_text("a")
    (Path(lib.folder) / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(Path(lib.folder) / "run.sh", 0o750)
    os.symlink("data/a.txt", Path(lib.folder) / "link")
    mid = spec(root, "mid", copies=(lib,))
    (Path(mid.folder) / "mid.txt").write_text("m")
    app = spec(root, "app", copies=(mid,))
    return lib, mid, app


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[TempFolders, Path]]:
    """A repository root with `src/comp/`; yields (its temp folders, component folder)."""
    root = tmp_path / "repo"
    folder = root / "src" / "comp"
    (folder / "build").mkdir(parents=True)
    (folder / "build" / "comp.dockerfile").write_text("FROM busybox\n")
    yield folders(root), folder


# --- virtual folders and making them ----------------------------------------------------


def test_virtual_copies_equal_the_copies_made(tmp_path: Path) -> None:
    _, mid, app = chain(tmp_path)
    temp = folders(tmp_path)
    cache = HashCache(None)
    virtual = temp.entries(app, "post", cache)
    assert "dependency/mid/dependency/lib/data/a.txt" in virtual
    assert not temp.is_real(app) and not (Path(app.folder) / "dependency").exists()

    assert temp.ensure_real(app, "post") is True
    assert temp.is_real(app) and temp.is_real(mid)  # mid was made real to be copied
    made = Path(app.folder) / "dependency" / "mid" / "dependency" / "lib" / "data" / "a.txt"
    assert made.read_text() == "a"
    assert folder_temp_entries(Path(app.folder), cache) == virtual
    assert temp.ensure_real(app, "post") is False  # once per run


def test_a_changed_source_changes_the_virtual_copies(tmp_path: Path) -> None:
    lib, _, app = chain(tmp_path)
    before = folders(tmp_path).entries(app, "post", HashCache(None))
    (Path(lib.folder) / "data" / "a.txt").write_text("changed")
    assert folders(tmp_path).entries(app, "post", HashCache(None)) != before  # the next run


def test_the_run_end_removes_what_was_made(tmp_path: Path) -> None:
    _, mid, app = chain(tmp_path)
    temp = folders(tmp_path)
    temp.ensure_real(app, "copies")
    removed = temp.remove()
    assert Path(app.folder) / "dependency" in removed
    assert Path(mid.folder) / "dependency" in removed
    assert not temp.is_real(app)


def test_a_users_folder_is_refused_not_counted(tmp_path: Path) -> None:
    _, _, app = chain(tmp_path)
    temp = folders(tmp_path)
    (Path(app.folder) / "generated").mkdir()
    (Path(app.folder) / "generated" / "mine.txt").write_text("keep")
    with pytest.raises(TreeError, match=r"component app: .*generated exists"):
        temp.entries(app, "pre", HashCache(None))
    with pytest.raises(TreeError, match="component app"):
        temp.ensure_real(app, "pre")
    assert (Path(app.folder) / "generated" / "mine.txt").read_text() == "keep"


def test_a_declared_hook_is_skipped_and_its_output_stands_in(tmp_path: Path) -> None:
    lib = spec(tmp_path, "lib")
    hook = Path(lib.folder) / "build" / "build-pre.sh"
    hook.write_text("mkdir -p generated\n")
    (tmp_path / "input.txt").write_text("1")
    lib = dataclasses.replace(lib, pre_hook=str(hook), declared=("input.txt",))
    runs: list[int] = []

    def run() -> None:
        runs.append(1)
        (Path(lib.folder) / "generated").mkdir()
        (Path(lib.folder) / "generated" / "out.txt").write_text(f"run {len(runs)}")

    cache = HashCache(None)
    temp = folders(tmp_path)
    assert temp.run_hook(lib, hook, run, cache) is False
    made = folder_temp_entries(Path(lib.folder), cache)
    temp.remove()  # the end of the run

    temp = folders(tmp_path)  # the next run
    assert temp.run_hook(lib, hook, run, cache) is True
    assert runs == [1] and not temp.is_real(lib)
    # What the hook makes counts by its key, whether made, skipped or never run here.
    key = temp.hook_key(lib, "pre", cache)
    assert temp.entries(lib, "pre", cache) == {hook_output("pre"): f"key {key}"}
    assert made and "generated/out.txt" in made
    assert temp.ensure_real(lib, "pre") is True  # an image must build: put back
    assert (Path(lib.folder) / "generated" / "out.txt").read_text() == "run 1"
    temp.remove()

    temp = folders(tmp_path)
    (tmp_path / "input.txt").write_text("2")
    assert temp.run_hook(lib, hook, run, cache) is False
    assert (Path(lib.folder) / "generated" / "out.txt").read_text() == "run 2"


def test_an_undeclared_hook_always_runs_with_its_copies_made(tmp_path: Path) -> None:
    lib, _, _ = chain(tmp_path)
    app = spec(tmp_path, "app2")
    hook = Path(app.folder) / "build" / "build-pre.sh"
    hook.write_text("true\n")
    app = dataclasses.replace(app, copies=(lib,), pre_hook=str(hook))
    seen: list[bool] = []

    def run() -> None:
        seen.append((Path(app.folder) / "dependency" / "lib" / "data" / "a.txt").exists())

    for _ in range(2):
        assert folders(tmp_path).run_hook(app, hook, run, HashCache(None)) is False
    assert seen == [True, True]


# Folder trees of files, sub-folders, links and modes: the copy of any of them must be
# described exactly as predicted, or a no-op run would rebuild forever.
names = st.sampled_from(["a", "b.txt", ".hidden", "sub", "x y", "dependency", "generated"])
files = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map(lambda parts: "/".join(parts)),
    st.tuples(st.binary(max_size=20), st.sampled_from([0o644, 0o600, 0o755, 0o700]), st.booleans()),
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lib_files=files, app_files=files)
def test_prediction_matches_any_copy(
    tmp_path: Path,
    lib_files: dict[str, tuple[bytes, int, bool]],
    app_files: dict[str, tuple[bytes, int, bool]],
) -> None:
    root = tmp_path / "case"
    shutil.rmtree(root, ignore_errors=True)
    lib = spec(root, "lib")
    for path, (content, mode, as_link) in lib_files.items():
        target = Path(lib.folder) / path
        if (
            path.split("/")[0] in TEMP_FOLDERS
            or any(parent.is_file() or parent.is_symlink() for parent in target.parents)
            or target.exists()
            or target.is_symlink()
        ):
            continue  # temp folders of a component are never its own files
        target.parent.mkdir(parents=True, exist_ok=True)
        if as_link:
            os.symlink("../" + path, target)
        else:
            target.write_bytes(content)
            os.chmod(target, mode)
    app = spec(root, "app", copies=(lib,))
    for path in app_files:
        if path.split("/")[0] not in TEMP_FOLDERS:
            (Path(app.folder) / path.replace("/", "_")).write_text("own")
    cache = HashCache(None)
    temp = folders(root)
    virtual = temp.component_entries(app, "post", cache)
    temp.ensure_real(app, "post")
    assert temp.component_entries(app, "post", cache) == virtual


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


# --- stage keys and saved stages ---------------------------------------------------------


def key(folder: Path, root: Path, hook: Path, **kw: Any) -> str:
    cache = HashCache(None)
    return stage_key(
        stage=str(kw.get("stage", "pre")),
        hook=hook,
        component=folder_entries(folder, cache),
        root=root,
        patterns=list(kw.get("patterns", ["inputs/*.txt"])),
        cache=cache,
        images=kw.get("images"),
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
