"""One policy for what is transient, shared by every registry request and every push.

A try fails transiently when the registry answers 429 (too many requests) or a 5xx, when
the connection is refused, reset or times out, or when a transfer stalls (no byte for
`stall` seconds); the caller says so by raising `Transient`. Anything else is final and
goes straight through. Between tries the policy waits what the registry asked for
(`Retry-After`, capped), else an exponential backoff with jitter, so that many
runners told to back off at once do not come back at once. Tries are bounded in count
(`tries`) and in time: no wait may end later than `within` seconds after the first try.

tenacity does the looping; this module only says what to retry and how long to wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # imported when a request is made: planning never needs it
    import tenacity

T = TypeVar("T")

MAX_RETRY_AFTER = 60.0  # seconds: a registry asking for longer is waited for this long
FIRST_WAIT = 0.2  # seconds: the backoff's first step (doubled at every try, jittered)
MAX_WAIT = 10.0
THROTTLED = 1.0  # seconds: the least wait after a 429 that does not say how long
# What dockerd and BuildKit say of a registry request another try may fix.
TRANSIENT_WORDS = (
    "connection refused", "connection reset", "broken pipe", "timeout", "eof", "429",
    "too many requests", "toomanyrequests", "500 internal server error", "502", "503",
    "504", "unavailable",
)
FINAL_WORDS = (  # ...and what no other try fixes, whatever else the error says
    "unauthorized", "denied", "authentication required",
    "proxyconnect",  # this machine's proxy refused: its setting, not the registry
)


@dataclass(frozen=True)
class Policy:
    """How hard to try (settings.py reads it from `tries=`, `retry_time=`, `stall=`)."""

    tries: int = 5  # the first try and up to four retries
    within: float = 120.0  # seconds from the first try; no wait ends later
    stall: float = 60.0  # seconds without a byte that fail a try


class Transient(Exception):
    """A try failed in a way another try may not: `reason` in words (the status, the
    error), `retry_after` the seconds the registry asked to wait, if it did."""

    def __init__(
        self, reason: str, retry_after: float | None = None, throttled: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.throttled = throttled  # a 429: wait at least THROTTLED when it says no more
        self.tries = 1  # set by `call` when it gives up

    @property
    def gave_up(self) -> str:
        """`failed after N tries: <reason>`, for the message of what it failed."""
        return f"failed after {self.tries} {'try' if self.tries == 1 else 'tries'}: {self.reason}"


def call(
    policy: Policy,
    attempt: Callable[[], T],
    on_retry: Callable[[Transient, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[], int] | None = None,
) -> T:
    """`attempt()` until it returns or raises something else than Transient, within the
    policy; then the last Transient, its `tries` set. `on_retry(failure, wait)` is told
    of each retry before its wait. With `progress` (a count that grows as a long job
    such as a push gets further), `policy.tries` bounds the tries in a row that got no
    further, not all of them; `policy.within` still bounds the time."""
    import tenacity

    tries = 0
    furthest = [progress() if progress else 0, 0]  # the most progress, and the try it came

    def in_a_row(state: tenacity.RetryCallState) -> int:
        """Tries since the last one that got further (all of them, without `progress`)."""
        if progress is not None and progress() > furthest[0]:
            furthest[:] = [progress(), state.attempt_number - 1]
        return state.attempt_number - furthest[1]

    def stop(state: tenacity.RetryCallState) -> bool:
        return (in_a_row(state) >= policy.tries
                or _spent(state) + state.upcoming_sleep >= policy.within)

    def wait_for(state: tenacity.RetryCallState) -> float:
        return wait(state, in_a_row(state))

    def counted() -> T:
        nonlocal tries
        tries += 1
        return attempt()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        if on_retry is not None and isinstance(failure, Transient):
            on_retry(failure, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Transient),
        stop=stop,
        wait=wait_for,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(counted)
    except Transient as failure:
        failure.tries = tries
        raise


def _spent(state: tenacity.RetryCallState) -> float:
    """Seconds since the first try, waits included (also when `sleep` only pretends)."""
    return max(state.seconds_since_start or 0.0, state.idle_for)


def wait(state: tenacity.RetryCallState, in_a_row: int) -> float:
    """The wait before the next try: what the registry asked for (capped) plus a little
    jitter, else an exponential backoff over the tries in a row that got no further,
    jittered between half and all of its step."""
    failure = state.outcome.exception() if state.outcome else None
    asked = failure.retry_after if isinstance(failure, Transient) else None
    if asked is not None:
        return min(max(asked, 0.0), MAX_RETRY_AFTER) + random.uniform(0, 0.1)
    ceiling = min(MAX_WAIT, FIRST_WAIT * 2 ** (max(in_a_row, 1) - 1))
    backoff = random.uniform(ceiling / 2, ceiling)
    if isinstance(failure, Transient) and failure.throttled:
        return max(backoff, THROTTLED + random.uniform(0, 0.1))
    return backoff


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        moment = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment - (time.time() if now is None else now))


def transient_status(status: int) -> bool:
    """Statuses worth another try: too many requests, and the server's own failures."""
    return status == 429 or 500 <= status <= 599


def transient_text(error: str) -> bool:
    """Whether dockerd's or BuildKit's words for a failed registry request say another
    try may fix it (a refused or reset connection, a timeout, a 429, a 5xx), rather than
    a refused login or a proxy of this machine's that refuses the connection."""
    text = error.lower()
    if any(marker in text for marker in FINAL_WORDS):
        return False
    return any(marker in text for marker in TRANSIENT_WORDS)
