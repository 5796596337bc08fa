"""Temp folders stay virtual until read; what they would hold equals what is then made."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks import staging, workspace
from paitasks.context import HashCache
from paitasks.errors import TreeError
from paitasks.staging import RoundSpec


def spec(root: Path, name: str, **kw: object) -> RoundSpec:
    folder = root / "src" / name
    (folder / "build").mkdir(parents=True, exist_ok=True)
    return RoundSpec(
        name=name, folder=str(folder), root=str(root), state=str(root / ".paitasks"), **kw  # type: ignore[arg-type]
    )


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


def test_virtual_copies_equal_the_copies_made(tmp_path: Path) -> None:
    _, mid, app = chain(tmp_path)
    cache = HashCache(None)
    virtual = staging.temp_entries(app, "final", cache)
    assert "dependency/mid/dependency/lib/data/a.txt" in virtual
    assert not staging.is_real(app) and not (Path(app.folder) / "dependency").exists()

    assert staging.ensure_real(app, "final") is True
    assert staging.is_real(app) and staging.is_real(mid)  # mid was made real to be copied
    made = Path(app.folder) / "dependency" / "mid" / "dependency" / "lib" / "data" / "a.txt"
    assert made.read_text() == "a"
    assert staging.folder_temp_entries(Path(app.folder), cache) == virtual
    assert staging.ensure_real(app, "final") is False  # once per run


def test_a_changed_source_changes_the_virtual_copies(tmp_path: Path) -> None:
    lib, _, app = chain(tmp_path)
    before = staging.temp_entries(app, "final", HashCache(None))
    (Path(lib.folder) / "data" / "a.txt").write_text("changed")
    assert staging.temp_entries(app, "final", HashCache(None)) != before


def test_the_run_end_removes_what_was_made(tmp_path: Path) -> None:
    _, mid, app = chain(tmp_path)
    staging.ensure_real(app, "copies")
    removed = workspace.remove_temp_folders(tmp_path)
    assert Path(app.folder) / "dependency" in removed
    assert Path(mid.folder) / "dependency" in removed
    assert not staging.is_real(app)


def test_a_users_folder_is_refused_not_counted(tmp_path: Path) -> None:
    _, _, app = chain(tmp_path)
    (Path(app.folder) / "generated").mkdir()
    (Path(app.folder) / "generated" / "mine.txt").write_text("keep")
    with pytest.raises(TreeError, match=r"component app: .*generated exists"):
        staging.temp_entries(app, "pre", HashCache(None))
    with pytest.raises(TreeError, match="component app"):
        staging.ensure_real(app, "pre")
    assert (Path(app.folder) / "generated" / "mine.txt").read_text() == "keep"


def test_a_declared_hook_is_skipped_and_its_output_stands_in(tmp_path: Path) -> None:
    lib = spec(tmp_path, "lib")
    hook = Path(lib.folder) / "build" / "build-pre.sh"
    hook.write_text("mkdir -p generated\n")
    (tmp_path / "input.txt").write_text("1")
    lib = RoundSpec(**{**lib.__dict__, "pre_hook": str(hook), "declared": ("input.txt",)})
    runs: list[int] = []

    def run() -> None:
        runs.append(1)
        (Path(lib.folder) / "generated").mkdir()
        (Path(lib.folder) / "generated" / "out.txt").write_text(f"run {len(runs)}")

    cache = HashCache(None)
    assert staging.run_hook_stage(lib, hook, run, cache) is False
    made = staging.folder_temp_entries(Path(lib.folder), cache)
    workspace.remove_temp_folders(tmp_path)  # the end of the run

    assert staging.run_hook_stage(lib, hook, run, cache) is True
    assert runs == [1] and not staging.is_real(lib)
    assert staging.temp_entries(lib, "pre", cache) == made
    assert staging.ensure_real(lib, "pre") is True  # an image must build: put back
    assert (Path(lib.folder) / "generated" / "out.txt").read_text() == "run 1"
    workspace.remove_temp_folders(tmp_path)

    (tmp_path / "input.txt").write_text("2")
    assert staging.run_hook_stage(lib, hook, run, cache) is False
    assert (Path(lib.folder) / "generated" / "out.txt").read_text() == "run 2"


def test_an_undeclared_hook_always_runs_with_its_copies_made(tmp_path: Path) -> None:
    lib, _, _ = chain(tmp_path)
    app = spec(tmp_path, "app2")
    hook = Path(app.folder) / "build" / "build-pre.sh"
    hook.write_text("true\n")
    app = RoundSpec(**{**app.__dict__, "copies": (lib,), "pre_hook": str(hook)})
    seen: list[bool] = []

    def run() -> None:
        seen.append((Path(app.folder) / "dependency" / "lib" / "data" / "a.txt").exists())

    for _ in range(2):
        assert staging.run_hook_stage(app, hook, run, HashCache(None)) is False
    assert seen == [True, True]


# Folder trees of files, sub-folders, links and modes: the copy of any of them must be
# described exactly as predicted, or a no-op run would rebuild forever.
names = st.sampled_from(["a", "b.txt", ".hidden", "sub", "x y", "dependency", "generated"])
files = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map(lambda parts: "/".join(parts)),
    st.tuples(st.binary(max_size=20), st.sampled_from([0o644, 0o600, 0o755, 0o700]),
              st.booleans()),
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lib_files=files, app_files=files)
def test_prediction_matches_any_copy(tmp_path: Path, lib_files: dict, app_files: dict) -> None:
    root = tmp_path / "case"
    shutil.rmtree(root, ignore_errors=True)
    lib = spec(root, "lib")
    for path, (content, mode, as_link) in lib_files.items():
        target = Path(lib.folder) / path
        if path.split("/")[0] in workspace.TEMP_FOLDERS or any(
            parent.is_file() or parent.is_symlink() for parent in target.parents
        ) or target.exists() or target.is_symlink():
            continue  # temp folders of a component are never its own files
        target.parent.mkdir(parents=True, exist_ok=True)
        if as_link:
            os.symlink("../" + path, target)
        else:
            target.write_bytes(content)
            os.chmod(target, mode)
    app = spec(root, "app", copies=(lib,))
    for path in app_files:
        if path.split("/")[0] not in workspace.TEMP_FOLDERS:
            (Path(app.folder) / path.replace("/", "_")).write_text("own")
    cache = HashCache(None)
    virtual = staging.component_entries(app, "final", cache)
    staging.ensure_real(app, "final")
    assert staging.component_entries(app, "final", cache) == virtual
