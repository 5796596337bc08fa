"""Pruning fingerprint tags (prune.py): the rule, and `pai-build prune` on a real registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paitasks.prune import DAY, Tagged, Verdict, choose, created
from tests.support import (
    LoggedRegistry,
    RegistryAPI,
    doit_on,
    fingerprint_tag,
    output,
    pai_build,
    report,
    succeeded,
    write_config,
)

NOW = 1_800_000_000.0
TAG = "v1"


def generation(number: int, digest: str | None = None, age_days: float = 0.0) -> Tagged:
    return Tagged(f"paitasks-{number:064x}", digest or f"sha256:{number}", NOW - age_days * DAY,
                  1000)


def removed(verdicts: list[Verdict]) -> list[str]:
    return [verdict.tag.tag for verdict in verdicts if verdict.remove]


def test_the_newest_stay_and_the_rest_go() -> None:
    tags = [generation(number, age_days=10 - number) for number in range(10)]  # 9 newest
    assert removed(choose(tags, 3, None, NOW)) == [tag.tag for tag in tags[6::-1]]
    assert removed(choose(tags, None, 5, NOW)) == [tag.tag for tag in tags[4::-1]]
    # both: beyond the newest 3 AND older than 5 days
    assert removed(choose(tags, 3, 5, NOW)) == [tag.tag for tag in tags[4::-1]]
    assert removed(choose(tags, 20, None, NOW)) == []


def test_never_the_current_fingerprint_nor_what_another_kept_tag_serves() -> None:
    tags = [generation(number, age_days=10 - number) for number in range(5)]
    served = Tagged(TAG, tags[0].digest, 0.0)  # `:tag` serves the oldest
    again = Tagged("paitasks-again", tags[1].digest, NOW)  # newest, same image as #1
    verdicts = choose([*tags, served, again], 1, None, NOW, current=[tags[2].tag])
    assert removed(verdicts) == [tags[4].tag, tags[3].tag]
    why = {verdict.tag.tag: verdict.why for verdict in verdicts}
    assert why[tags[0].tag] == f"its image is also :{TAG}"
    assert why[tags[1].tag] == "its image is also :paitasks-again"
    assert why[tags[2].tag] == "the current tree's fingerprint"
    assert TAG not in why  # other tags are never candidates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T08:00:00Z", 1800000000.0),
        ("2027-01-15T08:00:00.123456789Z", 1800000000.123456789),
        ("2027-01-15T10:00:00+02:00", 1800000000.0),
        ("2027-01-15T03:00:00-05:00", 1800000000.0),
        ("", 0.0),
        ("yesterday", 0.0),
    ],
)
def test_when_an_image_was_made(text: str, expected: float) -> None:
    assert created({"created": text}) == pytest.approx(expected)


@given(
    st.lists(st.tuples(st.integers(0, 5), st.floats(0, 100)), max_size=12),
    st.one_of(st.none(), st.integers(0, 6)),
    st.one_of(st.none(), st.floats(0, 50)),
    st.integers(0, 5),
)
def test_what_goes_is_never_protected(
    spec: list[tuple[int, float]], keep: int | None, older: float | None, served: int
) -> None:
    tags = [Tagged(f"paitasks-{index}", f"sha256:{digest}", NOW - age * DAY)
            for index, (digest, age) in enumerate(spec)]
    others = [Tagged(TAG, f"sha256:{served}", 0.0)]
    verdicts = choose([*tags, *others], keep, older, NOW, current=["paitasks-0"])
    gone = [verdict.tag for verdict in verdicts if verdict.remove]
    stays = [verdict.tag for verdict in verdicts if not verdict.remove]
    assert len(verdicts) == len(tags)
    assert all(tag.tag != "paitasks-0" for tag in gone)
    assert not {tag.digest for tag in gone} & ({tag.digest for tag in stays} | {
        f"sha256:{served}"})
    if keep is not None:
        newest = sorted(tags, key=lambda tag: (tag.created, tag.tag), reverse=True)[:keep]
        assert not set(newest) & set(gone)
    if older is not None:
        assert all(NOW - tag.created > older * DAY for tag in gone)
    if keep is None and older is None:
        assert gone == []  # no rule: nothing goes


# -- on a real registry --------------------------------------------------------------------


def leaf_tree(src: Path, prefix: str) -> str:
    """One image whose file `gen.txt` each generation changes; its name."""
    build = src / "leaf" / "build"
    build.mkdir(parents=True)
    shutil.copy2("/bin/busybox", build / "busybox")
    (build / f"{prefix}-leaf.dockerfile").write_text(
        "FROM scratch\nCOPY build/busybox /bin/busybox\nCOPY build/gen.txt /gen.txt\n")
    return f"{prefix}-leaf"


def generations(src: Path, config: Path, count: int) -> list[str]:
    """Build and publish `count` generations of the leaf; their fingerprint tags."""
    found = []
    for number in range(count):
        (src / "leaf" / "build" / "gen.txt").write_text(f"generation {number}\n")
        succeeded(doit_on(src, "build", "publish=fingerprints", f"config={config}"))
        (entry,) = report(src)["images"].values()
        found.append(fingerprint_tag(entry["fingerprint"]))
    return found


@pytest.mark.engine
def test_prune_keeps_exactly_what_the_rules_say(
    tmp_path: Path, prefix: str, registry: RegistryAPI, cleanup: None,
) -> None:
    src = tmp_path / "src"
    leaf = leaf_tree(src, prefix)
    config = write_config(tmp_path / "cfg", registry.address, prefix, TAG)
    tags = generations(src, config, 10)
    succeeded(doit_on(src, "push", f"config={config}"))  # :v1 is generation 9
    repository = f"{prefix}/{leaf}"
    # Another tag on generation 2's image: its digest must stay.
    registry.put_manifest(repository, "pinned", *registry.raw_manifest(repository, tags[2]))
    before = sorted(registry.tags(repository))
    assert before == sorted([*tags, TAG, "pinned"])
    served = {tag: registry.manifest_digest(repository, tag) for tag in before}

    def prune(*arguments: str) -> str:
        result = pai_build("prune", "-c", str(config), "--src", str(src), *arguments,
                           cwd=tmp_path)
        assert result.returncode == 0, output(result)
        return result.stdout

    dry = prune("--keep", "3", "--dry-run")
    assert sorted(registry.tags(repository)) == before  # nothing removed
    would = [tags[number] for number in (6, 5, 4, 3, 1, 0)]
    assert [line.split()[2].rpartition(":")[2] for line in dry.splitlines()
            if line.startswith("would remove")] == would, dry
    assert "6 fingerprint tags would be removed" in dry
    assert f"kept {repository}:{tags[2]} (its image is also :pinned)" in dry.splitlines()
    assert prune("--older-than", "1").startswith("0 fingerprint tags removed")  # all new
    assert sorted(registry.tags(repository)) == before

    prune("--keep", "3")
    after = sorted(registry.tags(repository))
    assert after == sorted([tags[2], tags[7], tags[8], tags[9], TAG, "pinned"])
    assert {tag: registry.manifest_digest(repository, tag) for tag in after} == {
        tag: served[tag] for tag in after}
    assert served[TAG] == served[tags[9]]


@pytest.mark.engine
def test_a_registry_that_refuses_deletes_names_its_own_retention_rule(
    tmp_path: Path, prefix: str, cleanup: None,
) -> None:
    with LoggedRegistry(tmp_path / "registry", deletes=False) as started:
        src = tmp_path / "src"
        leaf = leaf_tree(src, prefix)
        config = write_config(tmp_path / "cfg", started.address, prefix, TAG)
        tags = generations(src, config, 2)
        result = pai_build("prune", "-c", str(config), "--src", str(src), "--keep", "1",
                           cwd=tmp_path)
        assert result.returncode == 2, output(result)
        message = result.stderr
        assert f"registry {started.address} refuses deletes (HTTP 405" in message, message
        for rule in ("ECR: a lifecycle policy", "Harbor: a tag retention rule", "ACR: ",
                     "GHCR: "):
            assert rule in message, message
        assert sorted(started.api.tags(f"{prefix}/{leaf}")) == sorted(tags)
