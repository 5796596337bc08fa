"""One run of a tree: the run lock (one run at a time, and whether another ran since),
the view of the engine's images (listed once, early, and again only when another run
may have changed them since), and the Run's start and end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from paitasks.engine import Engine, LocalImage
from paitasks.errors import EngineError
from paitasks.run import ImageView, Run, RunLock, idle_run_mark
from paitasks.settings import STATE_DIR, Settings
from tests.support import REPO

# Takes the run lock of the state folder argv[1] with wait=(argv[2] == "wait"), says so on
# stdout, then holds it until stdin is closed (argv[3] == "hold") or releases it at once.
LOCKER = """
import sys
from pathlib import Path
from paitasks.errors import PaiTasksError
from paitasks.run import RunLock

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


def locker(state: Path, mode: str, hold: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(state), mode, "hold" if hold else "release"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def try_lock(state: Path) -> subprocess.CompletedProcess[str]:
    """Another process asks for the lock with wait=False and releases it at once."""
    return subprocess.run(
        [sys.executable, "-c", LOCKER, str(state), "nowait", "release"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


# --- RunLock ------------------------------------------------------------------------------


def test_lock_refuses_a_second_run_until_released(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / STATE_DIR)
    lock.acquire(wait=False)
    try:
        refused = try_lock(tmp_path / STATE_DIR)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert str(tmp_path / ".paitasks" / "lock") in refused.stdout
        assert f"pid {os.getpid()}" in refused.stdout  # names the run that holds it
        assert "Traceback" not in refused.stderr
    finally:
        lock.release()
    granted = try_lock(tmp_path / STATE_DIR)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert granted.stdout.strip() == "acquired"


def test_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    holder = locker(tmp_path / STATE_DIR, "nowait", hold=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"
        refused = try_lock(tmp_path / STATE_DIR)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert str(tmp_path / ".paitasks" / "lock") in refused.stdout
        assert f"pid {holder.pid}" in refused.stdout
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    granted = try_lock(tmp_path / STATE_DIR)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    lock = RunLock(tmp_path / STATE_DIR)
    lock.acquire(wait=False)
    lock.release()


def test_waiting_lock_says_so_and_gets_the_lock_after_release(tmp_path: Path) -> None:
    holder = locker(tmp_path / STATE_DIR, "nowait", hold=True)
    waiter: subprocess.Popen[str] | None = None
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"
        waiter = locker(tmp_path / STATE_DIR, "wait", hold=False)
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
    lock = RunLock(tmp_path / STATE_DIR)
    lock.acquire(wait=False)
    assert (tmp_path / ".paitasks" / "lock").read_text().startswith(f"pid {os.getpid()} run ")
    lock.release()
    lock.release()
    again = RunLock(tmp_path / STATE_DIR)
    again.acquire(wait=False)
    again.release()


def test_idle_run_mark_tells_whether_a_run_took_the_lock_since(tmp_path: Path) -> None:
    mark = idle_run_mark(tmp_path / STATE_DIR)
    assert mark == ""  # no run yet
    first = RunLock(tmp_path / STATE_DIR)
    first.acquire(wait=False)
    assert first.previous == mark, "nobody ran in between"
    assert idle_run_mark(tmp_path / STATE_DIR) is None, "a run holds the lock"
    first.release()

    mark = idle_run_mark(tmp_path / STATE_DIR)
    assert mark and mark.startswith(f"pid {os.getpid()} run ")
    other = RunLock(tmp_path / STATE_DIR)  # another run comes and goes
    other.acquire(wait=False)
    other.release()
    ours = RunLock(tmp_path / STATE_DIR)
    ours.acquire(wait=False)
    assert ours.previous != mark, "the run in between must show"
    ours.release()


# --- ImageView ----------------------------------------------------------------------------


class Listings:
    """Stands in for the engine's image listing: each call answers the next snapshot."""

    def __init__(self, *answers: dict[str, LocalImage] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def local_images(self) -> dict[str, LocalImage]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


OLD = {"app": LocalImage("sha256:old")}
NEW = {"app": LocalImage("sha256:new")}


def view_of(listings: Listings) -> ImageView:
    return ImageView(lambda: cast(Engine, cast(Any, listings)))


def test_a_prefetched_listing_serves_the_run_when_no_run_came_between() -> None:
    listings = Listings(OLD, NEW)
    view = view_of(listings)
    view.prefetch("pid 1 run a\n")
    view.run_started("pid 1 run a\n", "pid 2 run b\n")
    assert view.get("app") == OLD["app"]
    assert view.get("other") is None
    assert listings.calls == 1


def test_the_listing_is_made_again_when_another_run_took_the_lock_since() -> None:
    listings = Listings(OLD, NEW)
    view = view_of(listings)
    view.prefetch("pid 1 run a\n")
    view.run_started("pid 2 run b\n", "pid 3 run c\n")  # run b may have rebuilt app
    assert view.get("app") == NEW["app"]
    assert listings.calls == 2


def test_a_failed_prefetch_is_reported_by_the_listing_the_run_needs() -> None:
    listings = Listings(EngineError("engine gone"), EngineError("cannot list images: down"))
    view = view_of(listings)
    view.prefetch("")
    with pytest.raises(EngineError, match="cannot list images: down"):
        view.get("app")
    assert listings.calls == 2


def test_without_a_prefetch_the_first_question_lists() -> None:
    listings = Listings(OLD)
    view = view_of(listings)
    view.run_started("anything", "pid 2 run b\n")
    assert view.get("app") == OLD["app"] and listings.calls == 1


def test_a_second_run_in_one_process_keeps_its_view_unless_another_ran_between() -> None:
    """`pai-build push` makes two doit runs in one process: the second trusts the first
    one's view (kept current by its own builds) only if no other run came between."""
    listings = Listings(OLD, NEW)
    view = view_of(listings)
    view.prefetch("")
    view.run_started("", "pid 1 run a\n")
    assert view.get("app") == OLD["app"]
    view.prefetch("pid 1 run a\n")  # the second run's dodo load: the view is there
    view.run_started("pid 1 run a\n", "pid 1 run b\n")
    assert view.get("app") == OLD["app"] and listings.calls == 1

    view.run_started("pid 7 run x\n", "pid 1 run c\n")  # another process ran between
    assert view.get("app") == NEW["app"] and listings.calls == 2


# --- Run: start and end -------------------------------------------------------------------


def test_a_run_holds_the_lock_and_tidies_temp_folders_at_both_ends(tmp_path: Path) -> None:
    settings = Settings(src=tmp_path / "src")
    folder = tmp_path / "src" / "comp"
    folder.mkdir(parents=True)
    killed = Run(settings)  # a run killed after making a temp folder: nothing tidied
    killed.temp.claim(folder, "comp")
    (folder / "generated").mkdir()

    run = Run(settings)
    assert not run.executing
    assert run.begin(check_engine=False) == [folder / "generated"]
    assert run.executing and not (folder / "generated").exists()
    assert idle_run_mark(settings.state) is None, "the run holds the tree's lock"
    refused = try_lock(settings.state)
    assert refused.returncode == 3, refused.stdout + refused.stderr

    run.temp.claim(folder, "comp")
    (folder / "dependency").mkdir()
    run.end()
    assert not (folder / "dependency").exists() and run.temp.recorded() == []
    assert try_lock(settings.state).returncode == 0, "the run released the lock"
    run.end()  # idempotent


def test_two_runs_in_one_process_share_nothing(tmp_path: Path) -> None:
    first = Run(Settings(src=tmp_path / "a" / "src"))
    second = Run(Settings(src=tmp_path / "b" / "src"))
    first.begin(check_engine=False)
    try:
        assert first.executing and not second.executing
        assert first.hashes is not second.hashes
        assert first.images is not second.images
        assert first.engine is first.engine and first.engine is not second.engine
    finally:
        first.end()
