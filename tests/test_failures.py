"""The one-line reason of a failure (failures.py), read from what the build tools really
print: tests/resources/failures/ holds the output of dockerd 20.10's BuildKit (0.8), of
scripts/dev-engine's buildkitd (0.13) and of the classic builder for a failing RUN, a
missing COPY source and a base that cannot be pulled (the engine's proxy refuses)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paitasks.engine import TAIL_LINES, BuildRequest, build_failed
from paitasks.errors import HookError
from paitasks.failures import reason
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


def test_a_one_line_error_is_its_own_reason() -> None:
    message = "image x: registry 127.0.0.1:5000 failed: PUT ns/x:v1 failed after 5 tries: HTTP 503"
    assert reason(message) == message


@given(st.text())
def test_any_message_has_a_one_line_reason(message: str) -> None:
    found = reason(message)
    assert found and "\n" not in found


# -- a real tree whose images fail for different reasons ---------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def failing_tree(src: Path, prefix: str) -> None:
    """One image that builds; one each whose RUN fails, whose COPY source is missing,
    whose external base cannot be pulled, and whose component's hook fails."""
    steps = {
        "good": 'COPY build/busybox /bin/busybox\nRUN ["/bin/busybox", "true"]\n',
        "runfail": 'COPY build/busybox /bin/busybox\nRUN ["/bin/busybox", "false"]\n',
        "copyfail": "COPY build/missing.txt /x\n",
        "hookfail": "COPY build/busybox /bin/busybox\n",
    }
    for name, text in steps.items():
        write(src / name / "build" / f"{prefix}-{name}.dockerfile", f"FROM scratch\n{text}")
        shutil.copy2(BUSYBOX, src / name / "build" / "busybox")
    write(src / "basefail" / "build" / f"{prefix}-basefail.dockerfile",
          "FROM ubuntu:16.04\nRUN true\n")
    write(src / "hookfail" / "build" / "build-pre.sh",
          'echo "preparing"\necho "cannot make it" >&2\nexit 3\n')


@pytest.mark.engine
def test_each_failed_image_says_its_own_reason(tmp_path: Path, prefix: str, cleanup: None) -> None:
    src = tmp_path / "src"
    failing_tree(src, prefix)
    result = doit_on(src, "--continue", "-n", "2", "build")
    text = output(result)
    assert result.returncode != 0, text
    assert "Traceback" not in text, text
    images = report(src)["images"]
    reasons = {name.removeprefix(f"{prefix}-"): entry.get("reason")
               for name, entry in images.items()}
    assert images[f"{prefix}-good"]["status"] == "done", text
    assert reasons == {
        "good": None,
        "runfail": f"{RUN} exited with 1",
        "copyfail": "COPY build/missing.txt: file not found",
        "basefail": f"base docker.io/library/ubuntu:16.04 {BASE}",
        "hookfail": None,  # not built: its hook failed, which says why
    }, text
    assert images[f"{prefix}-hookfail"]["blocked_by"] == ["prebuild:hookfail"]
    hook = report(src)["components"]["hookfail"]["prebuild"]
    assert hook["reason"] == "build-pre.sh exited with 3: cannot make it", hook
    # The summary shows each reason beside `failed`; the finished lines too.
    rows = summary_rows(result.stdout, sorted(images))
    for name in ("runfail", "copyfail", "basefail"):
        assert rows[f"{prefix}-{name}"].endswith(str(reasons[name])), rows
        assert f"failed build-image:{prefix}-{name}" in result.stdout
    report_command = pai_build("report", "--src", str(src), cwd=tmp_path)
    assert reasons["runfail"] in report_command.stdout, output(report_command)
