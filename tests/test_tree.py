"""Rules of tree discovery: which folders are components, which files are images, dep files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paitasks.errors import PaiTasksError, TreeError
from paitasks.tree import (
    Component,
    DepEntry,
    Image,
    Tree,
    discover,
    display_path,
)

TREES = Path(__file__).parent / "resources" / "trees"


def write(path: Path, content: str | bytes = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def dockerfile(src: Path, component: str, file_name: str, text: str = "FROM scratch\n") -> Path:
    return write(src / component / "build" / file_name, text)


def dep(src: Path, component: str, text: str | bytes, name: str = "component.dep") -> Path:
    return write(src / component / "build" / name, text)


def deps_of(tree: Tree, component: str) -> list[str]:
    return [entry.name for entry in tree.components[component].deps]


# --- the sample trees -------------------------------------------------------------------


def test_openpai_v014_tree() -> None:
    tree = discover(TREES / "openpai-v0.14" / "src")
    src = (TREES / "openpai-v0.14" / "src").absolute()
    assert tree.src == src
    assert tree.root == src.parent
    assert list(tree.components) == sorted(
        [
            "base-image",
            "cleaning-image",
            "drivers",
            "end-to-end-test",
            "hadoop-ai",
            "hadoop-run",
            "paictl-docs",
            "rest-server",
            "watchdog",
            "yarn-frameworklauncher",
            "zookeeper",
        ]
    )
    assert list(tree.images) == sorted(tree.images)
    assert sorted(tree.images) == sorted(
        [
            "base-image",
            "cleaning-image",
            "drivers-384.111",
            "drivers-390.25",
            "drivers-410.73",
            "drivers-418.56",
            "end-to-end-test",
            "hadoop-run",
            "rest-server",
            "watchdog",
            "yarn-frameworklauncher",
            "zookeeper",
        ]
    )
    drivers = tree.components["drivers"]
    assert [image.name for image in drivers.images] == [
        "drivers-384.111",
        "drivers-390.25",
        "drivers-410.73",
        "drivers-418.56",
    ]
    assert all(image.variant is None for image in tree.images.values())
    hadoop_ai = tree.components["hadoop-ai"]
    assert hadoop_ai.images == ()
    assert hadoop_ai.pre_hook == src / "hadoop-ai" / "build" / "build-pre.sh"
    assert hadoop_ai.post_hook is None
    hadoop_run = tree.components["hadoop-run"]
    assert hadoop_run.deps == (DepEntry("hadoop-ai", 1),)  # file has no final newline
    assert hadoop_run.dep_file == src / "hadoop-run" / "build" / "component.dep"
    assert tree.components["yarn-frameworklauncher"].post_hook is not None
    docs = tree.components["paictl-docs"]
    assert docs == Component(
        name="paictl-docs",
        path=src / "paictl-docs",
        images=(),
        deps=(),
        dep_file=None,
        pre_hook=None,
        post_hook=None,
    )
    assert tree.images["base-image"] == Image(
        "base-image", "base-image", src / "base-image" / "build" / "base-image.dockerfile", None
    )


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (None, ["base-image", "job-exporter"]),
        ("common", ["base-image", "job-exporter"]),
        ("yarn", ["base-image", "drivers-390.25", "drivers-418.56", "job-exporter", "rest-server"]),
        ("k8s", ["base-image", "drivers-418.56", "job-exporter", "rest-server"]),
    ],
)
def test_later_variant_tree(variant: str | None, expected: list[str]) -> None:
    tree = discover(TREES / "later-variants" / "src", variant)
    assert list(tree.images) == expected
    assert tree.images["base-image"].variant is None
    for name in expected:
        image = tree.images[name]
        assert image.variant in (None, variant)
        assert image.dockerfile.name.startswith(name + ".")
    if variant == "yarn":
        assert tree.images["drivers-418.56"].dockerfile.name == "drivers-418.56.yarn.dockerfile"
    # BOM, CRLF, comments, blank line, duplicate, and the guide's file name
    assert tree.components["rest-server"].deps == (
        DepEntry("base-image", 2),
        DepEntry("drivers", 4),
    )
    assert tree.components["rest-server"].dep_file is not None
    assert tree.components["rest-server"].dep_file.name == "components.dep"


# --- components -------------------------------------------------------------------------


def test_every_visible_folder_is_a_component(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dockerfile(src, "a", "a.dockerfile")
    (src / "no-build").mkdir(parents=True)
    write(src / "build-is-a-file" / "build", "not a folder")
    (src / "empty-build" / "build").mkdir(parents=True)
    dockerfile(src, ".hidden", "hidden.dockerfile")
    write(src / "a-file.txt", "not a component")
    tree = discover(src)
    assert list(tree.components) == ["a", "build-is-a-file", "empty-build", "no-build"]
    assert list(tree.images) == ["a"]
    for name in ("build-is-a-file", "empty-build", "no-build"):
        component = tree.components[name]
        assert component.images == () and component.deps == () and component.dep_file is None


def test_components_are_sorted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("zeta", "alpha", "Mid", "beta-2", "beta"):
        (src / name).mkdir(parents=True)
    assert list(discover(src).components) == sorted(["zeta", "alpha", "Mid", "beta-2", "beta"])


def test_symlinked_component_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    dockerfile(elsewhere, "linked", "linked.dockerfile")
    src = tmp_path / "src"
    src.mkdir()
    (src / "linked").symlink_to(elsewhere / "linked", target_is_directory=True)
    (src / "dangling").symlink_to(tmp_path / "nowhere")
    tree = discover(src)
    assert list(tree.components) == ["linked"]
    assert tree.components["linked"].path == src / "linked"
    assert tree.images["linked"].dockerfile == src / "linked" / "build" / "linked.dockerfile"


def test_paths_are_absolute_and_root_is_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "repo" / "src"
    dockerfile(src, "a", "a.dockerfile")
    monkeypatch.chdir(tmp_path / "repo")
    tree = discover("src")
    assert tree.src == src
    assert tree.root == tmp_path / "repo"
    assert tree.images["a"].dockerfile.is_absolute()
    assert tree.components["a"].path == src / "a"
    assert tree.display_path(tree.images["a"].dockerfile) == os.path.join(
        "src", "a", "build", "a.dockerfile"
    )


def test_display_path_outside_root() -> None:
    assert display_path(Path("/x/y"), Path("/a")) == "/x/y"
    assert display_path(Path("/a/b/c"), Path("/a")) == os.path.join("b", "c")


def test_missing_src(tmp_path: Path) -> None:
    with pytest.raises(TreeError, match="does not exist") as info:
        discover(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


def test_src_not_a_directory(tmp_path: Path) -> None:
    write(tmp_path / "src", "file")
    with pytest.raises(TreeError, match="not a directory") as info:
        discover(tmp_path / "src")
    assert str(tmp_path / "src") in str(info.value)


def test_empty_src_is_an_empty_tree(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    tree = discover(tmp_path / "src")
    assert dict(tree.components) == {} and dict(tree.images) == {}


def test_unreadable_build_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    build = dockerfile(src, "a", "a.dockerfile").parent
    real_scandir = os.scandir

    def scandir(path: Path) -> object:
        if Path(path) == build:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(TreeError, match=r"^cannot read src/a/build: Permission denied$"):
        discover(src)


def test_unreadable_src(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def scandir(path: Path) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(TreeError, match=r"cannot read source folder .*: Permission denied"):
        discover(tmp_path)


# --- images -----------------------------------------------------------------------------


def test_hooks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    pre = write(src / "a" / "build" / "build-pre.sh", "#!/bin/sh\n")
    post = write(src / "a" / "build" / "build-post.sh", "#!/bin/sh\n")
    (src / "b" / "build" / "build-pre.sh").mkdir(parents=True)  # a folder is no hook
    tree = discover(src)
    assert tree.components["a"].pre_hook == pre
    assert tree.components["a"].post_hook == post
    assert tree.components["b"].pre_hook is None


def test_image_file_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dockerfile(src, "c", "plain.dockerfile")
    dockerfile(src, "c", "always.common.dockerfile")
    dockerfile(src, "c", "only-k8s.k8s.dockerfile")
    dockerfile(src, "c", "only-yarn.yarn.dockerfile")
    dockerfile(src, "c", "drivers-384.111.dockerfile")
    dockerfile(src, "c", "drivers-390.25.yarn.dockerfile")
    dockerfile(src, "c", "not-an-image.txt")
    dockerfile(src, "c", "Dockerfile")
    dockerfile(src, "c", "upper.Dockerfile")
    dockerfile(src, "c", ".hidden.dockerfile")
    dockerfile(src, "c", ".dockerfile")
    plain = discover(src)
    assert list(plain.images) == ["always", "drivers-384.111", "plain"]
    assert all(image.variant is None for image in plain.images.values())
    k8s = discover(src, "k8s")
    assert list(k8s.images) == ["always", "drivers-384.111", "only-k8s", "plain"]
    assert k8s.images["only-k8s"].variant == "k8s"
    yarn = discover(src, "yarn")
    assert list(yarn.images) == [
        "always",
        "drivers-384.111",
        "drivers-390.25",
        "only-yarn",
        "plain",
    ]
    assert yarn.images["drivers-390.25"].variant == "yarn"
    assert yarn.images["drivers-390.25"].component == "c"
    assert [image.name for image in yarn.components["c"].images] == list(yarn.images)


@pytest.mark.parametrize(
    "file_name",
    ["a.b.dockerfile.dockerfile", "a.b.c.dockerfile", "a.k8s.yarn.dockerfile", "a.v1.2.dockerfile"],
)
def test_ambiguous_image_file_names(tmp_path: Path, file_name: str) -> None:
    src = tmp_path / "src"
    dockerfile(src, "c", file_name)
    with pytest.raises(TreeError, match="cannot tell the image name") as info:
        discover(src, "k8s")
    assert f"src/c/build/{file_name}" in str(info.value)


@pytest.mark.parametrize("file_name", ["a..dockerfile", "a..k8s.dockerfile", "a.1..dockerfile"])
def test_empty_part_in_image_file_name(tmp_path: Path, file_name: str) -> None:
    src = tmp_path / "src"
    dockerfile(src, "c", file_name)
    with pytest.raises(TreeError, match="empty part") as info:
        discover(src)
    assert file_name in str(info.value)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "x.dockerfile"), ("a", "x.common.dockerfile")),
        (("a", "x.dockerfile"), ("b", "x.dockerfile")),
        (("a", "x.common.dockerfile"), ("b", "x.k8s.dockerfile")),
        (("a", "x.k8s.dockerfile"), ("a", "x.dockerfile")),
    ],
)
def test_duplicate_image_names(
    tmp_path: Path, first: tuple[str, str], second: tuple[str, str]
) -> None:
    src = tmp_path / "src"
    dockerfile(src, *first)
    dockerfile(src, *second)
    with pytest.raises(TreeError, match="image 'x' is built by two dockerfiles") as info:
        discover(src, "k8s")
    for component, file_name in (first, second):
        assert f"src/{component}/build/{file_name}" in str(info.value)


def test_same_image_in_two_variants_is_fine(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dockerfile(src, "a", "x.k8s.dockerfile")
    dockerfile(src, "a", "x.yarn.dockerfile")
    assert discover(src, "k8s").images["x"].dockerfile.name == "x.k8s.dockerfile"
    assert discover(src, "yarn").images["x"].dockerfile.name == "x.yarn.dockerfile"
    assert dict(discover(src).images) == {}


@pytest.mark.parametrize(
    "file_name", ["Upper.dockerfile", "with space.dockerfile", "-dash.dockerfile", "a$.dockerfile"]
)
def test_invalid_image_names(tmp_path: Path, file_name: str) -> None:
    src = tmp_path / "src"
    dockerfile(src, "c", file_name)
    with pytest.raises(TreeError, match="not a valid docker image name") as info:
        discover(src)
    assert f"src/c/build/{file_name}" in str(info.value)


def test_too_long_image_name(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dockerfile(src, "c", "a" * 128 + ".dockerfile")
    dockerfile(src, "d", "b" * 129 + ".dockerfile")
    with pytest.raises(TreeError, match=r"b{129}"):
        discover(src)


def test_image_names_follow_the_reference_rule(tmp_path: Path) -> None:
    # One rule for the project: paitasks.reference.is_valid_image_name (tested there).
    src = tmp_path / "src"
    for name in ("a1_b__c-d--e", "drivers-384.111", "g" * 64):
        dockerfile(src, "c", f"{name}.dockerfile")
    assert sorted(discover(src).images) == sorted(["a1_b__c-d--e", "drivers-384.111", "g" * 64])
    dockerfile(src, "d", "f" * 64 + ".dockerfile")  # an image id, not a name
    with pytest.raises(TreeError, match="not a valid docker image name"):
        discover(src)


def test_dockerfile_that_is_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "c" / "build" / "x.dockerfile").mkdir(parents=True)
    with pytest.raises(TreeError, match=r"src/c/build/x.dockerfile is not a file"):
        discover(src)


def test_symlinked_dockerfile(tmp_path: Path) -> None:
    src = tmp_path / "src"
    target = write(tmp_path / "shared.dockerfile", "FROM scratch\n")
    (src / "c" / "build").mkdir(parents=True)
    (src / "c" / "build" / "x.dockerfile").symlink_to(target)
    assert discover(src).images["x"].dockerfile == src / "c" / "build" / "x.dockerfile"


# --- dependency files -------------------------------------------------------------------


def test_dep_file_format(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a", "b", "c", "d", "e"):
        (src / name).mkdir(parents=True)
    dep(
        src,
        "a",
        b"\xef\xbb\xbf# leading comment\r\n\r\n  b  \r\nc # trailing comment\r\n"
        b"\t# indented comment\r\nb\r\nd\t#tab comment\r\ne",
    )
    tree = discover(src)
    assert tree.components["a"].deps == (
        DepEntry("b", 3),
        DepEntry("c", 4),
        DepEntry("d", 7),
        DepEntry("e", 8),
    )
    assert tree.components["a"].dep_file == src / "a" / "build" / "component.dep"


def test_dep_file_old_mac_line_ends(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        (src / name).mkdir(parents=True)
    dep(src, "a", "b\rc\r")
    assert discover(src).components["a"].deps == (DepEntry("b", 1), DepEntry("c", 2))


def test_dep_file_guide_spelling(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    path = dep(src, "a", "b\n", name="components.dep")
    tree = discover(src)
    assert deps_of(tree, "a") == ["b"]
    assert tree.components["a"].dep_file == path


def test_empty_dep_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dep(src, "a", "\n# nothing\n")
    component = discover(src).components["a"]
    assert component.deps == ()
    assert component.dep_file is not None


def test_both_dep_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    dep(src, "a", "b\n", name="component.dep")
    dep(src, "a", "b\n", name="components.dep")
    with pytest.raises(TreeError) as info:
        discover(src)
    message = str(info.value)
    assert "src/a/build/component.dep" in message
    assert "src/a/build/components.dep" in message


def test_hash_inside_a_name_is_not_a_comment(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "c#sharp").mkdir(parents=True)
    dep(src, "a", "c#sharp\n")
    assert deps_of(discover(src), "a") == ["c#sharp"]


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("x/y", "'x/y'"),
        ("../b", "'../b'"),
        ("/abs/b", "'/abs/b'"),
        ("x\\y", "'x\\\\y'"),
        (".", "'.'"),
        ("..", "'..'"),
        (".hidden", "'.hidden'"),
        ("b c", "'b c'"),
        ("b\u00a0c", "'b\\xa0c'"),  # repr shows the invisible space
    ],
)
def test_not_a_plain_component_name(tmp_path: Path, line: str, shown: str) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    (src / ".hidden").mkdir(parents=True)
    dep(src, "a", f"b\n\n{line}\n")
    with pytest.raises(TreeError) as info:
        discover(src)
    assert str(info.value) == f"src/a/build/component.dep:3: {shown} is not a plain component name"


def test_unknown_component(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    dep(src, "a", "b\nbb\n")
    with pytest.raises(TreeError) as info:
        discover(src)
    assert str(info.value) == (
        f"src/a/build/component.dep:2: component 'bb' does not exist under {src}"
    )


def test_names_are_case_sensitive(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    dep(src, "a", "B\n")
    with pytest.raises(TreeError, match="component 'B' does not exist"):
        discover(src)


def test_component_lists_itself(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dep(src, "a", "# me\na\n")
    with pytest.raises(
        TreeError, match=r"^src/a/build/component.dep:2: component 'a' lists itself$"
    ):
        discover(src)


def test_undecodable_dep_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    dep(src, "a", b"b\n\xff\xfe\n")
    with pytest.raises(TreeError, match=r"^src/a/build/component.dep:2: not valid UTF-8"):
        discover(src)


def test_dep_file_that_is_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "build" / "component.dep").mkdir(parents=True)
    with pytest.raises(TreeError, match=r"src/a/build/component.dep is not a file"):
        discover(src)


def test_dangling_dep_file_symlink(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "build").mkdir(parents=True)
    (src / "a" / "build" / "component.dep").symlink_to(tmp_path / "gone")
    with pytest.raises(TreeError, match=r"src/a/build/component.dep is not a file"):
        discover(src)


def test_unreadable_dep_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    dep(src, "a", "")

    def read_bytes(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(
        TreeError, match=r"^cannot read src/a/build/component.dep: Permission denied$"
    ):
        discover(src)


# --- scale ------------------------------------------------------------------------------


def test_five_thousand_components(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    count = 5000
    for i in range(count):
        build = src / f"c{i:04d}" / "build"
        build.mkdir(parents=True)
        (build / f"img{i:04d}.dockerfile").write_text("FROM scratch\n")
        if i:
            (build / "component.dep").write_text(f"c{i - 1:04d}\n")
    tree = discover(src)
    assert len(tree.components) == count and len(tree.images) == count
    assert deps_of(tree, "c4999") == ["c4998"]


# -- fuzzing: random bytes and random layouts never escape as anything but TreeError ----


_entry_names = st.sampled_from(
    ["a", "b", "c", "build", ".hidden", "x.dockerfile", "component.dep", "components.dep",
     "build-pre.sh", "A.dockerfile", "a.k8s.dockerfile", "a.common.dockerfile", "..", "a b"]
)


FUZZ = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings(FUZZ, max_examples=150)
@given(data=st.binary(max_size=300), name=st.sampled_from(["component.dep", "components.dep"]))
def test_random_dependency_file_bytes_parse_or_raise_tree_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, name: str
) -> None:
    src = tmp_path_factory.mktemp("fuzz") / "src"
    for component in ("a", "b", "c"):
        (src / component / "build").mkdir(parents=True)
    (src / "a" / "build" / name).write_bytes(data)
    try:
        tree = discover(src)
    except PaiTasksError as exc:
        assert isinstance(exc, TreeError)
        assert "component.dep" in str(exc) or "components.dep" in str(exc)
    else:
        assert {entry.name for entry in tree.components["a"].deps} <= {"b", "c"}


@settings(FUZZ, max_examples=100)
@given(
    layout=st.lists(
        st.tuples(_entry_names, _entry_names, st.booleans(), st.binary(max_size=40)),
        max_size=12,
    )
)
def test_random_layouts_discover_or_raise_tree_error(
    tmp_path_factory: pytest.TempPathFactory, layout: list[tuple[str, str, bool, bytes]]
) -> None:
    src = tmp_path_factory.mktemp("layout") / "src"
    src.mkdir()
    for component, entry, is_folder, data in layout:
        if component in ("..", "build") or "/" in component:
            continue
        folder = src / component / "build"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / entry
        if entry == "..":
            continue
        if target.exists():
            continue
        if is_folder:
            target.mkdir()
        else:
            target.write_bytes(data)
    try:
        tree = discover(src)
    except PaiTasksError as exc:
        assert isinstance(exc, TreeError)
    else:
        for image in tree.images.values():
            assert image.dockerfile.is_file()
