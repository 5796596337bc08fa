"""Removing old fingerprint tags from the registry (`pai-build prune`).

Every change publishes a new `paitasks-<hex>` tag per changed image and nothing else
removes them, while registries cap tags and bill storage. `choose` is the rule (pure):
for each image, the fingerprint tags beyond the newest `keep` (by the image's creation
time) and older than `older_than` days go, but never a tag the current tree's
fingerprints name, nor one whose digest `:tag` (or any other tag kept) serves. `prune`
applies it through the run's registry client (pooled, retried): where the registry
deletes tags (OCI distribution 1.1), the tag; where it deletes only by digest (which
removes every tag on it), the digest, only when no kept tag shares it; where it refuses
deletes, it stops and names the registry's own retention rule to use instead.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from paitasks.errors import PaiTasksError
from paitasks.registry import FINGERPRINT_TAG, Client, fingerprint_tag
from paitasks.run import Run

DAY = 86400.0
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|z|[+-]\d\d:\d\d)$")
RETENTION = (  # where a registry refuses deletes: its own rule for the `paitasks-` tags
    "ECR: a lifecycle policy expiring images with tag prefix `paitasks-` (countType "
    "imageCountMoreThan or sinceImagePushed); Harbor: a tag retention rule on tags "
    "matching `paitasks-**`; ACR: `az acr run --cmd \"acr purge --filter "
    "'<repository>:^paitasks-' --ago 30d --keep 10\" /dev/null` on a schedule; GHCR: a "
    "workflow with actions/delete-package-versions (min-versions-to-keep) for the "
    "package's `paitasks-` versions"
)


@dataclass(frozen=True)
class Tagged:
    """One tag of a repository: what it serves, when that image was made, its bytes."""

    tag: str
    digest: str
    created: float  # seconds since the epoch (0 when the image does not say)
    size: int = 0  # bytes of the config and layers its manifest names


@dataclass(frozen=True)
class Verdict:
    tag: Tagged
    remove: bool
    why: str  # why it stays, or "" when it goes


def choose(
    tags: Sequence[Tagged], keep: int | None, older_than: float | None, now: float,
    current: Iterable[str] = (),
) -> list[Verdict]:
    """Which fingerprint tags of one repository go (newest first): those beyond the
    newest `keep` and older than `older_than` days, except a tag of `current` (the
    tree's fingerprint tags now) and any whose digest a kept tag serves."""
    mine = sorted((tag for tag in tags if tag.tag.startswith(FINGERPRINT_TAG)),
                  key=lambda tag: (tag.created, tag.tag), reverse=True)
    others = [tag for tag in tags if not tag.tag.startswith(FINGERPRINT_TAG)]
    wanted = set(current)
    verdicts: list[Verdict] = []
    for rank, tag in enumerate(mine):
        if keep is None and older_than is None:
            why = "no rule given"
        elif keep is not None and rank < keep:
            why = f"one of the newest {keep}"
        elif older_than is not None and now - tag.created <= older_than * DAY:
            why = f"not older than {older_than:g} days"
        elif tag.tag in wanted:  # the rules would remove it: it stays all the same
            why = "the current tree's fingerprint"
        else:
            why = ""
        verdicts.append(Verdict(tag, not why, why))
    kept = {verdict.tag.digest: verdict.tag.tag for verdict in verdicts if not verdict.remove}
    kept.update((tag.digest, tag.tag) for tag in others)
    return [
        Verdict(verdict.tag, False, f"its image is also :{kept[verdict.tag.digest]}")
        if verdict.remove and verdict.tag.digest in kept else verdict
        for verdict in verdicts
    ]


@dataclass
class Pruned:
    """What `prune` did (or, with `dry_run`, would do)."""

    removed: list[tuple[str, Tagged]]  # (repository, tag)
    kept: int  # fingerprint tags left

    @property
    def size(self) -> int:
        return sum(tag.size for _, tag in self.removed)


def prune(
    run: Run, images: Sequence[str], current: Mapping[str, str], keep: int | None,
    older_than: float | None, dry_run: bool, say: Callable[[str], None],
) -> Pruned:
    """Apply `choose` to the fingerprint tags of each of `images` in the settings'
    registry; `current`: each image's fingerprint now, where known. Says each removal
    (`would remove` with `dry_run`) and each tag the rules would remove but that stays,
    with why."""
    remote = run.remote
    if remote is None:
        _ = run.registry_settings  # raises: pruning needs registry settings
    assert remote is not None
    client = remote.client()
    host = remote.settings.host
    if client is None:
        raise PaiTasksError(
            f"registry {host}: paitasks cannot reach it directly (only through the engine), "
            "so it cannot list or delete its tags; use the registry's own retention rule: "
            + RETENTION
        )
    now = time.time()
    repositories = {image: remote.repository(image) for image in images}
    with ThreadPoolExecutor(16) as pool:
        names = dict(zip(images, pool.map(
            lambda image: client.tags(repositories[image], image), images), strict=True))
        asked = [(image, tag) for image in images for tag in names[image]]
        described = list(pool.map(
            lambda pair: _described(client, repositories[pair[0]], pair[1], pair[0]), asked))
    listed: dict[str, list[Tagged]] = {image: [] for image in images}
    for (image, _), found in zip(asked, described, strict=True):
        if found is not None:
            listed[image].append(found)
    done = Pruned([], 0)
    for image, tags in listed.items():
        repository = repositories[image]
        wanted = [fingerprint_tag(current[image])] if image in current else []
        for verdict in choose(tags, keep, older_than, now, wanted):
            if not verdict.remove:
                done.kept += 1
                if verdict.why.startswith(("its image", "the current")):  # not by the rules
                    say(f"kept {repository}:{verdict.tag.tag} ({verdict.why})")
                continue
            if not dry_run:
                _remove(client, host, repository, verdict.tag, image)
            when = time.strftime("%Y-%m-%d", time.gmtime(verdict.tag.created))
            say(f"{'would remove' if dry_run else 'removed'} {repository}:{verdict.tag.tag} "
                f"(made {when}, {_megabytes(verdict.tag.size)})")
            done.removed.append((repository, verdict.tag))
    return done


def _described(client: Client, repository: str, tag: str, image: str) -> Tagged | None:
    """What `tag` serves; for a fingerprint tag, also when its image was made and its
    size. None when it is gone meanwhile."""
    if not tag.startswith(FINGERPRINT_TAG):
        digest = client.digest(repository, tag, image)
        return Tagged(tag, digest, 0.0) if digest else None
    served = client.served(repository, tag, image)
    if served is None:
        return None
    digest, manifest, _ = served
    config, size = client.config(repository, manifest, image)
    return Tagged(tag, digest, created(config), size)


def _remove(client: Client, host: str, repository: str, tag: Tagged, image: str) -> None:
    """Delete the tag; where the registry deletes only by digest, the digest (no kept
    tag shares it: `choose` says so); where it refuses deletes, say what to use."""
    status = client.delete(repository, tag.tag, image)
    if status in (200, 202, 404):
        return
    status = client.delete(repository, tag.digest, image)
    if status in (200, 202, 404):
        return
    if status == 405:
        raise PaiTasksError(
            f"registry {host} refuses deletes (HTTP 405, UNSUPPORTED): nothing more was "
            f"removed; prune there with the registry's own retention rule instead: {RETENTION}"
        )
    raise PaiTasksError(f"registry {host}: deleting {repository}:{tag.tag} failed: HTTP {status}")


def created(config: Mapping[str, Any]) -> float:
    """When the image was made, from its config (RFC 3339, nanoseconds and all), in
    seconds since the epoch; 0 when it does not say."""
    found = _RFC3339.match(str(config.get("created") or ""))
    if found is None:
        return 0.0
    moment = calendar.timegm(time.strptime(found[1], "%Y-%m-%dT%H:%M:%S"))
    fraction = float(f"0{found[2]}") if found[2] else 0.0
    zone = found[3]
    offset = 0 if zone in ("Z", "z") else (int(zone[1:3]) * 60 + int(zone[4:6])) * 60
    return moment + fraction - (offset if zone.startswith("+") else -offset)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
