"""One doit process's run of one tree: the `Run` object every task is given.

A `Run` is made when the dodo file is loaded (`dodo.doit_namespace`) and passed
explicitly to every task's action and up-to-date check. It holds what the tasks of that
process share: the engine and its image listing, the file-hash cache, the registry
settings, the assessments the checks made for the builds, and the locks that keep worker
threads apart. Nothing of a run lives in module globals, so two runs in one process
(`pai-build push` makes two, tests make many) never see each other's state.

doit tells only its reporter when a run starts and ends (also after a failure or
Ctrl-C); the reporter passes those two events to `Run.begin` and `Run.end`, which take
the tree's lock, tidy what a killed run left, and remove this run's temp folders.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

from paitasks import history, tempfolders
from paitasks.contents import Contents
from paitasks.context import HashCache
from paitasks.errors import ConfigError, PaiTasksError
from paitasks.fingerprint import Findings
from paitasks.output import Output
from paitasks.settings import Settings

if TYPE_CHECKING:  # loaded when a task needs them (docker clients, PyYAML)
    from paitasks.builders import Builders
    from paitasks.config import RegistrySettings
    from paitasks.engine import Engine, LocalImage
    from paitasks.registry import Bases, Journal, RegistryView
    from paitasks.retries import Policy

T = TypeVar("T")
HASH_CACHE_FILE = "file-hashes.json"
REGISTRIES_FILE = "registries.json"  # how each registry was reached (registry.py)
SENT_FILE = "sent.json"  # the digests images were sent from here under (publish.py)
LABELS_FILE = "labels.json"  # the fingerprint label of each manifest checked (registry.py)
LOCK_FILE = "lock"


class Run:
    """What the tasks of one doit process share; safe to use from worker threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.root
        self.state = settings.state
        # Set by `begin`: tasks run (rather than being listed or described), so checks
        # look at what the round made instead of predicting it.
        self.executing = False
        self._pid: int | None = None
        self._lock = threading.RLock()
        self._engine: Engine | None = None
        self._images: ImageView | None = None
        self._hashes: HashCache | None = None
        self._registry: RegistrySettings | None = None
        self._remote: RegistryView | None = None
        self._bases: Bases | None = None
        self._builders: Builders | None = None
        self._tree_lock = RunLock(self.state)
        self._locked = False
        # What the checks found of each image (written by freshness.py only).
        self.findings = Findings()
        self.temp = tempfolders.TempFolders(self.root, self.state)
        self._contents: Contents | None = None
        self.output = Output(settings.verbose)  # where what tasks print goes
        self.pushing: tuple[str, ...] = ()  # the images whose `:tag` this run may move
        self._once: dict[str, Future[Any]] = {}  # run-wide answers computed once

    # -- start and end (called by the reporter) ---------------------------------------

    def begin(self, check_engine: bool) -> list[Path]:
        """Take the tree's lock (waiting for another run), tidy the temp folders a killed
        run left (returned, to be reported), and check the engine answers if the run has
        engine tasks (and the builders of `builders=`)."""
        self._tree_lock.acquire(wait=True)
        self._locked = True
        self.images.run_started(self._tree_lock.previous, self._tree_lock.written)
        self._pid = os.getpid()
        self.executing = True
        removed = self.temp.remove()
        if check_engine:
            self.engine.check()
            if self.settings.builders:
                if self.settings.config is None:
                    raise ConfigError(
                        f"builders={','.join(self.settings.builders)} needs a registry (config=DIR "
                        "or PAI_CONFIG): images built by other builders reach each other and "
                        "this machine only through it"
                    )
                assert self.builders is not None
                self.builders.check()
        return removed

    def end(self) -> None:
        """Save what hashing learned, remove this run's temp folders, release the lock.
        Idempotent; the cache is an optimisation and never fails a run."""
        try:
            if self._hashes is not None:
                with contextlib.suppress(OSError):
                    self._hashes.save()
            if self._remote is not None:
                self._remote.save()
                self._remote.close()
            if self._bases is not None:
                self._bases.close()
            if self._locked:
                self.temp.remove()
        finally:
            if self._locked:
                self._tree_lock.release()
                self._locked = False

    def check_same_process(self) -> None:
        """Refuse to run a task in another process than the run's (doit's `-P process`).

        Up-to-date checks run in doit's main process and ask this process's view of the
        engine; an image built in a worker process would not be in that view, so an image
        built on it could be judged up to date against its old base: a stale image.
        """
        if self._pid is not None and self._pid != os.getpid():
            raise PaiTasksError(
                "paitasks runs its tasks in threads: with doit's -P process, the up-to-date "
                "checks cannot see images built in worker processes and could keep stale "
                "images; run without -P process (the default, -P thread)"
            )

    # -- shared objects ---------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This machine's engine (DOCKER_HOST), shared by the worker threads."""
        from paitasks.engine import Engine

        with self._lock:
            if self._engine is None:
                self._engine = Engine()
            return self._engine

    @property
    def images(self) -> ImageView:
        """The engine's images, listed once per run (the same for every builder)."""
        with self._lock:
            if self._images is None:
                self._images = ImageView(lambda: self.engine)
            return self._images

    @property
    def contents(self) -> Contents:
        """What the temp folders hold, made or predicted."""
        with self._lock:
            if self._contents is None:
                self._contents = Contents(self.temp, self.hashes, self.findings.fingerprint)
            return self._contents

    @property
    def hashes(self) -> HashCache:
        with self._lock:
            if self._hashes is None:
                self._hashes = HashCache(self.state / HASH_CACHE_FILE)
            return self._hashes

    @property
    def registry_settings(self) -> RegistrySettings:
        """The registry settings of `config=` (read once per run)."""
        config = self.settings.config
        if config is None:
            raise ConfigError(
                "pushing needs registry settings: pass config=DIR (or set PAI_CONFIG), "
                "the folder with services-configuration.yaml"
            )
        with self._lock:
            if self._registry is None:
                from paitasks.config import load_settings

                self._registry = load_settings(config)
            return self._registry

    @property
    def journal(self) -> Journal | None:
        """The run's registry traffic so far; None when it had none."""
        return self._remote.journal if self._remote is not None else None

    @property
    def revision(self) -> str | None:
        """The commit this run builds: `revision=` (PAI_REVISION), else the tree's git
        HEAD; None when neither is known."""
        return self.once("revision", lambda: self.settings.revision or history.head(self.root))

    def once(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()`, computed once per run (by the first thread that asks; the others
        wait for it)."""
        with self._lock:
            found = self._once.get(key)
            first = found is None
            if first:
                found = self._once[key] = Future()
        assert found is not None
        if first:
            try:
                found.set_result(compute())
            except BaseException as exc:
                found.set_exception(exc)
        return cast(T, found.result())

    @property
    def distrusted(self) -> dict[str, str]:
        """The images whose fingerprint tag serves an image of another fingerprint
        (ignored: they are rebuilt), and why; none without a registry."""
        return dict(self._remote.distrusted) if self._remote is not None else {}

    @property
    def policy(self) -> Policy:
        """How hard registry requests and pushes are tried (retries.py)."""
        from paitasks.retries import Policy

        settings = self.settings
        return Policy(settings.tries, settings.retry_time, settings.stall)

    @property
    def remote(self) -> RegistryView | None:
        """The registry of `config=` (and any other a dockerfile names), asked from this
        process; None without `config=`."""
        if self.settings.config is None:
            return None
        settings = self.registry_settings
        with self._lock:
            if self._remote is None:
                from paitasks.registry import RegistryView

                self._remote = RegistryView(
                    settings, lambda: self.engine, self.policy, self.state / REGISTRIES_FILE,
                    self.state / SENT_FILE, self.state / LABELS_FILE,
                )
            return self._remote

    @property
    def bases(self) -> Bases:
        """The external bases of the run's images, asked of the engine (the one that pulls
        them), once each."""
        with self._lock:
            if self._bases is None:
                from paitasks.registry import Bases

                self._bases = Bases(lambda: self.engine, self.policy)
            return self._bases

    @property
    def builders(self) -> Builders | None:
        """The builders of `builders=` (docker contexts, buildx builders); None without."""
        if not self.settings.builders:
            return None
        with self._lock:
            if self._builders is None:
                from paitasks.builders import Builders

                self._builders = Builders(self.settings.builders)
            return self._builders


class ImageView:
    """The engine's images, listed once per run and kept current by the run's builds.

    Within a run only paitasks changes the tree's images, so one listing (a single API
    call) plus what each build and push reports answers every later question.
    """

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine
        self._images: dict[str, LocalImage] | None = None
        self._lock = threading.Lock()
        self._prefetch: threading.Thread | None = None
        self._prefetched: dict[str, LocalImage] | None = None
        # The run lock's line as it was when this view was listed: if the run finds
        # another line there, another run came in between.
        self._mark: str | None = None

    def prefetch(self, mark: str) -> None:
        """Start the listing in the background: the engine answers while doit loads the
        tasks, instead of after. `mark` is the run lock's `idle_run_mark`; a failure is
        left for the first `get` to report."""
        with self._lock:
            if self._images is not None or self._prefetch is not None:
                return
            self._mark = mark
            engine = self._engine()

            def fetch() -> None:
                with contextlib.suppress(PaiTasksError, OSError, ValueError):
                    self._prefetched = engine.local_images()

            self._prefetch = threading.Thread(target=fetch, name="image-listing", daemon=True)
            self._prefetch.start()

    def run_started(self, previous: str | None, written: str) -> None:
        """The run holds the tree's lock now: `previous` is the line the run before left,
        `written` the one this run wrote. If another run took the lock since this view
        was listed, it may have built images since: list again."""
        with self._lock:
            if previous != self._mark:
                self._prefetch = None
                self._images = None
            self._mark = written

    def get(self, name: str) -> LocalImage | None:
        with self._lock:
            if self._images is None:
                if self._prefetch is not None:
                    self._prefetch.join()
                    self._images = self._prefetched
                if self._images is None:
                    self._images = self._engine().local_images()
            return self._images.get(name)

    def update(self, name: str, image: LocalImage) -> None:
        with self._lock:
            if self._images is not None:
                self._images[name] = image


class RunLock:
    """One run at a time per tree: an flock on `lock` in its state folder, released by the kernel
    when the process dies, so a killed run never leaves a stale lock behind.

    Each run writes a new line into the file (its pid and a random token); `previous`
    is the line the run before left, so a run can tell whether another one ran since
    it last looked (see `idle_run_mark`)."""

    def __init__(self, state: Path) -> None:
        self.path = state / LOCK_FILE
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


def idle_run_mark(state: Path) -> str | None:
    """The line the last run left in the lock file, if no run holds the lock now; None
    while one does. Equal to the next run's `RunLock.previous` exactly when no run took
    the lock in between."""
    path = state / LOCK_FILE
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

