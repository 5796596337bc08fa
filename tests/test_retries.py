"""The retry policy (retries.py): what is tried again, how long it waits, when it stops."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paitasks import retries
from paitasks.retries import MAX_RETRY_AFTER, Policy, Transient


class Flaky:
    """Fails transiently `failures` times (asking for `asked` seconds), then answers."""

    def __init__(self, failures: int, asked: float | None = None) -> None:
        self.failures = failures
        self.asked = asked
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise Transient(f"HTTP 429 (try {self.calls})", self.asked)
        return "answer"


def test_a_transient_failure_is_tried_again_until_it_answers() -> None:
    waits: list[float] = []
    told: list[tuple[str, float]] = []
    flaky = Flaky(2)
    found = retries.call(
        Policy(tries=5), flaky, lambda failure, wait: told.append((failure.reason, wait)),
        sleep=waits.append,
    )
    assert found == "answer"
    assert flaky.calls == 3
    assert [reason for reason, _ in told] == ["HTTP 429 (try 1)", "HTTP 429 (try 2)"]
    assert [wait for _, wait in told] == waits


def test_the_wait_the_registry_asks_for_is_honoured_and_capped() -> None:
    waits: list[float] = []
    retries.call(Policy(tries=3), Flaky(1, asked=2.0), sleep=waits.append)
    assert 2.0 <= waits[0] <= 2.1
    waits.clear()
    retries.call(Policy(tries=3, within=1000), Flaky(1, asked=3600.0), sleep=waits.append)
    assert MAX_RETRY_AFTER <= waits[0] <= MAX_RETRY_AFTER + 0.1


def test_without_retry_after_the_backoff_grows_with_jitter() -> None:
    waits: list[float] = []
    retries.call(Policy(tries=5, within=1000), Flaky(4), sleep=waits.append)
    steps = [retries.FIRST_WAIT * 2**n for n in range(4)]
    assert all(step / 2 <= wait <= step for wait, step in zip(waits, steps, strict=True))


def test_tries_are_bounded_in_count_and_the_last_failure_says_how_many() -> None:
    flaky = Flaky(10)
    with pytest.raises(Transient) as failure:
        retries.call(Policy(tries=3), flaky, sleep=lambda seconds: None)
    assert flaky.calls == 3
    assert failure.value.tries == 3
    assert failure.value.reason == "HTTP 429 (try 3)"


def test_tries_are_bounded_in_time_no_wait_ends_past_the_limit() -> None:
    flaky = Flaky(10, asked=30.0)
    with pytest.raises(Transient) as failure:
        retries.call(Policy(tries=100, within=45.0), flaky, sleep=lambda seconds: None)
    # tenacity counts the waits as time spent: the second wait would end past 45 s.
    assert flaky.calls == 2
    assert failure.value.tries == 2


def test_anything_else_is_final_at_once() -> None:
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError("denied")

    with pytest.raises(PermissionError):
        retries.call(Policy(tries=5), refused, sleep=lambda seconds: None)
    assert calls == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1", 1.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), ("", None), (None, None),
     ("soon", None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert retries.retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert retries.retry_after(header, now=now) == pytest.approx(30.0)
    assert retries.retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@given(st.integers(min_value=100, max_value=599))
def test_transient_statuses_are_429_and_the_server_errors(status: int) -> None:
    assert retries.transient_status(status) is (status == 429 or status >= 500)


def test_with_progress_only_tries_in_a_row_that_got_no_further_count() -> None:
    """A push of many layers that fails once per layer still gets through: every try
    gets one layer further. Tries that get nowhere stop it."""
    done: set[int] = set()
    calls = 0

    def push() -> str:
        nonlocal calls
        calls += 1
        if len(done) < 6:
            done.add(len(done))
            raise Transient("reset")
        return "digest"

    policy = Policy(tries=2, within=1000)
    assert retries.call(policy, push, sleep=lambda s: None, progress=lambda: len(done)) == "digest"
    assert calls == 7
    stuck = Flaky(10)
    with pytest.raises(Transient) as failure:
        retries.call(policy, stuck, sleep=lambda s: None, progress=lambda: 0)
    assert failure.value.tries == 2


def test_the_backoff_starts_again_after_a_try_that_got_further() -> None:
    done: set[int] = set()
    waits: list[float] = []

    def push() -> str:
        if len(done) < 5:
            done.add(len(done))
            raise Transient("503")
        return "digest"

    retries.call(Policy(tries=3, within=1000), push, sleep=waits.append,
                 progress=lambda: len(done))
    assert all(wait <= retries.FIRST_WAIT for wait in waits), waits


def test_a_429_that_does_not_say_how_long_waits_at_least_a_second() -> None:
    waits: list[float] = []

    def throttled() -> str:
        if not waits:
            raise Transient("HTTP 429", throttled=True)
        return "answer"

    retries.call(Policy(), throttled, sleep=waits.append)
    assert retries.THROTTLED <= waits[0] <= retries.THROTTLED + 0.1
