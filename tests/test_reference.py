"""Tests for paitasks.reference, with docker-image-py as the oracle.

docker-image-py mirrors github.com/distribution/reference's ParseNormalizedNamed, the
function `docker pull` and BuildKit use. Our parser must accept exactly what it accepts
and normalise to the same domain, path, tag and digest, apart from two deliberate
differences, each checked on its own below:

* Length: the oracle (like distribution/reference >= v0.6) limits the path to 255
  characters; the engine paitasks targets (dockerd 20.10, vendoring docker/distribution)
  limits domain + "/" + path. We keep the engine's, stricter rule: a longer name would be
  refused by `docker build`/`docker tag` anyway.
* Trailing newline: the oracle anchors with Python's `$`, which also matches before a
  final "\\n", so it takes "ubuntu\\n"; Go's `$` does not, and neither do we.
"""

from __future__ import annotations

import pytest
from docker_image.digest import InvalidDigest
from docker_image.reference import InvalidReference
from docker_image.reference import Reference as Oracle
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from paitasks.reference import (
    Reference,
    ReferenceError,
    engine_name,
    is_valid_image_name,
    local_image_name,
    parse,
)

# --------------------------------------------------------------------------------------
# Generated references, valid and not
# --------------------------------------------------------------------------------------

DOMAINS = [
    "docker.io", "index.docker.io", "localhost", "localhost:5000", "127.0.0.1:5000",
    "[::1]:5000", "[fe80::1]", "Registry.Example.com", "reg-1.example.com:443", "ghcr.io",
    "UPPER", "Mixed", "a_b.c", "a__b.c", "-bad.com", "bad-.com", "x:y", "host:", ".io",
    "a..b", "docker.io:5000", "library", "DOCKER.IO", "[::1", "é.com",
]  # fmt: skip
COMPONENTS = [
    "library", "ubuntu", "base", "acme", "a", "0", "x-y", "x--y", "x__y", "x.y", "x_y",
    "Upper", "a-", "_a", "a___b", "a..b", "a.", "", "é", "a" * 64, "f" * 64, "a b", "a\n",
]  # fmt: skip
TAGS = ["latest", "1.0", "_x", "X", "v1-rc.2", "a" * 128, "", "-x", ".x", "a" * 129, "é", "a/b"]

component = st.from_regex(r"[a-z0-9]{1,6}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,4}){0,2}", fullmatch=True)
long_component = st.integers(230, 260).map(lambda n: "a" * n)
domain = st.sampled_from(DOMAINS) | st.from_regex(
    r"[a-zA-Z0-9]{1,5}(?:\.[a-zA-Z0-9-]{0,4}[a-zA-Z0-9])?(?::[0-9]{1,5})?", fullmatch=True
)
tag = st.sampled_from(TAGS) | st.from_regex(r"\w[\w.-]{0,10}", fullmatch=True)
digest = st.builds(
    lambda algorithm, hex_digits: f"{algorithm}:{hex_digits}",
    st.sampled_from(["sha256", "sha384", "sha512", "md5", "SHA256", "sha256+b64", "9sha"]),
    st.sampled_from([32, 63, 64, 96, 128, 129]).flatmap(
        lambda n: st.text("0123456789abcdef", min_size=n, max_size=n)
        | st.text("0123456789ABCDEF", min_size=n, max_size=n)
    ),
)


@st.composite
def references(draw: st.DrawFn) -> str:
    """A reference assembled from parts, some of them invalid, maybe mutated."""
    parts = draw(
        st.lists(
            component | st.sampled_from(COMPONENTS) | long_component, min_size=1, max_size=4
        )
    )
    text = "/".join(parts)
    if draw(st.booleans()):
        text = f"{draw(domain)}/{text}"
    if draw(st.booleans()):
        text += ":" + draw(tag)
    if draw(st.booleans()):
        text += "@" + draw(digest)
    if draw(st.integers(0, 4)) == 0:  # one random edit
        position = draw(st.integers(0, len(text)))
        inserted = draw(st.sampled_from(["", "/", ":", "@", ".", "-", "_", "A", " ", "$", "é"]))
        cut = draw(st.integers(0, 2))
        text = text[:position] + inserted + text[position + cut :]
    return text


def oracle(text: str) -> tuple[str, str, str | None, str | None] | None:
    """The oracle's normal form of `text`, or None when it refuses it."""
    try:
        ref = Oracle.parse_normalized_named(text)
    except (InvalidReference, InvalidDigest):
        return None
    return ref.domain(), ref.path(), ref["tag"], ref["digest"]


def ours(text: str) -> tuple[str, str, str | None, str | None] | None:
    try:
        ref = parse(text)
    except ReferenceError as exc:
        assert str(exc)
        return None
    return ref.domain, ref.path, ref.tag, ref.digest


# --------------------------------------------------------------------------------------
# Agreement with the oracle
# --------------------------------------------------------------------------------------


@settings(max_examples=1500, deadline=None)
@given(references() | st.text(alphabet="abcAB01./:@_-[]é \n", max_size=30))
@example("a_b.c/x")  # Go takes this as a path without domain; the oracle and we refuse it
@example("ubuntu\n")
@example("a" * 250)
@example("Foo/bar")
def test_parse_agrees_with_distribution_reference(text: str) -> None:
    expected = oracle(text)
    got = ours(text)
    if text.endswith("\n"):
        assert got is None  # Go's `$` does not match before a final newline
        return
    if expected is not None and got is None:
        domain, path, _, _ = expected
        # The one rule we keep stricter: the engine limits domain + "/" + path.
        assert len(domain) + 1 + len(path) > 255, text
        with pytest.raises(ReferenceError, match="more than 255 characters"):
            parse(text)
        return
    assert got == expected, text


def ambiguous(ref: Reference) -> bool:
    """Docker's own familiar form is ambiguous where a Docker Hub path starts like a
    registry host: `docker.io/0.0/x` lists as `0.0/x`, which reads as registry 0.0's x
    (and the oracle cannot parse it back). paitasks keeps docker's form, since the
    engine lists images by it; such names do not round-trip, in docker either."""
    first, slash, _ = ref.path.partition("/")
    return ref.domain == "docker.io" and bool(slash) and ("." in first or first == "localhost")


@settings(max_examples=500, deadline=None)
@given(references())
@example("docker.io/0.0/0")
@example("docker.io/0__0.0/0")
def test_familiar_is_the_oracles_familiar_name_with_the_engines_tag(text: str) -> None:
    try:
        ref = parse(text)
    except ReferenceError:
        assert engine_name(text) == text  # nothing to normalise: left as it is
        return
    assume(not ambiguous(ref))
    oracle_ref = Oracle.parse_normalized_named(text)
    # The oracle's familiar() fails on digest references (a bug of its own): ask it for
    # the familiar name of the repository alone.
    repository = Oracle.parse_normalized_named(oracle_ref.repository.name()).familiar_name()
    suffix = f"@{ref.digest}" if ref.digest else f":{ref.tag or 'latest'}"
    assert ref.familiar == repository + suffix
    assert engine_name(text) == ref.familiar
    assert ref.name == f"{oracle_ref.domain()}/{oracle_ref.path()}"


@settings(max_examples=500, deadline=None)
@given(references())
@example("docker.io/0.0/0")
@example("docker.io/0__0.0/0")
def test_familiar_form_parses_back_to_the_same_image(text: str) -> None:
    try:
        ref = parse(text)
    except ReferenceError:
        return
    assume(not ambiguous(ref))
    again = parse(ref.familiar)
    assert again.name == ref.name
    assert again.familiar == ref.familiar
    if ref.digest is None:
        assert again == Reference(ref.domain, ref.path, ref.tag or "latest", None)
    else:
        assert again == Reference(ref.domain, ref.path, None, ref.digest)


# --------------------------------------------------------------------------------------
# The forms the engine lists (checked against dockerd: see tests/test_reference_engine.py)
# --------------------------------------------------------------------------------------

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("x", "x:latest"),
        ("x:latest", "x:latest"),
        ("library/x", "x:latest"),
        ("docker.io/library/x", "x:latest"),
        ("index.docker.io/library/x:latest", "x:latest"),
        ("docker.io/x", "x:latest"),
        ("docker.io/library/x:1", "x:1"),
        ("docker.io/acme/base:1.0", "acme/base:1.0"),
        ("acme/base:1.0", "acme/base:1.0"),
        ("index.docker.io/acme/base:1.0", "acme/base:1.0"),
        ("docker.io/library/ns/x", "library/ns/x:latest"),
        ("127.0.0.1:5000/ns/x:v1", "127.0.0.1:5000/ns/x:v1"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/library/x", "localhost:5000/library/x:latest"),
        (f"ubuntu@{DIGEST}", f"ubuntu@{DIGEST}"),
        (f"docker.io/library/ubuntu:1.0@{DIGEST}", f"ubuntu@{DIGEST}"),
        (f"127.0.0.1:5000/ns/x:v1@{DIGEST}", f"127.0.0.1:5000/ns/x@{DIGEST}"),
    ],
)
def test_familiar(text: str, familiar: str) -> None:
    assert parse(text).familiar == familiar
    assert engine_name(text) == familiar


def test_one_repository_however_spelled() -> None:
    spellings = ["x", "x:latest", "library/x", "docker.io/library/x", "index.docker.io/x"]
    assert {parse(text).familiar for text in spellings} == {"x:latest"}
    assert {parse(text).name for text in spellings} == {"docker.io/library/x"}
    assert parse("docker.io/org/x").name == parse("org/x").name == "docker.io/org/x"


def test_fields() -> None:
    assert parse("ubuntu") == Reference("docker.io", "library/ubuntu", None, None)
    assert parse("Registry.io:5000/a/b:T@" + DIGEST) == Reference(
        "Registry.io:5000", "a/b", "T", DIGEST
    )


def test_engine_name_leaves_invalid_text_alone() -> None:
    for text in ("", "Ubuntu", "a b", "x:", "-x"):
        assert engine_name(text) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "at least one component"),
        ("Alpine", "must be lowercase"),
        ("alpine:", "invalid reference format"),
        ("a@sha256:abc", "invalid reference format"),
        ("a@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("a@sha256:" + "a" * 63, "digest length"),
        ("a@sha512:" + "a" * 64, "digest length"),
        ("a@sha256:" + "A" * 64, "invalid checksum digest format"),
        ("a" * 64, "64-byte hexadecimal"),
        ("a" * 300, "more than 255 characters"),
        ("x" * 2000, "too long"),
    ],
)
def test_reasons(text: str, reason: str) -> None:
    with pytest.raises(ReferenceError, match=reason):
        parse(text)
    assert issubclass(ReferenceError, ValueError)


# --------------------------------------------------------------------------------------
# Tree image names
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("base", "base"),
        ("base:latest", "base"),
        ("library/base", "base"),
        ("library/base:latest", "base"),
        ("docker.io/base", "base"),
        ("docker.io/library/base", "base"),
        ("docker.io/library/base:latest", "base"),
        ("index.docker.io/library/base:latest", "base"),
        ("drivers-418.56", "drivers-418.56"),
        ("a__b.c-d", "a__b.c-d"),
        ("base:1.0", None),
        ("base:Latest", None),
        ("base@sha256:" + "a" * 64, None),
        ("base:latest@sha256:" + "a" * 64, None),
        ("myorg/base", None),
        ("docker.io/myorg/base", None),
        ("library/library/base", None),
        ("localhost/base", None),
        ("localhost:5000/base", None),
        ("registry.example.com/base", None),
        ("registry.example.com/library/base", None),
        ("DOCKER.IO/library/base", None),
        ("Base", None),
        ("base image", None),
        ("", None),
        ("a" * 64, None),
        ("a" * 129, None),
        ("a" * 128, "a" * 128),
        ("scratch", "scratch"),
    ],
)
def test_local_image_name(reference: str, expected: str | None) -> None:
    assert local_image_name(reference) == expected


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("base-image", True),
        ("a", True),
        ("a1_b__c-d--e.f", True),
        ("drivers-384.111", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("a" * 64, False),
        ("0" * 64, False),
        ("g" * 64, True),
        ("", False),
        ("A", False),
        ("a-", False),
        ("_a", False),
        ("a___b", False),
        ("a..b", False),
        ("a b", False),
        ("a/b", False),
        ("a:b", False),
        ("a\n", False),
        ("é", False),
    ],
)
def test_is_valid_image_name(name: str, ok: bool) -> None:
    assert is_valid_image_name(name) is ok


@settings(max_examples=300, deadline=None)
@given(references())
def test_local_image_name_is_the_familiar_latest_tag(text: str) -> None:
    name = local_image_name(text)
    if name is not None:
        assert is_valid_image_name(name)
        assert parse(text).familiar == f"{name}:latest"
        assert local_image_name(f"docker.io/library/{name}:latest") == name


@settings(max_examples=200, deadline=None)
@given(component)
def test_every_valid_name_is_its_own_local_name(name: str) -> None:
    if is_valid_image_name(name):
        for spelling in (name, f"{name}:latest", f"library/{name}", f"docker.io/{name}"):
            assert local_image_name(spelling) == name
