"""Temp folders (claim, record, remove), dependency copies and the run lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paitasks.errors import PaiTasksError, TreeError
from paitasks.workspace import (
    RunLock,
    claim_temp_folders,
    copy_component,
    idle_run_mark,
    recorded_folders,
    remove_temp_folders,
    state_dir,
)

REPO = Path(__file__).resolve().parent.parent

# Takes the run lock of the tree at argv[1] with wait=(argv[2] == "wait"), says so on
# stdout, then holds it until stdin is closed (argv[3] == "hold") or releases it at once.
LOCKER = """
import sys
from pathlib import Path
from paitasks.errors import PaiTasksError
from paitasks.workspace import RunLock

lock = RunLock(Path(sys.argv[1]))
try:
    lock.acquire(wait=sys.argv[2] == "wait", poll=0.05)
except PaiTasksError as exc:
    print(f"refused: {exc}", flush=True)
    sys.exit(3)
print("acquired", flush=True)
if sys.argv[3] == "hold":
    sys.stdin.read()
lock.release()
"""


def locker(root: Path, mode: str, hold: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(root), mode, "hold" if hold else "release"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def try_lock(root: Path) -> subprocess.CompletedProcess[str]:
    """Another process asks for the lock with wait=False and releases it at once."""
    return subprocess.run(
        [sys.executable, "-c", LOCKER, str(root), "nowait", "release"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A repository root with `src/comp/`; yields (root, component folder)."""
    root = tmp_path / "repo"
    folder = root / "src" / "comp"
    (folder / "build").mkdir(parents=True)
    (folder / "build" / "comp.dockerfile").write_text("FROM busybox\n")
    yield root, folder


# --- claim_temp_folders -------------------------------------------------------------------


def test_claim_records_both_temp_folders(tree: tuple[Path, Path]) -> None:
    root, folder = tree
    claim_temp_folders(root, folder, "comp")
    assert recorded_folders(root) == [folder / "dependency", folder / "generated"]
    assert (state_dir(root) / "temp-folders").is_file()
    # claiming creates nothing in the component: the round does that
    assert not (folder / "dependency").exists() and not (folder / "generated").exists()


def test_claim_twice_records_once(tree: tuple[Path, Path]) -> None:
    root, folder = tree
    claim_temp_folders(root, folder, "comp")
    (folder / "dependency").mkdir()  # made by this round after its claim
    claim_temp_folders(root, folder, "comp")  # e.g. the pre hook's claim after copy-deps
    lines = (state_dir(root) / "temp-folders").read_text().splitlines()
    assert lines == [str(folder / "dependency"), str(folder / "generated")]


@pytest.mark.parametrize("name", ["dependency", "generated"])
@pytest.mark.parametrize("kind", ["dir", "file", "link"])
def test_claim_refuses_unrecorded_temp_folder(
    tree: tuple[Path, Path], tmp_path: Path, name: str, kind: str
) -> None:
    root, folder = tree
    path = folder / name
    if kind == "dir":
        path.mkdir()
        (path / "mine.txt").write_text("the user's file")
    elif kind == "file":
        path.write_text("the user's file")
    else:
        path.symlink_to(tmp_path / "nowhere")  # a dangling link counts too
    with pytest.raises(TreeError) as caught:
        claim_temp_folders(root, folder, "comp")
    message = str(caught.value)
    assert str(path) in message
    assert "comp" in message
    assert recorded_folders(root) == []
    assert path.is_symlink() or path.exists()  # left alone
    if kind == "dir":
        assert (path / "mine.txt").read_text() == "the user's file"


def test_claim_refuses_folder_left_after_record_was_cleared(tree: tuple[Path, Path]) -> None:
    root, folder = tree
    claim_temp_folders(root, folder, "comp")
    (folder / "generated").mkdir()
    remove_temp_folders(root)
    (folder / "generated").mkdir()  # the user makes one by hand after the run
    with pytest.raises(TreeError, match="generated"):
        claim_temp_folders(root, folder, "comp")


# --- remove_temp_folders ------------------------------------------------------------------


def test_remove_removes_exactly_the_recorded_folders(tree: tuple[Path, Path]) -> None:
    root, folder = tree
    other = root / "src" / "other"
    other.mkdir()
    (other / "generated").mkdir()  # not recorded: not paitasks'
    (other / "generated" / "keep.txt").write_text("keep")
    claim_temp_folders(root, folder, "comp")
    (folder / "dependency" / "dep").mkdir(parents=True)
    (folder / "dependency" / "dep" / "file").write_text("x")
    (folder / "generated").mkdir()

    removed = remove_temp_folders(root)

    assert sorted(removed) == [folder / "dependency", folder / "generated"]
    assert not (folder / "dependency").exists()
    assert not (folder / "generated").exists()
    assert (folder / "build" / "comp.dockerfile").is_file()
    assert (other / "generated" / "keep.txt").read_text() == "keep"
    assert recorded_folders(root) == []


def test_remove_is_idempotent(tree: tuple[Path, Path]) -> None:
    root, folder = tree
    claim_temp_folders(root, folder, "comp")
    (folder / "generated").mkdir()
    assert remove_temp_folders(root) == [folder / "generated"]
    assert remove_temp_folders(root) == []
    assert remove_temp_folders(root) == []
    assert recorded_folders(root) == []


def test_remove_without_any_state_does_nothing(tmp_path: Path) -> None:
    assert remove_temp_folders(tmp_path / "never-used") == []
    assert not (tmp_path / "never-used").exists()


def test_remove_only_some_keeps_the_rest_recorded(tree: tuple[Path, Path]) -> None:
    root, folder = tree
    other = root / "src" / "other"
    other.mkdir()
    claim_temp_folders(root, folder, "comp")
    claim_temp_folders(root, other, "other")
    (folder / "generated").mkdir()
    (other / "generated").mkdir()

    removed = remove_temp_folders(root, only=[folder / "dependency", folder / "generated"])

    assert removed == [folder / "generated"]
    assert (other / "generated").is_dir()
    assert recorded_folders(root) == [other / "dependency", other / "generated"]
    assert remove_temp_folders(root) == [other / "generated"]


def test_remove_unlinks_a_link_without_following_it(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, folder = tree
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    claim_temp_folders(root, folder, "comp")
    (folder / "dependency").symlink_to(outside, target_is_directory=True)

    removed = remove_temp_folders(root)

    assert removed == [folder / "dependency"]
    assert not (folder / "dependency").is_symlink()
    assert (outside / "precious.txt").read_text() == "precious"


def test_remove_does_not_follow_links_inside_a_temp_folder(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, folder = tree
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    claim_temp_folders(root, folder, "comp")
    (folder / "dependency" / "dep").mkdir(parents=True)
    (folder / "dependency" / "dep" / "link").symlink_to(outside, target_is_directory=True)

    remove_temp_folders(root)

    assert not (folder / "dependency").exists()
    assert (outside / "precious.txt").read_text() == "precious"


def test_remove_ignores_tampered_record_entries(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, folder = tree
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("data")
    precious_file = tmp_path / "precious.txt"
    precious_file.write_text("data")
    claim_temp_folders(root, folder, "comp")
    (folder / "generated").mkdir()
    record = state_dir(root) / "temp-folders"
    with record.open("a") as handle:
        handle.write(f"{precious}\n{precious_file}\n{root / 'src'}\n{folder / 'build'}\n")

    removed = remove_temp_folders(root)

    assert removed == [folder / "generated"]
    assert (precious / "data.txt").read_text() == "data"
    assert precious_file.read_text() == "data"
    assert (folder / "build" / "comp.dockerfile").is_file()


# --- copy_component -----------------------------------------------------------------------


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
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
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


# --- RunLock ------------------------------------------------------------------------------


def test_lock_refuses_a_second_run_until_released(tmp_path: Path) -> None:
    lock = RunLock(tmp_path)
    lock.acquire(wait=False)
    try:
        refused = try_lock(tmp_path)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert str(tmp_path / ".paitasks" / "lock") in refused.stdout
        assert f"pid {os.getpid()}" in refused.stdout  # names the run that holds it
        assert "Traceback" not in refused.stderr
    finally:
        lock.release()
    granted = try_lock(tmp_path)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert granted.stdout.strip() == "acquired"


def test_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = locker(tmp_path, "nowait", hold=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"
        refused = try_lock(tmp_path)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert str(tmp_path / ".paitasks" / "lock") in refused.stdout
        assert f"pid {holder.pid}" in refused.stdout
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    granted = try_lock(tmp_path)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    lock = RunLock(tmp_path)
    lock.acquire(wait=False)
    lock.release()


def test_waiting_lock_says_so_and_gets_the_lock_after_release(tmp_path: Path) -> None:
    holder = locker(tmp_path, "nowait", hold=True)
    waiter: subprocess.Popen[str] | None = None
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"
        waiter = locker(tmp_path, "wait", hold=False)
        assert waiter.stderr is not None
        notice = waiter.stderr.readline()
        assert "waiting" in notice and str(tmp_path / ".paitasks" / "lock") in notice
        holder.communicate("", timeout=60)  # closes stdin: the holder releases and exits
        assert holder.returncode == 0
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 0
        assert out.strip() == "acquired"
    finally:
        for process in (holder, waiter):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate(timeout=60)


def test_release_is_idempotent_and_lock_can_be_taken_again(tmp_path: Path) -> None:
    lock = RunLock(tmp_path)
    lock.acquire(wait=False)
    assert (tmp_path / ".paitasks" / "lock").read_text().startswith(f"pid {os.getpid()} run ")
    lock.release()
    lock.release()
    again = RunLock(tmp_path)
    again.acquire(wait=False)
    again.release()


def test_idle_run_mark_tells_whether_a_run_took_the_lock_since(tmp_path: Path) -> None:
    mark = idle_run_mark(tmp_path)
    assert mark == ""  # no run yet
    first = RunLock(tmp_path)
    first.acquire(wait=False)
    assert first.previous == mark, "nobody ran in between"
    assert idle_run_mark(tmp_path) is None, "a run holds the lock"
    first.release()

    mark = idle_run_mark(tmp_path)
    assert mark and mark.startswith(f"pid {os.getpid()} run ")
    other = RunLock(tmp_path)  # another run comes and goes
    other.acquire(wait=False)
    other.release()
    ours = RunLock(tmp_path)
    ours.acquire(wait=False)
    assert ours.previous != mark, "the run in between must show"
    ours.release()
