"""Objects shared by every task of one doit process: the engine, its image listing,
the file-hash cache and the registry settings.

Tasks carry only plain strings; they look these up here, so the same task dicts work in
doit's thread mode (one shared copy) and process mode (one copy per worker).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from paitasks.context import HashCache
from paitasks.errors import ConfigError, PaiTasksError

if TYPE_CHECKING:  # loaded when a task needs them (docker clients, PyYAML)
    from paitasks.config import RegistrySettings
    from paitasks.engine import Engine, LocalImage

_lock = threading.RLock()
_engines: dict[tuple[str | None, str | None], Engine] = {}
_view: list[ImageView] = []  # one listing of the engine's images per process
_caches: dict[Path, HashCache] = {}
_settings: dict[str, RegistrySettings] = {}
_logins: set[tuple[str, str]] = set()

HASH_CACHE_FILE = "file-hashes.json"
_executing = threading.Event()


_run_pid: list[int] = []


def start_executing() -> None:
    """Mark this process as running tasks (not just listing or describing them)."""
    _run_pid[:] = [os.getpid()]
    _executing.set()


def check_same_process() -> None:
    """Refuse to run a task in another process than the run's (doit's `-P process`).

    Up-to-date checks run in doit's main process and ask this process's view of the
    engine; an image built in a worker process would not be in that view, so an image
    built on it could be judged up to date against its old base: a stale image.
    """
    if _run_pid and _run_pid[0] != os.getpid():
        raise PaiTasksError(
            "paitasks runs its tasks in threads: with doit's -P process, the up-to-date "
            "checks cannot see images built in worker processes and could keep stale "
            "images; run without -P process (the default, -P thread)"
        )


def executing() -> bool:
    return _executing.is_set()


def engine_for(builder: str | None, network: str | None) -> Engine:
    """One Engine per process and setting, shared by the worker threads."""
    from paitasks.engine import Engine

    with _lock:
        key = (builder, network)
        if key not in _engines:
            _engines[key] = Engine(builder=builder, network=network)
        return _engines[key]


class ImageView:
    """The engine's images, listed once per run and kept current by our own builds.

    Within a run only paitasks changes the tree's images, so one listing (a single API
    call) plus what each build and push reports answers every later question.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._images: dict[str, LocalImage] | None = None
        self._lock = threading.Lock()
        self._prefetch: threading.Thread | None = None
        self._prefetched: dict[str, LocalImage] | None = None
        # The run lock's line as it was when this view was last known to be current:
        # if the next run finds another line there, another run came in between.
        self._mark: str | None = None

    def prefetch(self, mark: str) -> None:
        """Start the listing in the background: the engine answers while doit loads the
        tasks, instead of after (it takes longer the more images the engine holds).
        `mark` is the run lock's `idle_run_mark`; a failure is left for the first `get`
        to report."""
        with self._lock:
            if self._images is not None or self._prefetch is not None:
                return
            self._mark = mark

            def fetch() -> None:
                with contextlib.suppress(PaiTasksError, OSError, ValueError):
                    self._prefetched = self.engine.local_images()

            self._prefetch = threading.Thread(target=fetch, name="image-listing", daemon=True)
            self._prefetch.start()

    def run_started(self, previous: str | None, written: str) -> None:
        """A run holds the tree's lock now: `previous` is the line the run before left,
        `written` the one this run wrote. If another run took the lock since this view
        was listed (or since this process's last run, `pai-build push` makes two), it
        may have built images since: list again."""
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
                    self._images = self.engine.local_images()
            return self._images.get(name)

    def update(self, name: str, image: LocalImage) -> None:
        with self._lock:
            if self._images is not None:
                self._images[name] = image


def image_view() -> ImageView:
    """The process's view of the engine's images (the same for every builder setting)."""
    with _lock:
        if not _view:
            _view.append(ImageView(engine_for(None, None)))
        return _view[0]


def hash_cache(state: Path) -> HashCache:
    with _lock:
        if state not in _caches:
            _caches[state] = HashCache(state / HASH_CACHE_FILE)
        return _caches[state]


def save_caches() -> None:
    """Persist what hashing learned (called at the end of a run)."""
    with _lock:
        caches = list(_caches.values())
    for cache in caches:
        with contextlib.suppress(OSError):  # a cache is an optimisation: never fail a run
            cache.save()


def registry_settings(config: str | None) -> RegistrySettings:
    """The registry settings of `config=` (read once per process)."""
    if config is None:
        raise ConfigError(
            "pushing needs registry settings: pass config=DIR (or set PAI_CONFIG), "
            "the folder with services-configuration.yaml"
        )
    with _lock:
        if config not in _settings:
            from paitasks.config import load_settings

            _settings[config] = load_settings(config)
        return _settings[config]


def check_login_once(engine: Engine, registry: str, username: str, password: str) -> None:
    """Fail fast and clearly on refused credentials, once per registry and user."""
    key = (registry, username)
    with _lock:
        if key in _logins:
            return
    engine.check_login(registry, username, password)
    with _lock:
        _logins.add(key)
