"""Bad trees end in one clear message, before anything runs, without a traceback.

Each bad tree is checked the way a user meets it: `doit list` with this repository's
dodo.py, and `pai-build build`. Neither may need a Docker engine: planning fails first.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from paitasks.graph import image_order
from paitasks.loader import load_plan
from paitasks.settings import resolve_settings
from tests.support import doit_on, pai_build, temp_folders

OPENPAI = Path(__file__).parent / "resources" / "trees" / "openpai-v0.14"
MARKER = "hook-ran"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def good_component(src: Path) -> None:
    """A component whose pre hook leaves a mark: if it is there, something ran."""
    write(src / "ok" / "build" / "build-pre.sh", f'touch "$PAI_ROOT_DIR/{MARKER}"\n')


# --- the bad trees ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], None]  # writes the tree under src/
    expected: tuple[str, ...]  # what the message must say, in both tools


def dep_loop(src: Path) -> None:
    write(src / "a" / "build" / "component.dep", "b\n")
    write(src / "b" / "build" / "component.dep", "# b needs a\na")
    write(src / "a" / "build" / "a.dockerfile", "FROM scratch\n")


def from_loop(src: Path) -> None:
    write(src / "first" / "build" / "one.dockerfile", "FROM two\n")
    write(src / "second" / "build" / "two.dockerfile", "# syntax note\n\nFROM one:latest\n")


def image_loop(src: Path) -> None:
    write(src / "a" / "build" / "a-one.dockerfile", "FROM a-two\n")
    write(src / "a" / "build" / "a-two.dockerfile", "FROM scratch AS x\nFROM a-one\n")


def unknown_dep(src: Path) -> None:
    write(src / "a" / "build" / "component.dep", "# what a needs\nok\nnosuch\n")


def path_dep(name: str) -> Callable[[Path], None]:
    def make(src: Path) -> None:
        write(src / "x" / "build" / "x.dockerfile", "FROM scratch\n")
        write(src / "a" / "build" / "components.dep", f"ok\n{name}\n")

    return make


def duplicate_image(src: Path) -> None:
    write(src / "a" / "build" / "same.dockerfile", "FROM scratch\n")
    write(src / "b" / "build" / "same.dockerfile", "FROM scratch\n")


def duplicate_in_one_component(src: Path) -> None:
    write(src / "a" / "build" / "same.dockerfile", "FROM scratch\n")
    write(src / "a" / "build" / "same.common.dockerfile", "FROM scratch\n")


def upper_case_image(src: Path) -> None:
    write(src / "a" / "build" / "Base-Image.dockerfile", "FROM scratch\n")


def no_from(src: Path) -> None:
    write(src / "a" / "build" / "a.dockerfile", "# a comment\nRUN true\n")


def only_args(src: Path) -> None:
    write(src / "a" / "build" / "a.dockerfile", "ARG VERSION=1\n")


def unterminated_heredoc(src: Path) -> None:
    write(src / "a" / "build" / "a.dockerfile", "FROM scratch\nRUN <<EOF\necho hi\n")


def unknown_instruction(src: Path) -> None:
    write(src / "a" / "build" / "a.dockerfile", "FROM scratch\nFROBNICATE now\n")


CASES: dict[str, Case] = {
    "loop through component.dep": Case(
        dep_loop,
        ("a -> b -> a", "src/a/build/component.dep:1", "src/b/build/component.dep:2"),
    ),
    "loop through FROM": Case(
        from_loop,
        (
            "first -> second -> first",
            "src/first/build/one.dockerfile:1",
            "src/second/build/two.dockerfile:3",
        ),
    ),
    "loop through FROM within one component": Case(
        image_loop,
        (
            "a-one -> a-two -> a-one",
            "src/a/build/a-one.dockerfile:1",
            "src/a/build/a-two.dockerfile:2",
        ),
    ),
    "unknown name in a dependency file": Case(
        unknown_dep, ("src/a/build/component.dep:3", "nosuch")
    ),
    "parent path in a dependency file": Case(
        path_dep("../x"), ("src/a/build/components.dep:2", "../x")
    ),
    "sub path in a dependency file": Case(
        path_dep("src/x"), ("src/a/build/components.dep:2", "src/x")
    ),
    "hidden name in a dependency file": Case(
        path_dep("./x"), ("src/a/build/components.dep:2", "./x")
    ),
    "two dockerfiles for one image": Case(
        duplicate_image, ("same", "src/a/build/same.dockerfile", "src/b/build/same.dockerfile")
    ),
    "two dockerfiles for one image in one component": Case(
        duplicate_in_one_component,
        ("same", "src/a/build/same.dockerfile", "src/a/build/same.common.dockerfile"),
    ),
    "upper-case image name": Case(
        upper_case_image, ("src/a/build/Base-Image.dockerfile", "Base-Image")
    ),
    "instruction before FROM": Case(no_from, ("src/a/build/a.dockerfile:2", "FROM")),
    "no FROM at all": Case(only_args, ("src/a/build/a.dockerfile", "FROM")),
    "unterminated heredoc": Case(unterminated_heredoc, ("src/a/build/a.dockerfile", "heredoc")),
    "unknown instruction": Case(unknown_instruction, ("src/a/build/a.dockerfile:2", "FROBNICATE")),
}


def assert_clear_failure(
    result: subprocess.CompletedProcess[str], expected: tuple[str, ...]
) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for text in expected:
        assert text in output, f"{text!r} missing from:\n{output}"
    return output


def assert_no_hook_ran(src: Path) -> None:
    """No hook left its mark (see good_component) and no temp folder is in the tree."""
    assert not (src.parent / MARKER).exists(), "a hook ran although the tree is bad"
    assert temp_folders(src) == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_doit_list_reports_a_bad_tree(case: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    good_component(src)
    CASES[case].make(src)
    assert_clear_failure(doit_on(src, "list"), CASES[case].expected)
    assert_no_hook_ran(src)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pai_build_reports_a_bad_tree(case: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    good_component(src)
    CASES[case].make(src)
    result = pai_build("build", "--src", str(src), cwd=src.parent)
    output = assert_clear_failure(result, CASES[case].expected)
    assert "pai-build: error:" in output
    assert_no_hook_ran(src)


def test_missing_source_folder(tmp_path: Path) -> None:
    src = tmp_path / "nosuch" / "src"
    tmp_path.joinpath("nosuch").mkdir()
    for result in (doit_on(src, "list"), pai_build("build", "--src", str(src), cwd=src.parent)):
        output = assert_clear_failure(result, (str(src),))
        assert "does not exist" in output


@pytest.mark.parametrize("tool", ["doit", "pai-build"])
def test_mistyped_source_folder_leaves_nothing_behind(tool: str, tmp_path: Path) -> None:
    """A typo in src= must not create folders (or a state database) at the typo's path."""
    here = tmp_path / "here"
    here.mkdir()
    src = tmp_path / "typo" / "deeper" / "src"
    if tool == "doit":
        result = doit_on(src, "list", cwd=here)
    else:
        result = pai_build("build", "--src", str(src), cwd=here)
    assert_clear_failure(result, (str(src), "does not exist"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]
    assert list(here.iterdir()) == []


def test_source_folder_that_is_a_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_text("not a folder")
    for result in (doit_on(src, "list"), pai_build("build", "--src", str(src), cwd=src.parent)):
        assert_clear_failure(result, (str(src),))


def test_pai_build_unknown_component_suggests_close_matches(tmp_path: Path) -> None:
    src = tmp_path / "src"
    good_component(src)
    write(src / "hadoop-run" / "build" / "hadoop-run.dockerfile", "FROM scratch\n")
    write(src / "hadoop-ai" / "build" / "build-post.sh", "true\n")
    result = pai_build("build", "--src", str(src), "-s", "hadoop-rnu", cwd=src.parent)
    output = assert_clear_failure(result, ("hadoop-rnu",))
    assert "hadoop-run" in output and "did you mean" in output
    assert_no_hook_ran(src)

    result = pai_build("build", "--src", str(src), "-s", "ok", "nosuch", cwd=src.parent)
    output = assert_clear_failure(result, ("nosuch",))
    assert "did you mean" not in output  # nothing is close to it
    assert_no_hook_ran(src)


# --- good trees ---------------------------------------------------------------------------


def test_doit_list_and_info_on_a_good_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "base" / "build" / "base-image.dockerfile", "FROM scratch\n")
    write(src / "lib" / "build" / "build-post.sh", "true\n")
    write(src / "app" / "build" / "app.dockerfile", "FROM base-image\n")
    write(src / "app" / "build" / "component.dep", "lib")

    listed = doit_on(src, "list", "--all")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert {"build", "clean", "build:app", "build:base", "build:lib"} <= names
    assert {"copy-deps:app", "build-image:app", "build-image:base-image"} <= names
    assert "postbuild:lib" in names

    info = doit_on(src, "info", "--no-status", "build:app")
    assert info.returncode == 0, info.stdout + info.stderr
    assert "needs base, lib" in info.stdout
    assert "copy-deps:app" in info.stdout and "build-image:app" in info.stdout
    assert_no_hook_ran(src)


def test_openpai_sample_tree_with_doit(tmp_path: Path) -> None:
    src = tmp_path / "openpai" / "src"
    shutil.copytree(OPENPAI / "src", src, symlinks=True)
    listed = doit_on(src, "list", "--all")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "build:hadoop-run" in listed.stdout
    assert "build-image:drivers-384.111" in listed.stdout
    info = doit_on(src, "info", "--no-status", "build:hadoop-run")
    assert info.returncode == 0, info.stdout + info.stderr
    assert "needs base-image, hadoop-ai" in info.stdout


# --- the OpenPAI v0.14 sample tree --------------------------------------------------------

# `x -> y`: y depends on x
OPENPAI_EDGES = {
    ("base-image", "cleaning-image", "FROM"),
    ("base-image", "hadoop-run", "FROM"),
    ("base-image", "zookeeper", "FROM"),
    ("hadoop-ai", "hadoop-run", "components.dep"),
    ("hadoop-run", "end-to-end-test", "FROM"),
    ("hadoop-run", "yarn-frameworklauncher", "FROM"),
}


def test_openpai_v014_edges_match_the_reference() -> None:
    graph = load_plan(resolve_settings({"src": str(OPENPAI / "src")}, environ={})).graph
    found = {(edge.dependency, edge.dependent, edge.kind) for edge in graph.edges}
    assert found == OPENPAI_EDGES
    pairs = {(x, y) for x, y, _ in OPENPAI_EDGES}
    assert {(dep, name) for name, deps in graph.component_deps.items() for dep in deps} == pairs
    assert graph.copy_deps["hadoop-run"] == ("hadoop-ai",)
    assert sum(len(deps) for deps in graph.copy_deps.values()) == 1
    order = image_order(graph)
    assert sorted(order) == sorted(graph.tree.images)
    for name, uses in graph.image_deps.items():
        for used in uses:
            assert order.index(used) < order.index(name), (used, name)
