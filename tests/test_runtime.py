"""The run's view of the engine's images: listed once, early, and again only when
another run may have changed them since."""

from __future__ import annotations

from typing import Any, cast

import pytest

from paitasks.engine import Engine, LocalImage
from paitasks.errors import EngineError
from paitasks.runtime import ImageView


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
    return ImageView(cast(Engine, cast(Any, listings)))


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
