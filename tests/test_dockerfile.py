"""Tests for paitasks.dockerfile: which images a dockerfile needs, as BuildKit sees them."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks.dockerfile import (
    DockerfileInfo,
    ImageRef,
    parse_dockerfile,
    parse_dockerfile_text,
    rewrite_images,
)
from paitasks.errors import DockerfileError

RESOURCES = Path(__file__).parent / "resources" / "dockerfiles"
PATH = Path("src/a/build/a.dockerfile")


def parse(text: str, **build_args: str) -> DockerfileInfo:
    return parse_dockerfile_text(text, PATH, build_args or None)


def refs(text: str, **build_args: str) -> list[tuple[str, int, str]]:
    """The refs of `text` as plain tuples, which read better in assertions."""
    return [(ref.reference, ref.line, ref.kind) for ref in parse(text, **build_args).refs]


def error(text: str, **build_args: str) -> str:
    with pytest.raises(DockerfileError) as caught:
        parse(text, **build_args)
    return str(caught.value)


# --------------------------------------------------------------------------------------
# Sample files
# --------------------------------------------------------------------------------------


def test_watchdog_style_multi_stage() -> None:
    info = parse_dockerfile(RESOURCES / "watchdog.dockerfile")
    assert info.path == RESOURCES / "watchdog.dockerfile"
    assert info.stages == ("builder",)
    assert info.refs == (
        ImageRef("golang:1.13.8-alpine", 4, "FROM"),
        ImageRef("base-image", 15, "FROM"),
    )


def test_global_args_file() -> None:
    path = RESOURCES / "global-args.dockerfile"
    assert [(r.reference, r.line) for r in parse_dockerfile(path).refs] == [
        ("docker.io/nvidia/cuda:10.0-runtime", 7),
        ("base-image", 10),
        ("alpine:3.19", 14),
        ("base-image-dev", 15),
    ]
    overridden = parse_dockerfile(path, {"BASE": "other", "UNSET": "x", "CUDA_VERSION": "11"})
    assert [r.reference for r in overridden.refs] == [
        "docker.io/nvidia/cuda:11-runtime",
        "other",
        "x",
        "other-dev",
    ]
    assert overridden.stages == ("cuda", "tools")


def test_mounts_file() -> None:
    info = parse_dockerfile(RESOURCES / "mounts.dockerfile")
    assert info.stages == ("wheels",)
    assert info.refs == (
        ImageRef("python:3.11-slim", 2, "FROM"),
        ImageRef("base-image", 7, "FROM"),
        ImageRef("drivers-418.56", 8, "RUN --mount"),
    )


def test_escape_directive_file() -> None:
    info = parse_dockerfile(RESOURCES / "escape-backtick.dockerfile")
    assert info.stages == ("build",)
    assert info.refs == (ImageRef("mcr.microsoft.com/windows/servercore:ltsc2019", 4, "FROM"),)


def test_heredoc_bodies_are_not_instructions() -> None:
    info = parse_dockerfile(RESOURCES / "heredoc.dockerfile")
    assert info.refs == (
        ImageRef("alpine:3.19", 1, "FROM"),
        ImageRef("base-image", 8, "FROM"),
        ImageRef("busybox:1.36", 12, "COPY --from"),
    )


# --------------------------------------------------------------------------------------
# FROM
# --------------------------------------------------------------------------------------


def test_from_forms() -> None:
    text = (
        "FROM --platform=linux/amd64 golang:1.20 AS Build\n"
        "from build\n"
        "From scratch as EMPTY\n"
        "FROM registry.example.com:5000/team/tool@sha256:" + "a" * 64 + "\n"
    )
    info = parse(text)
    assert info.stages == ("build", "empty")
    assert [(r.reference, r.line) for r in info.refs] == [
        ("golang:1.20", 1),
        ("registry.example.com:5000/team/tool@sha256:" + "a" * 64, 4),
    ]


def test_stage_names_keep_duplicates_in_order() -> None:
    assert parse("FROM a AS x\nFROM b AS y\nFROM c AS x\n").stages == ("x", "y", "x")


def test_from_a_stage_defined_later_is_an_image() -> None:
    assert refs("FROM later\nFROM alpine AS later\n") == [
        ("later", 1, "FROM"),
        ("alpine", 2, "FROM"),
    ]


def test_from_a_stage_needs_its_lower_case_name() -> None:
    message = error("FROM alpine AS Builder\nFROM Builder\n")
    assert message.startswith(f"{PATH}:2: FROM Builder:")
    assert "FROM builder" in message


def test_from_scratch_is_never_a_ref_but_scratch_is_case_sensitive() -> None:
    assert refs("FROM scratch\n") == []
    assert "must be lowercase" in error("FROM SCRATCH\n")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("FROM\n", "FROM names no image"),
        ('FROM ["alpine"]\n', "not a valid image reference"),
        ("FROM Alpine\n", "must be lowercase"),
        ("FROM alpine:\n", "invalid reference format"),
        ("FROM a@sha256:abc\n", "invalid reference format"),
        ("FROM a@md5:" + "a" * 32 + "\n", "unsupported digest algorithm"),
        ("FROM a@sha256:" + "a" * 63 + "\n", "digest length"),
        ("FROM a@sha512:" + "a" * 64 + "\n", "digest length"),
        ("FROM " + "a" * 64 + "\n", "64-byte hexadecimal"),
        ("FROM " + "a" * 300 + "\n", "more than 255 characters"),
    ],
)
def test_bad_from(text: str, fragment: str) -> None:
    message = error(text)
    assert message.startswith(f"{PATH}:1: ")
    assert fragment in message


# --------------------------------------------------------------------------------------
# ARG substitution
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_word", "expected"),
    [
        ("$BASE", "base-image"),
        ("${BASE}", "base-image"),
        ("${BASE}:1.0", "base-image:1.0"),
        ("$BASE:1.0", "base-image:1.0"),
        ('"${BASE}"', "base-image"),
        ("'alpine'", "alpine"),
        ("${BASE:-alpine}", "base-image"),
        ("${NOPE:-alpine}", "alpine"),
        ("${EMPTY:-alpine}", "alpine"),
        ("${EMPTY-alpine}x", "x"),
        ("${UNSET-alpine}", "alpine"),
        ("${NOPE-alpine}", "alpine"),
        ("${BASE:+alpine}", "alpine"),
        ("${BASE+alpine}", "alpine"),
        ("${EMPTY+alpine}x", "alpinex"),
        ("${EMPTY:+alpine}x", "x"),
        ("${NOPE:+alpine}x", "x"),
        ("${BASE:?must-be-set}", "base-image"),
        ("${BASE?}", "base-image"),
        ("${EMPTY?}x", "x"),
        ("${NOPE:-${BASE}}", "base-image"),
        ("${NOPE:-$BASE-dev}", "base-image-dev"),
        ("${NOPE:-'alp'ine}", "alpine"),
        ('"${NOPE:-x}y"', "xy"),
        ("$TAGGED", "golang:1.20"),
        ("$CHAIN", "base-image-chained"),
    ],
)
def test_from_arg_forms(from_word: str, expected: str) -> None:
    text = (
        "ARG BASE=base-image\n"
        "ARG EMPTY=\n"
        "ARG UNSET\n"
        'ARG TAGGED="golang:1.20"\n'
        "ARG CHAIN=${BASE}-chained\n"
        f"FROM {from_word}\n"
    )
    assert refs(text) == [(expected, 6, "FROM")]


@pytest.mark.parametrize(
    ("from_word", "form"),
    [
        ("${BASE#base-}", "${BASE#...}"),
        ("${BASE##*e}", "${BASE#...}"),
        ("${BASE%-*}", "${BASE%...}"),
        ("${BASE%%e*}", "${BASE%...}"),
        ("${BASE/image/img}", "${BASE/...}"),
        ("${BASE//e/o}", "${BASE/...}"),
        ("${BASE:x}", "${BASE:...}"),
        ("${BASE:0:2}", "${BASE:...}"),
        ("${BASE!x}", "${BASE!...}"),
        ("x${#BASE}", "${#...}"),
        ("${1}", "${1...}"),
        ("$1", "$1"),
        ("a$@", "$@"),
        ("${NOPE:-${BASE%x}}", "${BASE%...}"),
    ],
)
def test_unsupported_expansion_forms_fail_with_file_and_line(from_word: str, form: str) -> None:
    message = error(f"ARG BASE=base-image\nFROM {from_word}\n")
    assert message == (
        f"{PATH}:2: cannot expand FROM {from_word!r}: paitasks does not support {form}"
        " (only $VAR, ${VAR}, ${VAR:-word}, ${VAR-word}, ${VAR:+word}, ${VAR+word},"
        " ${VAR:?word})"
    )


def test_unsupported_form_in_a_global_arg_names_its_line() -> None:
    message = error("ARG A=x\nARG B=${A%x}\nFROM alpine\n")
    assert message.startswith(f"{PATH}:2: cannot expand ARG B '${{A%x}}': paitasks does not")


def test_arg_without_default_is_empty() -> None:
    message = error("ARG BASE\nFROM alpine\nFROM $BASE\n")
    assert message == f"{PATH}:3: FROM names no image (ARG BASE is empty)"


def test_undeclared_name_is_empty_even_as_build_arg() -> None:
    message = error("FROM ${BASE}\n", BASE="alpine")
    assert message == f"{PATH}:1: FROM names no image (ARG BASE is empty)"


def test_build_args_override_defaults() -> None:
    text = "ARG BASE=alpine\nARG TAG\nFROM ${BASE}:${TAG:-latest}\n"
    assert refs(text) == [("alpine:latest", 3, "FROM")]
    assert refs(text, BASE="base-image", TAG="1.0") == [("base-image:1.0", 3, "FROM")]
    # A build arg is taken as it is, not expanded again.
    assert "not a valid image reference" in error(text, BASE="$OTHER")


def test_later_arg_sees_earlier_one_and_build_arg() -> None:
    text = "ARG REGISTRY=docker.io\nARG IMAGE=$REGISTRY/library/base\nFROM $IMAGE\n"
    assert refs(text) == [("docker.io/library/base", 3, "FROM")]
    assert refs(text, REGISTRY="reg.io") == [("reg.io/library/base", 3, "FROM")]


def test_several_args_on_one_line_and_quotes() -> None:
    text = "ARG A=\"alp\" B='ine' C\nFROM $A$B$C\n"
    assert refs(text) == [("alpine", 2, "FROM")]


def test_args_after_the_first_from_are_not_global() -> None:
    message = error("FROM alpine\nARG BASE=base-image\nFROM $BASE\n")
    assert message == f"{PATH}:3: FROM names no image (ARG BASE is empty)"


def test_redeclared_global_arg_takes_the_last_default() -> None:
    assert refs("ARG B=one\nARG B=two\nFROM $B\n") == [("two", 3, "FROM")]


def test_platform_args_are_predefined() -> None:
    assert refs("FROM base-$TARGETOS\n") == [("base-linux", 1, "FROM")]
    assert refs("FROM base-$TARGETARCH\n", TARGETARCH="arm64") == [("base-arm64", 1, "FROM")]
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        assert refs("FROM base-${BUILDARCH}\n") == [("base-amd64", 1, "FROM")]
    # TARGETSTAGE is the last stage's name.
    assert refs("FROM alpine AS x\nFROM base$TARGETSTAGE\n")[1] == ("base", 2, "FROM")
    assert refs("FROM base-$TARGETSTAGE AS final\n") == [("base-final", 1, "FROM")]


@pytest.mark.parametrize(
    ("from_word", "fragment"),
    [
        ("${BASE", "missing '}'"),
        ("${BASE:-x", "missing '}'"),
        ("${", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:-x}", "bad substitution"),
        ("${NOPE:?needs-a-value}", "NOPE: needs-a-value"),
        ("${NOPE?}", "NOPE: is not set"),
        ("'alpine", "single quote"),
        ('"alpine', "double quote"),
    ],
)
def test_bad_substitution(from_word: str, fragment: str) -> None:
    message = error(f"ARG BASE=base-image\nFROM {from_word}\n")
    assert message.startswith(f"{PATH}:2: cannot expand FROM")
    assert fragment in message


def test_escapes_in_words() -> None:
    assert refs("FROM alp\\ine\n") == [("alpine", 1, "FROM")]
    assert "not a valid image reference" in error("ARG A=x\nFROM \\$A\n")
    text = "# escape=`\nARG A=alpine\nFROM `$A\n"
    assert "FROM '$A' is not a valid image reference" in error(text)
    assert refs("# escape=`\nARG A=alp`ine\nFROM $A\n") == [("alpine", 3, "FROM")]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    word = "${A:-" * 3000 + "x" + "}" * 3000
    assert "cannot expand FROM" in error(f"FROM {word}\n")


def test_arg_errors() -> None:
    assert error("ARG A=${\nFROM a\n").startswith(f"{PATH}:1: cannot expand ARG A")
    # BuildKit refuses these when it builds; they do not change the graph.
    assert refs("ARG\nARG =x\nFROM a\n") == [("a", 3, "FROM")]


# --------------------------------------------------------------------------------------
# COPY --from
# --------------------------------------------------------------------------------------


def test_copy_from_stage_index_image_and_scratch() -> None:
    text = (
        "FROM golang:1.20 AS Builder\n"
        "FROM alpine\n"
        "COPY --from=builder /a /a\n"
        "COPY --from=BUILDER /a /a\n"
        "COPY --from=0 /a /a\n"
        "COPY --chown=1:1 --from=drivers:418 /d /d\n"
        "COPY --from=docker.io/library/base:latest /b /b\n"
        "COPY --from=scratch /s /s\n"
        "COPY --from= /ctx /ctx\n"
        "COPY /ctx /ctx\n"
    )
    assert refs(text) == [
        ("golang:1.20", 1, "FROM"),
        ("alpine", 2, "FROM"),
        ("drivers:418", 6, "COPY --from"),
        ("docker.io/library/base:latest", 7, "COPY --from"),
    ]


def test_copy_from_a_stage_that_shares_an_image_name() -> None:
    # A stage named like an image hides the image from COPY --from.
    assert refs("FROM golang AS alpine\nFROM base\nCOPY --from=alpine / /\n") == [
        ("golang", 1, "FROM"),
        ("base", 2, "FROM"),
    ]


@pytest.mark.parametrize(
    ("copy", "fragment"),
    [
        ("COPY --from=$IMG a b", "does not expand variables"),
        ("COPY --from=${IMG} a b", "does not expand variables"),
        ("COPY --from=${ a b", "does not expand variables"),
        ("COPY --from=Bad/Image a b", "not a valid image reference"),
    ],
)
def test_bad_copy_from(copy: str, fragment: str) -> None:
    text = f"ARG IMG=alpine\nFROM alpine AS first\nFROM alpine AS self\n{copy}\nFROM a AS later\n"
    message = error(text)
    assert message.startswith(f"{PATH}:4: ")
    assert fragment in message


def test_copy_from_any_stage_or_index_is_not_a_ref() -> None:
    # Out-of-range indexes, later stages and the stage itself: BuildKit refuses them.
    text = "FROM a AS self\nCOPY --from=5 / /\nCOPY --from=-1 / /\nCOPY --from=self / /\n"
    assert refs(text + "COPY --from=Later / /\nFROM b AS later\n") == [
        ("a", 1, "FROM"),
        ("b", 6, "FROM"),
    ]


def test_copy_from_later_stage_is_fine_from_an_even_later_one() -> None:
    text = "FROM a AS one\nFROM b AS two\nCOPY --from=one / /\nCOPY --from=0 / /\n"
    assert refs(text) == [("a", 1, "FROM"), ("b", 2, "FROM")]


def test_copy_with_heredoc_and_json_form() -> None:
    text = 'FROM a\nCOPY --from=tools:1 <<EOF /f\nhello\nEOF\nCOPY --from=b:2 ["x", "y"]\n'
    assert refs(text) == [
        ("a", 1, "FROM"),
        ("tools:1", 2, "COPY --from"),
        ("b:2", 5, "COPY --from"),
    ]


def test_copy_flag_after_double_dash_is_ignored() -> None:
    # BuildKit stops reading flags at `--`.
    assert refs("FROM a\nCOPY -- --from=x y z\n") == [("a", 1, "FROM")]


# --------------------------------------------------------------------------------------
# RUN --mount
# --------------------------------------------------------------------------------------


def test_run_mounts() -> None:
    text = (
        "FROM golang AS build\n"
        "FROM alpine\n"
        "RUN --mount=type=bind,from=build,target=/b \\\n"
        "    --mount=type=cache,target=/root/.cache \\\n"
        "    --mount=from=tools:1,source=/bin,target=/t \\\n"
        "    --mount=type=bind,target=/ctx \\\n"
        "    --network=none make\n"
        "run --mount=FROM=Build,target=/b --mount=Type=Cache,From=cache-seed,target=/c true\n"
        "RUN --mount=type=tmpfs,from=ignored,target=/tmp true\n"
        "RUN --mount=type=ssh,from=ssh-img true\n"
        "RUN --mount=type=bind,from=scratch,target=/s true\n"
        'RUN --mount="type=bind,from=quoted:1,target=/q" true\n'
        "RUN --mount=from=0,target=/zero true\n"
        "RUN --mount=from=,target=/ctx true\n"
        'RUN ["echo", "--mount=from=not-a-flag"]\n'
    )
    assert refs(text) == [
        ("golang", 1, "FROM"),
        ("alpine", 2, "FROM"),
        ("tools:1", 3, "RUN --mount"),
        ("cache-seed", 8, "RUN --mount"),
        ("ssh-img", 10, "RUN --mount"),
        ("quoted:1", 12, "RUN --mount"),
        # BuildKit looks a mount's from= up by name only, so "0" is an image.
        ("0", 13, "RUN --mount"),
    ]


def test_run_mount_from_a_later_stage_is_not_a_ref() -> None:
    assert refs("FROM a\nRUN --mount=from=later,target=/l true\nFROM b AS later\n") == [
        ("a", 1, "FROM"),
        ("b", 3, "FROM"),
    ]


def test_same_mount_twice_is_one_ref() -> None:
    text = "FROM a\nRUN --mount=from=x,target=/1 --mount=from=x,target=/2 true\n"
    assert refs(text) == [("a", 1, "FROM"), ("x", 2, "RUN --mount")]


@pytest.mark.parametrize(
    ("run", "fragment"),
    [
        ("RUN --mount=from=$IMG,target=/x true", "does not expand variables"),
        ("RUN --mount=from=${IMG},target=/x true", "does not expand variables"),
        ("RUN --mount=from=Bad:Ref:x,target=/x true", "not a valid image reference"),
        ('RUN --mount=from=a\\"b,target=/x true', "not a valid image reference"),
        ("RUN --mount='\"a\"b' true", "RUN --mount=\"a\"b: ',' expected after '\"'"),
        ("RUN --mount='\"ab' true", "unexpected end of data"),
    ],
)
def test_bad_run_mount(run: str, fragment: str) -> None:
    message = error(f"ARG IMG=alpine\nFROM alpine AS self\n{run}\n")
    assert message.startswith(f"{PATH}:3: ")
    assert fragment in message


def test_mount_dollar_alone_is_literal() -> None:
    # BuildKit only refuses `$` followed by something.
    assert "not a valid image reference" in error("FROM a\nRUN --mount=from=a$,target=/x true\n")


# --------------------------------------------------------------------------------------
# ONBUILD
# --------------------------------------------------------------------------------------


def test_onbuild_triggers_run_in_child_stages() -> None:
    text = (
        "FROM a AS parent\n"
        "ONBUILD COPY --from=seed:1 / /\n"
        "ONBUILD RUN --mount=from=tool:2,target=/t true\n"
        "ONBUILD COPY --from=parent / /\n"
        "FROM parent\n"
        "FROM parent AS again\n"
    )
    assert refs(text) == [
        ("a", 1, "FROM"),
        ("seed:1", 2, "COPY --from"),
        ("tool:2", 3, "RUN --mount"),
    ]


def test_onbuild_without_child_stage_makes_no_ref() -> None:
    assert refs("FROM a AS parent\nONBUILD COPY --from=seed:1 / /\n") == [("a", 1, "FROM")]
    # A trigger is not inherited by grandchildren, and COPY --from does not run it.
    text = "FROM a AS p\nONBUILD COPY --from=s / /\nFROM b AS c\nCOPY --from=p / /\nFROM c\n"
    assert refs(text) == [("a", 1, "FROM"), ("b", 3, "FROM")]


def test_onbuild_triggers_that_use_no_image_are_left_to_buildkit() -> None:
    # BuildKit refuses `ONBUILD ONBUILD`, `ONBUILD FROM`... when it builds.
    text = "FROM a AS p\nONBUILD\nONBUILD FROM b\nONBUILD ONBUILD RUN x\nONBUILD BOGUS\nFROM p\n"
    assert refs(text) == [("a", 1, "FROM")]


def test_onbuild_copy_from_the_context() -> None:
    text = "FROM a AS p\nONBUILD COPY x /x\nFROM p\nONBUILD ADD y /y\n"
    info = parse(text)
    assert info.onbuild_reads_context
    assert info.context == ("x",)  # the child stage runs the trigger
    assert not parse("FROM a\nONBUILD COPY --from=b x /x\n").onbuild_reads_context
    assert not parse("FROM a\nONBUILD RUN x\n").onbuild_reads_context


# --------------------------------------------------------------------------------------
# What the parser library takes care of
# --------------------------------------------------------------------------------------


def test_continuations_comments_and_case() -> None:
    text = (
        "# leading comment\n"
        "\n"
        "  from \\\n"
        "   # a comment inside a continuation\n"
        "   --platform=linux/amd64 \\\n"
        "   golang:1.20 \\\n"
        "\n"
        "   aS builder\n"
        "\tFrOm alpine\n"
        "cOpY --from=tools:1 \\\n"
        "  /a /b\n"
    )
    assert refs(text) == [
        ("golang:1.20", 3, "FROM"),
        ("alpine", 9, "FROM"),
        ("tools:1", 10, "COPY --from"),
    ]
    assert parse(text).stages == ("builder",)


def test_heredoc_lines_count() -> None:
    text = "FROM a\nRUN <<EOF\nFROM b\nEOF\nRUN <<-X cat\n\tCOPY --from=y\n\tX\nFROM c\n"
    assert refs(text) == [("a", 1, "FROM"), ("c", 8, "FROM")]


def test_crlf_bom_and_directives() -> None:
    text = "\ufeff# syntax=docker/dockerfile:1\r\n# escape=`\r\nFROM a `\r\n  AS b\r\nFROM b\r\n"
    assert refs(text) == [("a", 3, "FROM")]
    assert parse(text).stages == ("b",)


def test_escape_directive_only_counts_at_the_top() -> None:
    # After a blank line `# escape=` is a comment, so the backslash still escapes.
    assert refs("\n# escape=`\nARG A=alp\\ine\nFROM $A\n") == [("alpine", 4, "FROM")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", f"{PATH}: no instructions (the file is empty or only comments)"),
        ("# only\n\n# comments\n", f"{PATH}: no instructions (the file is empty or only comments)"),
        ("ARG A=1\n", f"{PATH}: no FROM instruction"),
        ("# c\nRUN x\nFROM a\n", f"{PATH}:2: RUN before the first FROM (only ARG may be)"),
        ("FROM a\nFOO bar\n", f"{PATH}:2: unknown instruction: FOO"),
        ("\ufeffFROM a\n\ufeffFROM b\n", f"{PATH}:2: unknown instruction: \ufeffFROM"),
        ("FROM a\nRUN x\0y\n", f"{PATH}:2: contains a NUL character"),
        ("FROM a\nRUN \udc80\n", f"{PATH}:2: text is not valid Unicode (lone surrogate)"),
        ("FROM a\nRUN <<EOF\n", f"{PATH}: cannot parse: unterminated heredoc"),
        ("# escape=x\nFROM a\n", f"{PATH}: cannot parse: invalid escape token"),
    ],
)
def test_file_level_errors(text: str, expected: str) -> None:
    assert error(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("FROM a AS 1st\n", 1),
        ("FROM a b\n", 1),
        ("FROM --pull --platform=$NOPE a\n", 1),
        ("FROM a\n\\\n", 1),
        ("FROM a\nADD --from=x a b\nCOPY --from a b\n", 1),
        ("FROM a\nRUN --mount --mount=type=secret,id=x true\n", 1),
    ],
)
def test_what_buildkit_refuses_itself_is_left_to_it(text: str, line: int) -> None:
    # None of these changes which images the file uses: `docker build` reports them.
    assert refs(text) == [("a", line, "FROM")]


def test_overlong_line_is_an_error() -> None:
    assert "max allowed size" in error("FROM a\nRUN " + "x" * 70_000 + "\n")


# --------------------------------------------------------------------------------------
# parse_dockerfile: reading files
# --------------------------------------------------------------------------------------


def test_reads_utf8_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.dockerfile"
    path.write_bytes(b"\xef\xbb\xbfFROM alpine\r\nLABEL who=\xc3\xa9\r\n")
    info = parse_dockerfile(path)
    assert info.path == path
    assert info.refs == (ImageRef("alpine", 1, "FROM"),)


def test_undecodable_bytes_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.dockerfile"
    path.write_bytes(b"FROM alpine\nLABEL x=\xff\n")
    with pytest.raises(DockerfileError, match=rf"^{path}:2: not UTF-8 text"):
        parse_dockerfile(path)


def test_missing_file_names_file_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "missing.dockerfile"
    with pytest.raises(DockerfileError, match=rf"^{path}: cannot read: No such file"):
        parse_dockerfile(path)


def test_directory_is_not_a_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError, match=rf"^{tmp_path}: cannot read: Is a directory"):
        parse_dockerfile(tmp_path)


def test_path_with_nul_is_an_error() -> None:
    with pytest.raises(DockerfileError, match="cannot read"):
        parse_dockerfile(Path("a\0b"))


# --------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------

TOKENS = [
    "FROM", "from", "COPY", "RUN", "ARG", "ADD", "ONBUILD", "AS", " as ", "scratch", "alpine",
    "stage", "0", "1", " ", "  ", "\t", "\n", "\r\n", "\\\n", "\\", "`", "# escape=`\n", "#",
    "--from=", "--mount=", "--platform=", "type=", "from=", "target=/x", ",", "=", "$", "${",
    "}", ":-", ":+", ":?", "%", "/", "//", "'", '"', "[", "]", "<<EOF\n", "EOF", "\ufeff",
    ":latest", "@sha256:", "a" * 64, "é", "\0",
]  # fmt: skip


INSTRUCTION_WORDS = ["FROM", "from", "COPY", "RUN", "ARG", "ADD", "ONBUILD", "ONBUILD COPY"]

LINE_TOKENS = [token for token in TOKENS if token not in ("\0", "\n", "\r\n", "# escape=`\n")]
HEADS = ["", "FROM base AS s\n", "ARG A=x\nFROM $A AS s\n", "# escape=`\nFROM a AS s\n"]

# Lines that start with an instruction after a valid FROM, to get past the early checks.
instruction_soup = st.tuples(
    st.sampled_from(HEADS),
    st.lists(
        st.tuples(
            st.sampled_from(INSTRUCTION_WORDS), st.lists(st.sampled_from(LINE_TOKENS), max_size=12)
        ),
        min_size=1,
        max_size=8,
    ),
).map(lambda case: case[0] + "\n".join(f"{word} {''.join(tokens)}" for word, tokens in case[1]))


def never_anything_but_dockerfile_error(call: Callable[[], DockerfileInfo]) -> None:
    """Only DockerfileError, and never the last-resort one that hides a bug of ours."""
    try:
        info = call()
    except DockerfileError as exc:
        assert str(exc)
        assert "internal error" not in str(exc)
    else:
        assert isinstance(info, DockerfileInfo)
        for ref in info.refs:
            assert ref.reference and ref.line >= 1


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_random_text_only_raises_dockerfile_error(text: str) -> None:
    never_anything_but_dockerfile_error(lambda: parse(text))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(TOKENS), max_size=40).map("".join) | instruction_soup,
    st.dictionaries(st.sampled_from(["A", "B", "TARGETARCH"]), st.sampled_from(TOKENS), max_size=2),
)
def test_token_soup_only_raises_dockerfile_error(text: str, build_args: dict[str, str]) -> None:
    never_anything_but_dockerfile_error(lambda: parse_dockerfile_text(text, PATH, build_args))


@pytest.fixture(scope="module")
def scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("random-bytes")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary() | instruction_soup.map(str.encode))
def test_random_bytes_only_raise_dockerfile_error(scratch_dir: Path, data: bytes) -> None:
    path = scratch_dir / "random.dockerfile"
    path.write_bytes(data)
    never_anything_but_dockerfile_error(lambda: parse_dockerfile(path))


IMAGES = [
    "alpine",
    "alpine:3.19",
    "golang:1.13.8-alpine",
    "base-image",
    "drivers-418.56",
    "library/busybox",
    "docker.io/library/python:3.11",
    "registry.example.com:5000/team/tool:v1",
    "localhost/dev",
    "ghcr.io/org/img@sha256:" + "0" * 64,
]


@dataclass
class Generated:
    """A dockerfile written by the generator, and what it is meant to refer to."""

    text: str
    build_args: dict[str, str]
    refs: list[ImageRef]
    stages: list[str]


@st.composite
def dockerfiles(draw: st.DrawFn) -> Generated:
    """Valid dockerfiles with known refs: random stages, ARGs, case and continuations."""
    escape = draw(st.sampled_from(["\\", "`"]))
    lines: list[str] = []
    expected: list[ImageRef] = []
    build_args: dict[str, str] = {}

    def cased(word: str) -> str:
        return draw(st.sampled_from([word.upper(), word.lower(), word.capitalize()]))

    def emit(words: list[str]) -> int:
        """Write one instruction, maybe across continuation lines; its first line."""
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "# a comment", "   "])))
        start = len(lines) + 1
        text = words[0]
        for word in words[1:]:
            text += draw(
                st.sampled_from(
                    [" ", "  ", "\t", f" {escape}\n  ", f" {escape}\n# note\n  ", f"{escape}\n "]
                )
            )
            text += word
        lines.extend(text.split("\n"))
        return start

    if escape == "`":
        lines.append("# escape=`")
    arg_values: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(["BASE", "IMG", "X_1"]), unique=True, max_size=3)):
        default = draw(st.sampled_from(IMAGES))
        quote = draw(st.sampled_from(["", '"', "'"]))
        emit([cased("arg"), f"{name}={quote}{default}{quote}"])
        arg_values[name] = default
        if draw(st.booleans()):
            arg_values[name] = build_args[name] = draw(st.sampled_from(IMAGES))

    stage_names: list[str] = []
    named: list[str] = []  # names of earlier named stages
    for index in range(draw(st.integers(1, 4))):
        kinds = (
            ["image", "scratch"] + (["arg"] if arg_values else []) + (["stage"] if named else [])
        )
        kind = draw(st.sampled_from(kinds))
        reference: str | None = None
        if kind == "image":
            base = reference = draw(st.sampled_from(IMAGES))
        elif kind == "scratch":
            base = "scratch"
        elif kind == "stage":
            base = draw(st.sampled_from(named))
        else:
            name = draw(st.sampled_from(sorted(arg_values)))
            reference = arg_values[name]
            base = draw(
                st.sampled_from(
                    [f"${name}", f"${{{name}}}", f"${{{name}:-alpine}}", f'"${{{name}}}"']
                )
            )
        words = [cased("from")]
        if draw(st.booleans()):
            words.append("--platform=$BUILDPLATFORM")
        words.append(base)
        stage = draw(st.none() | st.from_regex(r"stage[a-z0-9]{0,4}", fullmatch=True))
        if stage is not None and stage not in named:
            written = "".join(draw(st.sampled_from([c, c.upper()])) for c in stage)
            words += [cased("as"), written]
        else:
            stage = None
        start = emit(words)
        if reference is not None:
            expected.append(ImageRef(reference, start, "FROM"))

        for _ in range(draw(st.integers(0, 3))):
            body = draw(
                st.sampled_from(["run", "heredoc", "copy", "copy-stage", "copy-index", "mount"])
            )
            if body == "run":
                emit([cased("run"), "echo", "hello"])
            elif body == "heredoc":
                start = emit([cased("run"), "<<EOF"])
                lines.extend(["FROM not-a-ref", "EOF"])
            elif body == "copy":
                image = draw(st.sampled_from(IMAGES))
                start = emit([cased("copy"), f"--from={image}", "/a", "/b"])
                expected.append(ImageRef(image, start, "COPY --from"))
            elif body == "copy-stage" and named:
                source = draw(st.sampled_from(named))
                source = "".join(draw(st.sampled_from([c, c.upper()])) for c in source)
                emit([cased("copy"), "--chown=0:0", f"--from={source}", "/a", "/b"])
            elif body == "copy-index" and index > 0:
                emit([cased("copy"), f"--from={draw(st.integers(0, index - 1))}", "/a", "/b"])
            elif body == "mount":
                choices = IMAGES + named + ["", "scratch"]
                source = draw(st.sampled_from(choices))
                option = f"type=bind,from={source},target=/m" if source else "type=cache,target=/c"
                start = emit([cased("run"), f"--mount={option}", "true"])
                if source in IMAGES:
                    expected.append(ImageRef(source, start, "RUN --mount"))
        if stage is not None:
            named.append(stage)
            stage_names.append(stage)
    return Generated("\n".join(lines) + "\n", build_args, expected, stage_names)


@settings(max_examples=200, deadline=None)
@given(dockerfiles())
def test_generated_dockerfiles_give_the_intended_refs(case: Generated) -> None:
    info = parse_dockerfile_text(case.text, PATH, case.build_args)
    assert list(info.refs) == sorted(dict.fromkeys(case.refs), key=lambda ref: ref.line)
    assert list(info.stages) == case.stages


def test_declared_args_are_collected_from_every_stage() -> None:
    text = (
        "ARG BASE=img\nFROM ${BASE} AS one\narg VERSION\n"
        "FROM scratch\nARG A=1 B\nRUN true\nCOPY --from=one /x /x\n"
    )
    assert parse(text).args == ("A", "B", "BASE", "VERSION")
    assert parse("FROM scratch\n").args == ()


# --------------------------------------------------------------------------------------
# rewrite_images
# --------------------------------------------------------------------------------------


def pinned(ref: str) -> str:
    """The pinned reference the tests rewrite `ref` to: a registry name and a digest."""
    name = ref.split("@")[0].split("/")[-1].split(":")[0]
    return f"127.0.0.1:5000/ns/{name}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def rewrite(text: str, only: set[str] | None = None, **build_args: str) -> str:
    """`text` with every ref (or those in `only`) pinned; checks the line count."""
    seen: list[str] = []

    def replace(ref: str) -> str | None:
        seen.append(ref)
        return pinned(ref) if only is None or ref in only else None

    result = rewrite_images(text, PATH, replace, build_args or None)
    assert seen == [ref.reference for ref in parse(text, **build_args).refs]
    assert result.count("\n") == text.count("\n")
    return result


def test_rewrite_plain_from_and_platform_flag_and_stage_name() -> None:
    assert rewrite("FROM base-image\n") == f"FROM {pinned('base-image')}\n"
    text = "FROM  --platform=$BUILDPLATFORM\tgolang:1.20   AS Build # no comment\nRUN x\n"
    first = f"FROM  --platform=$BUILDPLATFORM\t{pinned('golang:1.20')}   AS Build # no comment"
    assert rewrite(text) == f"{first}\nRUN x\n"


def test_rewrite_from_an_arg_writes_the_literal() -> None:
    text = "ARG BASE=base-image\nARG TAG\nFROM ${BASE}:${TAG:-1.0} AS b\n"
    expected = "ARG BASE=base-image\nARG TAG\nFROM {} AS b\n"
    assert rewrite(text) == expected.format(pinned("base-image:1.0"))
    assert rewrite(text, BASE="other", TAG="2") == expected.format(pinned("other:2"))
    assert rewrite('ARG B=x\nFROM "$B"\n') == f"ARG B=x\nFROM {pinned('x')}\n"


def test_rewrite_leaves_stages_scratch_and_other_images_alone() -> None:
    text = (
        "FROM golang:1.20 AS builder\n"
        "FROM scratch AS empty\n"
        "FROM base-image\n"
        "COPY --from=builder /a /a\n"
        "COPY --from=0 /b /b\n"
        "COPY --chown=0:0 --from=drivers:418 /d /d\n"
        "COPY --from=base-image /base-image /base-image\n"
        "FROM builder\n"
    )
    result = rewrite(text, only={"base-image", "drivers:418"})
    lines = text.split("\n")
    lines[2] = f"FROM {pinned('base-image')}"
    lines[5] = f"COPY --chown=0:0 --from={pinned('drivers:418')} /d /d"
    lines[6] = f"COPY --from={pinned('base-image')} /base-image /base-image"
    assert result == "\n".join(lines)


def test_rewrite_run_mounts_in_any_key_order_with_a_heredoc() -> None:
    text = (
        "FROM alpine AS build\n"
        "RUN --mount=type=bind,from=tools:1,target=/t \\\n"
        "    --mount=target=/c,type=cache,From=cache-seed \\\n"
        "    --mount=from=build,target=/b --mount=from=tools:1 <<EOF\n"
        "FROM tools:1\n"
        "--mount=from=tools:1\n"
        "EOF\n"
    )
    assert rewrite(text, only={"tools:1", "cache-seed"}) == (
        "FROM alpine AS build\n"
        f"RUN --mount=type=bind,from={pinned('tools:1')},target=/t \\\n"
        f"    --mount=target=/c,type=cache,From={pinned('cache-seed')} \\\n"
        f"    --mount=from=build,target=/b --mount=from={pinned('tools:1')} <<EOF\n"
        "FROM tools:1\n"
        "--mount=from=tools:1\n"
        "EOF\n"
    )


def test_rewrite_on_continuation_lines_keeps_every_other_byte() -> None:
    text = (
        "# escape=`\r\n"
        "from `\r\n"
        "  # base-image in a comment`\r\n"
        "\r\n"
        "  --platform=linux/amd64 `\r\n"
        "  base-image `\r\n"
        "  AS base\r\n"
        "COPY `\r\n"
        "  --from=base-image base-image /x\r\n"
    )
    lines = text.split("\n")
    lines[5] = f"  {pinned('base-image')} `\r"
    lines[8] = f"  --from={pinned('base-image')} base-image /x\r"
    assert rewrite(text) == "\n".join(lines)


def test_rewrite_to_none_keeps_the_text_byte_identical() -> None:
    text = "\ufeff# syntax=docker/dockerfile:1\nARG B=a\nFROM $B\r\nCOPY --from=c / /\n\n"
    assert rewrite(text, only=set()) == text
    # Returning the reference itself still writes the literal in place of the ARGs.
    assert rewrite_images(text, PATH, lambda ref: ref) == text.replace("$B", "a")


def test_rewrite_leaves_onbuild_triggers_alone() -> None:
    text = "FROM a AS p\nONBUILD COPY --from=seed:1 / /\nFROM p\n"
    seen: list[str] = []

    def replace(ref: str) -> str:
        seen.append(ref)
        return pinned(ref)

    result = rewrite_images(text, PATH, replace)
    assert result == f"FROM {pinned('a')} AS p\nONBUILD COPY --from=seed:1 / /\nFROM p\n"
    assert seen == ["a"]


def test_rewrite_to_an_invalid_reference_names_file_and_line() -> None:
    with pytest.raises(DockerfileError) as caught:
        rewrite_images("FROM a\nCOPY --from=b / /\n", PATH, lambda ref: "Bad:Ref:x")
    assert str(caught.value).startswith(f"{PATH}:1: cannot rewrite FROM 'a' to 'Bad:Ref:x'")
    assert "bug in the caller" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('FROM a\nCOPY --from="b" / /\n', 2),
        ("FROM a\nCOPY --from=b\\\nc / /\n", 2),
        ('FROM a\nRUN --mount="from=b,target=/b" true\n', 2),
        ("FROM a\nRUN --mount=type=bind,\\\nfrom=b true\n", 2),
        ("FROM a\nRUN --mount=from=b\\c true\n", 2),
        ("FROM al\\\npine\n", 1),
    ],
)
def test_rewrite_refuses_what_it_cannot_locate(text: str, line: int) -> None:
    with pytest.raises(DockerfileError, match=rf"^{PATH}:{line}: cannot rewrite "):
        rewrite_images(text, PATH, pinned)


def test_rewrite_checks_the_result() -> None:
    text = "FROM a AS b\nFROM c\n"
    with pytest.raises(DockerfileError, match=rf"^{PATH}: .* refer to \['a'\] \(a replacement"):
        rewrite_images(text, PATH, lambda ref: "b" if ref == "c" else None)


def test_rewrite_reports_parse_errors() -> None:
    with pytest.raises(DockerfileError, match=rf"^{PATH}:1: "):
        rewrite_images("FROM Alpine\n", PATH, pinned)


# Image names the generators below draw at random, besides the sample ones.
random_images = st.from_regex(
    r"(?:[a-z0-9]{1,6}\.[a-z]{2,3}(?::[0-9]{2,5})?/)?[a-z][a-z0-9]{0,6}(?:[._-][a-z0-9]{1,3})?"
    r"(?:/[a-z0-9]{1,5}){0,2}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,6})?",
    fullmatch=True,
).filter(lambda name: name != "scratch" and not name.startswith("stage"))


@st.composite
def rewritable(draw: st.DrawFn) -> Generated:
    """A few FROM, COPY --from and RUN --mount lines naming random images."""
    images = st.sampled_from(IMAGES) | random_images
    lines: list[str] = []
    for index in range(draw(st.integers(1, 3))):
        gaps = st.sampled_from([" ", "\t", " \\\n  ", " \\\n# c\n\n "])
        lines += f"FROM{draw(gaps)}{draw(images)}{draw(gaps)}AS stage{index}".split("\n")
        for _ in range(draw(st.integers(0, 3))):
            image, gap = draw(images), draw(gaps)
            line = draw(
                st.sampled_from(
                    [
                        f"COPY --from={image}{gap}/a /b",
                        f"RUN --mount=type=bind,from={image},target=/m{gap}true",
                        f"RUN --mount=target=/m,from={image}{gap}--mount=from=stage{index} <<EOF",
                        f"COPY{gap}--from=stage{index} /a /b",
                    ]
                )
            )
            lines += line.split("\n") + (["FROM x", "EOF"] if "EOF" in line else [])
    return Generated("\n".join(lines) + "\n", {}, [], [])


@settings(max_examples=200, deadline=None)
@given(dockerfiles() | rewritable())
def test_rewriting_every_ref_gives_the_pinned_refs(case: Generated) -> None:
    before = parse_dockerfile_text(case.text, PATH, case.build_args).refs
    result = rewrite_images(case.text, PATH, pinned, case.build_args)
    after = parse_dockerfile_text(result, PATH, case.build_args)
    assert [(ref.reference, ref.line, ref.kind) for ref in after.refs] == [
        (pinned(ref.reference), ref.line, ref.kind) for ref in before
    ]
    old_lines, new_lines = case.text.split("\n"), result.split("\n")
    assert len(new_lines) == len(old_lines)
    for old, new in zip(old_lines, new_lines, strict=True):
        assert old == new or "127.0.0.1:5000/ns/" in new
