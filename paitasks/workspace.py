"""The files a build round touches: temp folders, dependency copies and the run lock.

A component's `dependency/` and `generated/` folders are temporary. Before a round uses
them their paths are appended to `.paitasks/temp-folders`, so the end of the run (or the
start of the next one, after a kill) removes exactly those folders and nothing else. A
folder of that name that paitasks did not record is the user's: the round refuses to
touch it rather than delete it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from paitasks.errors import PaiTasksError, TreeError

TEMP_FOLDERS = ("dependency", "generated")
STATE_DIR = ".paitasks"
RECORD_FILE = "temp-folders"
LOCK_FILE = "lock"

_record_lock = threading.Lock()


def state_dir(root: Path) -> Path:
    """Where paitasks keeps everything between runs: `<root>/.paitasks`."""
    return root / STATE_DIR


def _record_path(root: Path) -> Path:
    return state_dir(root) / RECORD_FILE


def recorded_folders(root: Path) -> list[Path]:
    """The temp folders recorded by runs that have not tidied up yet."""
    return [Path(line) for line in dict.fromkeys(_record_lines(root)) if line]


def is_recorded(root: Path, folder: Path) -> bool:
    """Whether `folder` is recorded (asked for every image check: no Path per line)."""
    return str(folder) in _record_lines(root)


def _record_lines(root: Path) -> list[str]:
    try:
        return _record_path(root).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def claim_temp_folders(root: Path, folder: Path, component: str) -> None:
    """Record a component's temp folders before its round creates them.

    Raises TreeError when such a folder exists and no paitasks run recorded it: it holds
    the user's files, which paitasks must neither use as scratch space nor delete.
    """
    with _record_lock:
        known = set(recorded_folders(root))
        _refuse(known, folder, component)
        new = [path for path in (folder / name for name in TEMP_FOLDERS) if path not in known]
        if new:
            state_dir(root).mkdir(parents=True, exist_ok=True)
            # Written before the folders exist, so a killed run's are tidied by the next.
            # (No fsync: the page cache survives a killed process; only power loss loses
            # it, and then the folders are at worst left for `doit clean`.)
            with open(_record_path(root), "a", encoding="utf-8") as record:
                record.write("".join(f"{path}\n" for path in new))


def refuse_unrecorded(root: Path, folder: Path, component: str) -> None:
    """Raise TreeError when a temp folder of the component exists that no run made."""
    if not any(os.path.lexists(folder / name) for name in TEMP_FOLDERS):
        return  # the usual case: nothing to look up
    with _record_lock:
        _refuse(set(recorded_folders(root)), folder, component)


def _refuse(known: set[Path], folder: Path, component: str) -> None:
    for path in (folder / name for name in TEMP_FOLDERS):
        if (path.exists() or path.is_symlink()) and path not in known:
            raise TreeError(
                f"component {component}: {path} exists and was not made by paitasks; "
                f"`{path.name}/` is a temp folder that every run deletes, so move your "
                f"files out of it first"
            )


def remove_temp_folders(root: Path, only: Iterable[Path] | None = None) -> list[Path]:
    """Remove recorded temp folders (all, or those in `only`); return what was removed.

    Idempotent. Only paths named `dependency` or `generated` are ever removed, and a link
    in their place is unlinked, never followed.
    """
    with _record_lock:
        recorded = recorded_folders(root)
        wanted = set(recorded if only is None else only)
        removed: list[Path] = []
        for path in recorded:
            if path not in wanted or path.name not in TEMP_FOLDERS:
                continue
            if path.is_symlink() or path.is_file():
                path.unlink()
                removed.append(path)
            elif path.is_dir():
                shutil.rmtree(path)
                removed.append(path)
        keep = [path for path in recorded if path not in wanted]
        if keep:
            _record_path(root).write_text("".join(f"{p}\n" for p in keep), encoding="utf-8")
        else:
            _record_path(root).unlink(missing_ok=True)
        return removed


def copy_component(source: Path, destination: Path) -> None:
    """Copy a dependency's whole folder; links stay links (never followed out of the tree).

    GNU `cp -a` does it about twice as fast as shutil (copy-deps is most of a no-op
    run's time); shutil is the fallback where there is no GNU cp.
    """
    if destination.is_symlink() or destination.is_file():
        destination.unlink()
    elif destination.exists():
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if _gnu_cp():
        result = subprocess.run(
            ["cp", "-a", "--no-target-directory", "--", str(source), str(destination)],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            return
        raise PaiTasksError(f"cannot copy {source} to {destination}: {result.stderr.strip()}")
    try:
        shutil.copytree(source, destination, symlinks=True)
    except (OSError, shutil.Error) as exc:
        raise PaiTasksError(f"cannot copy {source} to {destination}: {exc}") from None


@functools.cache
def _gnu_cp() -> bool:
    try:
        result = subprocess.run(["cp", "--version"], capture_output=True, text=True)
    except OSError:
        return False
    return result.returncode == 0 and "GNU" in result.stdout


class RunLock:
    """One run at a time per tree: an flock on `.paitasks/lock`, released by the kernel
    when the process dies, so a killed run never leaves a stale lock behind.

    Each run writes a new line into the file (its pid and a random token); `previous`
    is the line the run before left, so a run can tell whether another one ran since
    it last looked (see `idle_run_mark`)."""

    def __init__(self, root: Path) -> None:
        self.path = state_dir(root) / LOCK_FILE
        self._file: IO[str] | None = None
        self.previous: str | None = None  # the line the run before left
        self.written = ""  # the line this run wrote

    def acquire(self, wait: bool = True, poll: float = 0.5) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        told = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    handle.close()
                    raise
                if not wait:
                    handle.close()
                    raise PaiTasksError(
                        f"another paitasks run holds {self.path} ({_holder(self.path)})"
                    ) from None
                if not told:
                    print(
                        f"paitasks: another run holds {self.path} ({_holder(self.path)}); "
                        "waiting for it to finish",
                        file=sys.stderr,
                        flush=True,
                    )
                    told = True
                time.sleep(poll)
        handle.seek(0)
        self.previous = handle.read()
        handle.seek(0)
        handle.truncate()
        self.written = f"pid {os.getpid()} run {secrets.token_hex(8)}\n"
        handle.write(self.written)
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def idle_run_mark(root: Path) -> str | None:
    """The line the last run left in the lock file, if no run holds the lock now; None
    while one does. Equal to the next run's `RunLock.previous` exactly when no run took
    the lock in between."""
    path = state_dir(root) / LOCK_FILE
    try:
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return None
            try:
                handle.seek(0)
                return handle.read()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except FileNotFoundError:  # no state folder: no run yet
        return ""
    except OSError:
        return None


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "pid unknown"
    except OSError:
        return "pid unknown"
