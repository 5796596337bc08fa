"""What the registry serves, asked through the engine, remembered for one run.

The registry is where built images live and are found: an image is published under its
`:tag` and under a fingerprint tag, `paitasks-<the 64 hex digits of its fingerprint>`,
so any runner finds the image built from the same inputs by asking for that tag, even
after `:tag` moved on to another build.

Every question goes through the engine (`Engine.registry_digest`), which reaches the
registry as a pull does (plain HTTP for its insecure registries, its certificates) with
docker's own credentials unless the registry settings name a user. Answers are kept for
the run; many can be asked at once in the background (`prefetch`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from paitasks.errors import PaiTasksError

if TYPE_CHECKING:
    from paitasks.config import RegistrySettings
    from paitasks.engine import Engine

FINGERPRINT_TAG = "paitasks-"  # + the fingerprint's hex digits
PREFETCH_THREADS = 8


def fingerprint_tag(fingerprint: str) -> str:
    """The tag an image built from inputs with this fingerprint is published under."""
    return FINGERPRINT_TAG + fingerprint.removeprefix("sha256:")


class RegistryView:
    """The digests the registry serves, asked once per reference per run (thread-safe)."""

    def __init__(self, settings: RegistrySettings, engine: Callable[[], Engine]) -> None:
        self.settings = settings
        self._engine = engine
        self._lock = threading.Lock()
        self._known: dict[str, str | None] = {}
        self._pending: dict[str, Future[str | None]] = {}
        self._pool: ThreadPoolExecutor | None = None

    @property
    def auth(self) -> dict[str, str] | None:
        """The settings' credentials, if they name a user; else docker's own are used."""
        if self.settings.username and self.settings.password:
            return {"username": self.settings.username, "password": self.settings.password}
        return None

    def by_fingerprint(self, image: str, fingerprint: str) -> str:
        """`<registry>/<namespace>/<image>:paitasks-<hex>`."""
        return f"{self.settings.repository(image)}:{fingerprint_tag(fingerprint)}"

    def by_tag(self, image: str) -> str:
        return self.settings.image_name(image)

    def by_digest(self, image: str, digest: str) -> str:
        return f"{self.settings.repository(image)}@{digest}"

    def digest(self, reference: str) -> str | None:
        """What the registry serves for `reference`, None for nothing; EngineError when
        it cannot be asked (unreachable, refused)."""
        with self._lock:
            if reference in self._known:
                return self._known[reference]
            pending = self._pending.get(reference)
        if pending is not None:
            try:
                return pending.result()
            except PaiTasksError:
                pass  # ask again below, so the error is this caller's
        found = self._engine().registry_digest(reference, self.auth)
        self.learn(reference, found)
        return found

    def learn(self, reference: str, digest: str | None) -> None:
        """Remember what the registry serves now (after a push, say)."""
        with self._lock:
            self._known[reference] = digest
            self._pending.pop(reference, None)

    def prefetch(self, references: Iterable[str]) -> None:
        """Start asking for `references` in the background; `digest` waits for them."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PREFETCH_THREADS, "registry")
            for reference in references:
                if reference in self._known or reference in self._pending:
                    continue
                self._pending[reference] = self._pool.submit(self._ask, reference)

    def _ask(self, reference: str) -> str | None:
        found = self._engine().registry_digest(reference, self.auth)
        with self._lock:
            self._known[reference] = found
        return found

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
