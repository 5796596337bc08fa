"""The one-line reason of a failure (failures.py), read from what the build tools really
print: tests/resources/failures/ holds the output of dockerd 20.10's BuildKit (0.8), of
scripts/dev-engine's buildkitd (0.13) and of the classic builder for a failing RUN, a
missing COPY source and a base that cannot be pulled (the engine's proxy refuses)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import docker
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paitasks.engine import TAIL_LINES, BuildRequest, build_failed
from paitasks.errors import HookError
from paitasks.failures import EXCERPT, excerpt, grouped, reason
from tests.support import BUSYBOX, doit_on, output, pai_build, report, summary_rows

OUTPUTS = Path(__file__).parent / "resources" / "failures"
REQUEST = BuildRequest(tags=("x",), dockerfile=Path("/src/x/build/x.dockerfile"),
                       context=Path("/src/x"))
RUN = 'RUN ["/bin/busybox", "false"]'
BASE = "could not be pulled: registry-1.docker.io unreachable (proxy refused the connection)"


def failed_build(name: str, tool: str = "buildx") -> str:
    """The message paitasks gives for a build that printed `name`'s output."""
    lines = (OUTPUTS / f"{name}.txt").read_text().splitlines()[-TAIL_LINES:]
    return str(build_failed(REQUEST, "from x.dockerfile", f"{tool} builder, exit 1", lines,
                            [], 1))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("buildkit-0.8-run", f"{RUN} exited with 1"),
        ("buildkit-0.13-run", f"{RUN} (line 3) exited with 1"),
        ("classic-run", f"{RUN} exited with 1"),
        ("buildkit-0.8-copy", "COPY build/missing.txt: file not found"),
        ("buildkit-0.13-copy", "COPY build/missing.txt: file not found"),
        ("classic-copy", "COPY build/missing.txt: file not found"),
        ("buildkit-0.8-base", f"base docker.io/library/ubuntu:16.04 {BASE}"),
        ("classic-base", f"base ubuntu:16.04 {BASE}"),
    ],
)
def test_the_innermost_cause_of_a_failed_build(name: str, expected: str) -> None:
    assert reason(failed_build(name)) == expected


def test_a_hook_says_its_exit_and_its_last_words() -> None:
    message = str(HookError(
        "component c: build-pre.sh failed (exit 2): /src/c/build/build-pre.sh\n"
        "last output lines:\n  | copying\n  | cp: cannot stat 'x': No such file\n  | "
    ))
    assert reason(message) == "build-pre.sh exited with 2: cp: cannot stat 'x': No such file"


def test_a_build_on_a_builder_names_it() -> None:
    lines = ["ERROR: Cannot connect to the Docker daemon at unix:///x.sock: driver not connecting"]
    request = REQUEST
    gone = str(build_failed(request, "on builder b1", "exit 1; builder b1 no longer answers",
                            lines, [], 1))
    assert reason(gone) == ("builder b1 no longer answers: Cannot connect to the Docker daemon "
                            "at unix:///x.sock: driver not connecting")
    lines = (OUTPUTS / "buildkit-0.13-run.txt").read_text().splitlines()
    there = str(build_failed(request, "on builder b2", "exit 1", lines, [], 1))
    assert reason(there) == f"{RUN} (line 3) exited with 1 (on builder b2)"


def test_a_one_line_error_is_its_own_reason() -> None:
    message = "image x: registry 127.0.0.1:5000 failed: PUT ns/x:v1 failed after 5 tries: HTTP 503"
    assert reason(message) == message


@given(st.text())
def test_any_message_has_a_one_line_reason(message: str) -> None:
    found = reason(message)
    assert found and "\n" not in found


# -- the lines around the first error ------------------------------------------------------

PREAMBLE_WORDS = ("building with", "[internal]", "transferring", "DONE 0", "CACHED", "--->",
                  "DEPRECATED", "------")


@pytest.mark.parametrize(
    ("name", "last", "step"),
    [
        ("buildkit-0.8-run", "#5 ERROR: executor failed running [/bin/busybox false]: exit code: 1",
         f"#5 [2/2] {RUN}"),
        ("buildkit-0.13-run", "did not complete successfully: exit code: 1", f"#5 [2/2] {RUN}"),
        ("classic-run", "returned a non-zero code: 1", f"Step 3/3 : {RUN}"),
        ("buildkit-0.8-copy", "no such file or directory", "#4 [1/1] COPY build/missing.txt /x"),
        ("classic-copy", "stat build/missing.txt: file does not exist",
         "Step 2/2 : COPY build/missing.txt /x"),
        ("buildkit-0.8-base", "proxyconnect tcp", None),
        ("classic-base", "proxyconnect tcp", "Step 1/2 : FROM ubuntu:16.04"),
    ],
)
def test_the_lines_around_the_first_error_without_the_preamble(
    name: str, last: str, step: str | None
) -> None:
    lines = excerpt(failed_build(name))
    assert lines[-1].endswith(last) or last in lines[-1], lines
    assert step is None or step in lines, lines
    assert 0 < len(lines) <= EXCERPT
    assert not any(word in line for line in lines for word in PREAMBLE_WORDS), lines


def test_a_hook_shows_its_last_lines() -> None:
    quoted = "\n".join(f"  | line {i}" for i in range(20))
    message = f"component c: build-pre.sh failed (exit 2): /x\nlast output lines:\n{quoted}"
    assert excerpt(message) == [f"line {i}" for i in range(15, 20)]
    assert excerpt("image x: registry failed") == []  # nothing quoted: the reason says it


ONE_LINE = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))  # no line breaks


@given(st.lists(st.text(alphabet=ONE_LINE, max_size=30)))
def test_an_excerpt_is_a_few_of_the_quoted_lines(lines: list[str]) -> None:
    message = "failed; last output lines:\n" + "\n".join(f"  | {line}" for line in lines)
    found = excerpt(message)
    assert len(found) <= EXCERPT
    assert all(line in [text.rstrip() for text in lines] for line in found)


# -- causes several images share ----------------------------------------------------------

UBUNTU = "base docker.io/library/ubuntu:16.04 could not be pulled: registry-1.docker.io unreachable"
PAUSE = "base gcr.io/pause:3.1 could not be pulled: gcr.io unreachable"


def test_unpulled_bases_are_one_cause_with_the_images_they_hit() -> None:
    failed = {
        "build-image:a": UBUNTU, "build-image:b": UBUNTU, "build-image:c": PAUSE,
        "prebuild:h": "build-pre.sh exited with 3: no", "build-image:r": "RUN x exited with 1",
    }
    # d is built on a; e on d; f and g wait for the failed hook; s for r alone
    blocked = {"d": ["build-image:a"], "e": ["build-image:d"], "f": ["prebuild:h"],
               "g": ["prebuild:h", "copy-deps:g"], "s": ["build-image:r"]}
    assert grouped(failed, blocked) == [
        "5 images failed because 2 external bases could not be pulled from 2 registries:",
        "  gcr.io unreachable:",
        "    gcr.io/pause:3.1: c",
        "  registry-1.docker.io unreachable:",
        "    docker.io/library/ubuntu:16.04: a, b, d, e",
        "2 images failed because build-image:r failed: RUN x exited with 1",
        "  r, s",
        "2 images failed because prebuild:h failed: build-pre.sh exited with 3: no",
        "  f, g",
    ]


def test_a_cause_of_one_image_is_not_repeated() -> None:
    assert grouped({"build-image:a": UBUNTU, "build-image:b": "RUN x exited with 1"}, {}) == []


@given(
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from([UBUNTU, PAUSE, "R1", "R2"])),
    st.dictionaries(st.sampled_from("ghijk"), st.lists(st.sampled_from("abcdefghijk"))),
)
def test_every_image_named_in_a_cause_was_hit_by_it(
    failed_images: dict[str, str], waits: dict[str, list[str]]
) -> None:
    failed = {f"build-image:{image}": why for image, why in failed_images.items()}
    blocked = {image: [f"build-image:{name}" for name in names] for image, names in waits.items()}
    lines = grouped(failed, blocked)
    named = [name for line in lines if line.startswith("  ") and not line.endswith(":")
             for name in line.rpartition(": ")[2].strip().split(", ")]
    assert set(named) <= set(failed_images) | set(blocked)
    for line in lines:
        if not line.startswith("  "):
            assert int(line.split()[0]) > 1  # a cause of one image stays in its row


# -- a real tree whose images fail for different reasons ---------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def failing_tree(src: Path, prefix: str) -> None:
    """One image that builds; one each whose RUN fails, whose COPY source is missing and
    whose component's hook fails; three whose external base cannot be pulled (two bases,
    two registries), and one built on one of those."""
    steps = {
        "good": 'COPY build/busybox /bin/busybox\nRUN ["/bin/busybox", "true"]\n',
        "runfail": 'COPY build/busybox /bin/busybox\nRUN ["/bin/busybox", "false"]\n',
        "copyfail": "COPY build/missing.txt /x\n",
        "hookfail": "COPY build/busybox /bin/busybox\n",
    }
    for name, text in steps.items():
        write(src / name / "build" / f"{prefix}-{name}.dockerfile", f"FROM scratch\n{text}")
        shutil.copy2(BUSYBOX, src / name / "build" / "busybox")
    for name, base in (("hub1", "ubuntu:16.04"), ("hub2", "ubuntu:16.04"),
                       ("gcr", "gcr.io/google-containers/pause:3.1"),
                       ("onhub", f"{prefix}-hub1")):
        write(src / name / "build" / f"{prefix}-{name}.dockerfile", f"FROM {base}\nRUN true\n")
    write(src / "hookfail" / "build" / "build-pre.sh",
          'echo "preparing"\necho "cannot make it" >&2\nexit 3\n')


PAUSE_BASE = ("base gcr.io/google-containers/pause:3.1 could not be pulled: gcr.io unreachable "
              "(proxy refused the connection)")


@pytest.mark.engine
def test_each_failed_image_says_its_own_reason(
    tmp_path: Path, prefix: str, cleanup: None, docker_client: docker.DockerClient
) -> None:
    src = tmp_path / "src"
    failing_tree(src, prefix)
    result = doit_on(src, "--continue", "-n", "2", "build")
    text = output(result)
    assert result.returncode != 0, text
    assert "Traceback" not in text, text
    images = report(src)["images"]
    reasons = {name.removeprefix(f"{prefix}-"): entry.get("reason")
               for name, entry in images.items()}
    assert reasons == {
        "good": None,
        "runfail": f"{RUN} exited with 1",
        "copyfail": "COPY build/missing.txt: file not found",
        "hub1": f"base docker.io/library/ubuntu:16.04 {BASE}",
        "hub2": f"base docker.io/library/ubuntu:16.04 {BASE}",
        "gcr": PAUSE_BASE,
        "onhub": None,  # not built: its base failed, which says why
        "hookfail": None,  # not built: its hook failed, which says why
    }, text
    # The image that can be built is, under --continue.
    assert images[f"{prefix}-good"]["status"] == "done", text
    docker_client.containers.run(f"{prefix}-good", ["/bin/busybox", "true"], remove=True,
                                 network_mode="none")
    assert images[f"{prefix}-hookfail"]["blocked_by"] == ["prebuild:hookfail"]
    assert images[f"{prefix}-onhub"]["blocked_by"] == [f"build-image:{prefix}-hub1"]
    hook = report(src)["components"]["hookfail"]["prebuild"]
    assert hook["reason"] == "build-pre.sh exited with 3: cannot make it", hook
    # The summary shows each reason beside `failed`; the finished lines too.
    rows = summary_rows(result.stdout, sorted(images))
    for name in ("runfail", "copyfail", "hub1", "gcr"):
        assert rows[f"{prefix}-{name}"].endswith(str(reasons[name])), rows
        assert f"failed build-image:{prefix}-{name}" in result.stdout
    report_command = pai_build("report", "--src", str(src), cwd=tmp_path)
    assert reasons["runfail"] in report_command.stdout, output(report_command)
    # Signal, not preamble: no BuildKit progress and none of doit's failure blocks.
    for noise in ("building with", "[internal] load", "transferring", "#######", "<stdout>:",
                  "<stderr>:", "TaskFailed", "UnmetDependency", "taskid"):
        assert noise not in text, (noise, text)
    # The lines around the first error follow a failed task's line.
    lines = result.stdout.splitlines()
    runfail = next(i for i, line in enumerate(lines) if f"build-image:{prefix}-runfail" in line
                   and line.startswith("["))
    assert lines[runfail + 1:runfail + 3] == [
        f"    #5 [2/2] {RUN}",
        "    #5 ERROR: executor failed running [/bin/busybox false]: exit code: 1",
    ], lines
    # After the summary: the shared cause once, with the images it hit, and the logs.
    logs = src.parent / ".paitasks" / "logs"
    end = next(i for i, line in enumerate(lines) if re.match(r"\d+ images: ", line))
    assert lines[end + 1:] == [
        "4 images failed because 2 external bases could not be pulled from 2 registries:",
        "  gcr.io unreachable (proxy refused the connection):",
        f"    gcr.io/google-containers/pause:3.1: {prefix}-gcr",
        "  registry-1.docker.io unreachable (proxy refused the connection):",
        f"    docker.io/library/ubuntu:16.04: {prefix}-hub1, {prefix}-hub2, {prefix}-onhub",
        f"the whole output of each failed task (6): {logs}/",
    ], lines[end:]
    # Each failed task's whole output is in its log; an unpullable base started no build.
    kept = {path.name: path.read_text() for path in logs.iterdir()}
    assert sorted(kept) == sorted(
        [f"build-image:{prefix}-{name}.log" for name in ("runfail", "copyfail", "hub1", "hub2",
                                                         "gcr")] + ["prebuild:hookfail.log"])
    run_log = kept[f"build-image:{prefix}-runfail.log"]
    assert "#0 building with" in run_log and "[internal] load .dockerignore" in run_log
    assert run_log.startswith(f"build-image:{prefix}-runfail failed: {RUN} exited with 1\n")
    assert "preparing" in kept["prebuild:hookfail.log"]
    assert "cannot make it" in kept["prebuild:hookfail.log"]
    assert kept[f"build-image:{prefix}-gcr.log"] == (
        f"build-image:{prefix}-gcr failed: {PAUSE_BASE}\n\n{PAUSE_BASE}\n")
    assert report(src)["images"][f"{prefix}-gcr"]["log"] == str(
        logs / f"build-image:{prefix}-gcr.log")
    # A run that succeeds leaves no log of what failed before.
    (src / "runfail" / "build" / f"{prefix}-runfail.dockerfile").write_text("FROM scratch\n")
    again = doit_on(src, f"build-image:{prefix}-runfail")
    assert again.returncode == 0, output(again)
    assert not (logs / f"build-image:{prefix}-runfail.log").exists()
    assert (logs / "prebuild:hookfail.log").exists()  # not part of that run: kept


@pytest.mark.engine
def test_verbose_prints_a_failed_build_whole(tmp_path: Path, prefix: str, cleanup: None) -> None:
    src = tmp_path / "src"
    write(src / "runfail" / "build" / f"{prefix}-runfail.dockerfile",
          'FROM scratch\nCOPY build/busybox /bin/busybox\nRUN ["/bin/busybox", "false"]\n')
    shutil.copy2(BUSYBOX, src / "runfail" / "build" / "busybox")
    result = doit_on(src, "build", "verbose=1")
    assert result.returncode != 0
    assert "building with" in result.stdout and "ERROR: failed to solve" in result.stdout
    assert "#######" not in result.stdout, result.stdout
