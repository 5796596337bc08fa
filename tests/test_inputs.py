"""Fingerprints: equal inputs give equal hashes, any change gives another, and says why."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paitasks.fingerprint import BuildInputs, explain, fingerprint

names = st.text("abcdefgh/._-", min_size=1, max_size=12)
mappings = st.dictionaries(names, st.text(max_size=8), max_size=6)


@given(mappings, mappings, mappings)
def test_order_of_entries_does_not_matter(files: dict[str, str], images: dict[str, str],
                                           settings: dict[str, str]) -> None:
    forward = BuildInputs("build/a.dockerfile", files, images, settings)
    backward = BuildInputs(
        "build/a.dockerfile",
        dict(reversed(list(files.items()))),
        dict(reversed(list(images.items()))),
        dict(reversed(list(settings.items()))),
    )
    assert fingerprint(forward) == fingerprint(backward)
    assert explain(forward, backward) == []


@given(mappings, names, st.text(max_size=8))
def test_any_file_change_changes_the_fingerprint(
    files: dict[str, str], path: str, entry: str
) -> None:
    before = BuildInputs("d", files)
    changed = {**files, path: entry}
    after = BuildInputs("d", changed)
    if changed == files:
        assert fingerprint(before) == fingerprint(after)
    else:
        assert fingerprint(before) != fingerprint(after)
        reasons = explain(before, after, limit=100)
        assert any(path in reason for reason in reasons)


def test_each_kind_of_input_counts() -> None:
    base = BuildInputs("build/a.dockerfile", {"x": "f 644 1"}, {"base": "sha256:1"}, {"b": "1"})
    variants = [
        BuildInputs("build/b.dockerfile", base.files, base.images, base.settings),
        BuildInputs(base.dockerfile, {"x": "f 755 1"}, base.images, base.settings),
        BuildInputs(base.dockerfile, base.files, {"base": "sha256:2"}, base.settings),
        BuildInputs(base.dockerfile, base.files, base.images, {"b": "2"}),
    ]
    prints = {fingerprint(base), *(fingerprint(v) for v in variants)}
    assert len(prints) == 5


def test_explanations_name_the_change() -> None:
    old = BuildInputs("d", {"app/a.sh": "f 644 1", "gone": "f 644 2"}, {"base": "sha256:aaaa"},
                      {"builder": "buildx"})
    new = BuildInputs("d", {"app/a.sh": "f 644 9", "new": "f 644 3"}, {"base": "sha256:bbbb"},
                      {"builder": "classic"})
    reasons = explain(old, new)
    assert "image base changed (aaaa -> bbbb)" in reasons
    assert "setting build_tool changed ('buildx' -> 'classic')" in reasons
    assert "app/a.sh changed" in reasons and "gone removed" in reasons and "new added" in reasons
    assert explain(None, new) == ["no record of a previous build"]


def test_long_explanations_are_cut() -> None:
    old = BuildInputs("d", {f"f{i}": "1" for i in range(20)})
    new = BuildInputs("d", {f"f{i}": "2" for i in range(20)})
    reasons = explain(old, new, limit=5)
    assert len(reasons) == 6 and reasons[-1] == "and 15 more changes"


def test_round_trip_through_json() -> None:
    inputs = BuildInputs("d", {"a": "f 644 1"}, {"b": ""}, {"c": "d"})
    assert BuildInputs.from_json(inputs.to_json()) == inputs
    assert fingerprint(BuildInputs.from_json(inputs.to_json())) == fingerprint(inputs)
