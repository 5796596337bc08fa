"""What the temp folders hold, made or not (contents.py): virtual copies equal the
copies made, predictions match, and hook keys follow every input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks.contents import Contents, declared_files, folder_temp_entries, stage_key
from paitasks.context import HashCache, folder_entries
from paitasks.errors import TreeError
from paitasks.settings import STATE_DIR
from paitasks.tempfolders import TEMP_FOLDERS, TempFolders
from tests.support import round_chain as chain
from tests.support import round_spec as spec


def contents(root: Path) -> Contents:
    """What the temp folders of the tree at `root` hold, for one run."""
    return Contents(TempFolders(root, root / STATE_DIR), HashCache(None))


def test_virtual_copies_equal_the_copies_made(tmp_path: Path) -> None:
    _, mid, app = chain(tmp_path)
    found = contents(tmp_path)
    temp, cache = found.temp, HashCache(None)
    virtual = found.entries(app, "post")
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
    before = contents(tmp_path).entries(app, "post")
    (Path(lib.folder) / "data" / "a.txt").write_text("changed")
    assert contents(tmp_path).entries(app, "post") != before  # the next run


def test_a_users_folder_is_refused_not_counted(tmp_path: Path) -> None:
    _, _, app = chain(tmp_path)
    found = contents(tmp_path)
    (Path(app.folder) / "generated").mkdir()
    (Path(app.folder) / "generated" / "mine.txt").write_text("keep")
    with pytest.raises(TreeError, match=r"component app: .*generated exists"):
        found.entries(app, "pre")
    with pytest.raises(TreeError, match="component app"):
        found.temp.ensure_real(app, "pre")
    assert (Path(app.folder) / "generated" / "mine.txt").read_text() == "keep"


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
    found = contents(root)
    virtual = found.component_entries(app, "post")
    found.temp.ensure_real(app, "post")
    assert found.component_entries(app, "post") == virtual


# --- hook keys ---------------------------------------------------------------------------


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
