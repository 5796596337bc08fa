"""Edges, loops, order and selection of the dependency graph."""

from __future__ import annotations

import graphlib
import itertools
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from paitasks.dockerfile import ImageRef
from paitasks.errors import GraphError
from paitasks.graph import (
    Edge,
    Graph,
    build_graph,
    image_order,
    select,
    unknown_message,
)
from paitasks.tree import Component, DepEntry, Image, Tree, discover

TREES = Path(__file__).parent / "resources" / "trees"
ROOT = Path("/repo")


def make_tree(spec: Mapping[str, tuple[Sequence[str], Sequence[str]]]) -> Tree:
    """An in-memory tree: component -> (its images, its dep-file entries)."""
    src = ROOT / "src"
    components: dict[str, Component] = {}
    images: dict[str, Image] = {}
    for name in sorted(spec):
        image_names, dep_names = spec[name]
        build = src / name / "build"
        own = tuple(
            Image(image, name, build / f"{image}.dockerfile", None) for image in sorted(image_names)
        )
        images.update((image.name, image) for image in own)
        components[name] = Component(
            name=name,
            path=src / name,
            images=own,
            deps=tuple(DepEntry(dep, line) for line, dep in enumerate(dep_names, start=1)),
            dep_file=build / "component.dep" if dep_names else None,
            pre_hook=None,
            post_hook=None,
        )
    return Tree(
        src=src,
        root=ROOT,
        components=MappingProxyType(components),
        images=MappingProxyType(dict(sorted(images.items()))),
    )


def from_refs(*references: str) -> list[ImageRef]:
    return [ImageRef(reference, line, "FROM") for line, reference in enumerate(references, 1)]


def scan_from_lines(tree: Tree) -> dict[str, list[ImageRef]]:
    """FROM lines of the sample trees' tiny dockerfiles, skipping stage names."""
    refs: dict[str, list[ImageRef]] = {}
    for image in tree.images.values():
        stages: set[str] = set()
        found: list[ImageRef] = []
        lines = image.dockerfile.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            words = line.split()
            if words[:1] == ["FROM"]:
                if words[1] not in stages:
                    found.append(ImageRef(words[1], number, "FROM"))
                if len(words) == 4 and words[2].lower() == "as":
                    stages.add(words[3])
        refs[image.name] = found
    return refs


def loop_path(message: str) -> list[str]:
    first = message.splitlines()[0]
    match = re.fullmatch(r"Dependency loop detected(?: between images)?: (.*)", first)
    assert match, first
    return match.group(1).split(" -> ")


# --- the sample trees -------------------------------------------------------------------


def test_openpai_v014_graph() -> None:
    tree = discover(TREES / "openpai-v0.14" / "src")
    graph = build_graph(tree, scan_from_lines(tree))
    assert dict(graph.component_deps) == {
        "base-image": (),
        "cleaning-image": ("base-image",),
        "drivers": (),
        "end-to-end-test": ("hadoop-run",),
        "hadoop-ai": (),
        "hadoop-run": ("base-image", "hadoop-ai"),
        "paictl-docs": (),
        "rest-server": (),
        "watchdog": (),
        "yarn-frameworklauncher": ("hadoop-run",),
        "zookeeper": ("base-image",),
    }
    assert graph.copy_deps["hadoop-run"] == ("hadoop-ai",)
    assert graph.copy_deps["end-to-end-test"] == ()
    order = image_order(graph)
    assert sorted(order) == sorted(tree.images)
    assert order.index("base-image") < order.index("hadoop-run") < order.index("end-to-end-test")
    assert select(graph, ["end-to-end-test"]) == {
        "end-to-end-test",
        "hadoop-run",
        "hadoop-ai",
        "base-image",
    }
    assert select(graph, ["zookeeper", "drivers"]) == {"zookeeper", "base-image", "drivers"}
    src = tree.src
    assert (
        Edge("hadoop-run", "hadoop-ai", "components.dep", src / "hadoop-run/build/component.dep", 1)
        in graph.edges
    )
    assert (
        Edge(
            "zookeeper",
            "base-image",
            "FROM",
            src / "zookeeper/build/zookeeper.dockerfile",
            1,
            image="zookeeper",
            used_image="base-image",
            reference="base-image",
        )
        in graph.edges
    )


def test_later_variant_graph_with_mount_and_copy() -> None:
    tree = discover(TREES / "later-variants" / "src", "k8s")
    refs = scan_from_lines(tree)
    refs["job-exporter"] = [
        ImageRef("golang:1.20", 2, "FROM"),
        ImageRef("base-image", 3, "RUN --mount"),
        ImageRef("docker.io/library/drivers-418.56:latest", 5, "COPY --from"),
    ]
    graph = build_graph(tree, refs)
    assert graph.component_deps["job-exporter"] == ("base-image", "drivers")
    assert graph.component_deps["rest-server"] == ("base-image", "drivers")
    assert graph.copy_deps["rest-server"] == ("base-image", "drivers")
    assert graph.copy_deps["job-exporter"] == ()
    assert graph.image_deps["job-exporter"] == ("base-image", "drivers-418.56")
    kinds = {(e.dependent, e.dependency, e.kind) for e in graph.edges}
    assert ("job-exporter", "base-image", "RUN --mount") in kinds
    assert ("job-exporter", "drivers", "COPY --from") in kinds
    copy = next(e for e in graph.edges if e.kind == "COPY --from")
    assert copy.used_image == "drivers-418.56"
    assert copy.reference == "docker.io/library/drivers-418.56:latest"
    assert copy.describe(tree.root) == (
        "src/job-exporter/build/job-exporter.common.dockerfile:5 "
        "(COPY --from docker.io/library/drivers-418.56:latest)"
    )
    assert image_order(graph) == ["base-image", "drivers-418.56", "job-exporter", "rest-server"]


# --- edges ------------------------------------------------------------------------------


def test_edges_and_deps() -> None:
    tree = make_tree(
        {
            "base": (["base-image", "base-tools"], []),
            "app": (["app", "app-debug"], ["lib", "base"]),
            "lib": ([], []),
            "solo": (["solo"], []),
        }
    )
    refs = {
        "base-tools": from_refs("base-image"),  # same component: orders images only
        "app": from_refs("ubuntu:16.04", "base-image", "base-tools:latest"),
        "app-debug": from_refs("app"),
        "solo": from_refs("base-image:1.0", "someone/base-image", "lib"),  # none in the tree
    }
    graph = build_graph(tree, refs)
    assert dict(graph.component_deps) == {
        "app": ("base", "lib"),
        "base": (),
        "lib": (),
        "solo": (),
    }
    assert dict(graph.copy_deps) == {"app": ("lib", "base"), "base": (), "lib": (), "solo": ()}
    assert dict(graph.image_deps) == {
        "app": ("base-image", "base-tools"),
        "app-debug": ("app",),
        "base-image": (),
        "base-tools": ("base-image",),
        "solo": (),
    }
    build = ROOT / "src"
    assert graph.edges == (
        Edge("app", "lib", "components.dep", build / "app/build/component.dep", 1),
        Edge("app", "base", "components.dep", build / "app/build/component.dep", 2),
        Edge(
            "app",
            "base",
            "FROM",
            build / "app/build/app.dockerfile",
            2,
            "app",
            "base-image",
            "base-image",
        ),
        Edge(
            "app",
            "base",
            "FROM",
            build / "app/build/app.dockerfile",
            3,
            "app",
            "base-tools",
            "base-tools:latest",
        ),
    )
    inner = [e for e in graph.image_edges if e.dependent == e.dependency]
    assert [(e.image, e.used_image) for e in inner] == [
        ("app-debug", "app"),
        ("base-tools", "base-image"),
    ]
    assert image_order(graph) == ["base-image", "base-tools", "app", "app-debug", "solo"]


def test_dep_file_and_from_to_the_same_component_count_once() -> None:
    tree = make_tree({"a": (["a"], ["b"]), "b": (["b"], [])})
    graph = build_graph(tree, {"a": from_refs("b")})
    assert graph.component_deps["a"] == ("b",)
    assert len(graph.edges) == 2


def test_refs_for_unknown_image_is_a_caller_bug() -> None:
    tree = make_tree({"a": (["a"], [])})
    with pytest.raises(ValueError, match="ghost"):
        build_graph(tree, {"ghost": from_refs("a")})


def test_references_resolve_by_the_one_reference_rule() -> None:
    # Every spelling docker resolves to `b:latest` is an edge; other tags and orgs are not.
    same = ("b", "b:latest", "library/b", "docker.io/library/b:latest", "index.docker.io/b")
    other = ("b:1.0", "acme/b", "docker.io/acme/b", "localhost/b", f"b@sha256:{'a' * 64}")
    tree = make_tree({name: ([name], []) for name in ("a", "b", *(f"o{i}" for i in range(5)))})
    refs = {"a": from_refs(*same)} | {f"o{i}": from_refs(text) for i, text in enumerate(other)}
    graph = build_graph(tree, refs)
    assert [edge.reference for edge in graph.edges] == list(same)
    assert {edge.used_image for edge in graph.edges} == {"b"}
    assert all(graph.image_deps[f"o{i}"] == () for i in range(5))


def test_empty_tree() -> None:
    graph = build_graph(make_tree({}), {})
    assert image_order(graph) == []
    assert select(graph, []) == set()


def test_edge_describe() -> None:
    dep = Edge("a", "b", "components.dep", ROOT / "src/a/build/component.dep", 2)
    assert dep.describe(ROOT) == "src/a/build/component.dep:2"
    assert dep.describe(Path("/elsewhere")) == "/repo/src/a/build/component.dep:2"
    copy = Edge("a", "b", "COPY --from", ROOT / "src/a/build/a.dockerfile", 4, "a", "b")
    assert copy.describe(ROOT) == "src/a/build/a.dockerfile:4 (COPY --from b)"


# --- loops ------------------------------------------------------------------------------


def test_loop_message_mixed_kinds() -> None:
    tree = make_tree({"a": (["x"], ["c", "b"]), "b": (["b"], []), "c": ([], [])})
    with pytest.raises(GraphError) as info:
        build_graph(tree, {"b": from_refs("ubuntu", "x")})
    assert str(info.value) == (
        "Dependency loop detected: a -> b -> a\n"
        "  a -> b: src/a/build/component.dep:2\n"
        "  b -> a: src/b/build/b.dockerfile:2 (FROM x)"
    )


def test_loop_message_lists_every_edge_of_a_step() -> None:
    tree = make_tree({"a": (["a"], ["b"]), "b": (["b"], ["a"])})
    with pytest.raises(GraphError) as info:
        build_graph(tree, {"a": from_refs("b")})
    assert str(info.value) == (
        "Dependency loop detected: a -> b -> a\n"
        "  a -> b: src/a/build/component.dep:1; src/a/build/a.dockerfile:1 (FROM b)\n"
        "  b -> a: src/b/build/component.dep:1"
    )


def test_loop_is_printed_from_its_smallest_name_every_time() -> None:
    spec: dict[str, tuple[list[str], list[str]]] = {
        "d": ([], ["b"]),
        "b": ([], ["c"]),
        "c": ([], ["d"]),
        "a": ([], ["d"]),
    }
    messages = set()
    for order in (spec, dict(reversed(list(spec.items())))):
        with pytest.raises(GraphError) as info:
            build_graph(make_tree(order), {})
        messages.add(str(info.value))
    assert len(messages) == 1
    assert messages.pop().splitlines()[0] == "Dependency loop detected: b -> c -> d -> b"


def test_of_several_loops_the_first_met_walking_names_in_order_is_reported() -> None:
    # a -> c -> a and a -> c -> b -> a: from a, c is needed, and c needs a first.
    tree = make_tree({"a": ([], ["c"]), "b": ([], ["a"]), "c": ([], ["b", "a"])})
    with pytest.raises(GraphError) as info:
        build_graph(tree, {})
    assert loop_path(str(info.value)) == ["a", "c", "a"]


def test_image_referencing_itself() -> None:
    tree = make_tree({"a": (["a"], [])})
    with pytest.raises(GraphError) as info:
        build_graph(tree, {"a": from_refs("a:latest")})
    assert str(info.value) == (
        "Dependency loop detected between images: a -> a\n"
        "  a -> a: src/a/build/a.dockerfile:1 (FROM a:latest)"
    )


def test_image_loop_inside_one_component() -> None:
    tree = make_tree({"c": (["x", "y"], [])})
    refs = {"x": [ImageRef("y", 3, "COPY --from")], "y": [ImageRef("x", 1, "RUN --mount")]}
    with pytest.raises(GraphError) as info:
        build_graph(tree, refs)
    assert str(info.value) == (
        "Dependency loop detected between images: x -> y -> x\n"
        "  x -> y: src/c/build/x.dockerfile:3 (COPY --from y)\n"
        "  y -> x: src/c/build/y.dockerfile:1 (RUN --mount x)"
    )


def test_order_of_a_hand_made_cyclic_graph_fails_cleanly() -> None:
    tree = make_tree({"c": (["a", "b"], [])})
    images = MappingProxyType({"a": ("b",), "b": ("a",)})
    graph = Graph(tree, MappingProxyType({"c": ()}), MappingProxyType({"c": ()}), images, ())
    with pytest.raises(GraphError, match="a -> b -> a"):
        image_order(graph)


# --- selection --------------------------------------------------------------------------


def test_select() -> None:
    tree = make_tree(
        {"a": ([], ["b"]), "b": ([], ["c"]), "c": ([], []), "d": ([], ["c"]), "e": ([], [])}
    )
    graph = build_graph(tree, {})
    assert select(graph, ["a"]) == {"a", "b", "c"}
    assert select(graph, ["d", "e", "d"]) == {"c", "d", "e"}
    assert select(graph, iter(["c"])) == {"c"}
    assert select(graph, "a") == {"a", "b", "c"}  # one name, not its letters
    assert select(graph, []) == set()


def test_select_unknown_names() -> None:
    tree = make_tree({name: ([], []) for name in ("base-image", "hadoop-run", "rest-server")})
    graph = build_graph(tree, {})
    with pytest.raises(GraphError) as info:
        select(graph, ["hadoop-run", "bsae-image", "zzz", "Rest-Server"])
    assert str(info.value) == (
        "Unknown components: 'bsae-image' (did you mean 'base-image'?), 'zzz', "
        "'Rest-Server' (did you mean 'rest-server'?)"
    )
    with pytest.raises(GraphError, match=r"^Unknown component: 'x'$"):
        select(graph, ["x"])


# --- scale ------------------------------------------------------------------------------


CHAIN = 5000


def chain_tree(close_loop: bool) -> tuple[Tree, dict[str, list[ImageRef]]]:
    """c0000 <- c0001 <- ... by dep files for even steps and FROM for odd ones."""
    spec: dict[str, tuple[list[str], list[str]]] = {}
    refs: dict[str, list[ImageRef]] = {}
    for i in range(CHAIN):
        name = f"c{i:04d}"
        previous = f"c{(i - 1) % CHAIN:04d}"
        has_previous = i > 0 or close_loop
        by_dep = has_previous and i % 2 == 0
        spec[name] = ([f"i{i:04d}"], [previous] if by_dep else [])
        if has_previous and not by_dep:
            refs[f"i{i:04d}"] = from_refs(f"i{(i - 1) % CHAIN:04d}")
    return make_tree(spec), refs


def test_five_thousand_chain_plans_without_recursion() -> None:
    tree, refs = chain_tree(close_loop=False)
    limit = sys.getrecursionlimit()
    graph = build_graph(tree, refs)
    images = image_order(graph)
    chosen = select(graph, ["c4999"])
    assert images == [f"i{i:04d}" for i in range(CHAIN)]
    assert len(chosen) == CHAIN
    assert sys.getrecursionlimit() == limit


def test_five_thousand_loop_is_reported_without_recursion() -> None:
    tree, refs = chain_tree(close_loop=True)
    with pytest.raises(GraphError) as info:
        build_graph(tree, refs)
    path = loop_path(str(info.value))
    assert len(path) == CHAIN + 1
    assert path[0] == path[-1] == "c0000"
    assert len(str(info.value).splitlines()) == CHAIN + 1


# --- properties -------------------------------------------------------------------------


@st.composite
def trees_and_refs(
    draw: st.DrawFn, acyclic: bool
) -> tuple[Tree, dict[str, list[ImageRef]], set[tuple[str, str]], set[tuple[str, str]]]:
    """A random tree with dep-file and FROM edges, and the edges it should produce.

    Acyclic: component i only needs components before it, image k only images before it,
    and names are shuffled so alphabetical order says nothing about dependency order.
    """
    count = draw(st.integers(1, 8))
    names = draw(st.permutations([f"c{i}" for i in range(count)]))
    owners: list[int] = []  # image position -> component position, grouped by component
    for position in range(count):
        owners.extend([position] * draw(st.integers(0, 3)))
    image_names = draw(st.permutations([f"m{k}" for k in range(len(owners))]))

    spec: dict[str, tuple[list[str], list[str]]] = {}
    component_edges: set[tuple[str, str]] = set()
    for position, name in enumerate(names):
        allowed = names[:position] if acyclic else [n for n in names if n != name]
        deps = draw(st.lists(st.sampled_from(allowed), max_size=3)) if allowed else []
        own = [image_names[k] for k, owner in enumerate(owners) if owner == position]
        spec[name] = (own, list(dict.fromkeys(deps)))
        component_edges.update((name, dep) for dep in deps)

    refs: dict[str, list[ImageRef]] = {}
    image_edges: set[tuple[str, str]] = set()
    for k, image in enumerate(image_names):
        allowed = list(image_names[:k]) if acyclic else list(image_names)
        used = draw(st.lists(st.sampled_from(allowed), max_size=3)) if allowed else []
        noise = draw(st.lists(st.sampled_from(["ubuntu:16.04", "x/y", "m0:1.0"]), max_size=2))
        references = [*used, *noise]
        draw(st.randoms()).shuffle(references)
        refs[image] = from_refs(*references)
        for target in used:
            image_edges.add((image, target))
            mine, theirs = names[owners[k]], names[owners[image_names.index(target)]]
            if mine != theirs:
                component_edges.add((mine, theirs))
    return make_tree(spec), refs, component_edges, image_edges


def reachable(edges: set[tuple[str, str]], start: set[str]) -> set[str]:
    seen = set(start)
    frontier = list(start)
    while frontier:
        node = frontier.pop()
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                frontier.append(b)
    return seen


def has_cycle(nodes: Sequence[str], edges: set[tuple[str, str]]) -> bool:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for node in nodes:
        sorter.add(node)
    for a, b in edges:
        sorter.add(a, b)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return True
    return False


def check_orders(graph: Graph, comp: set[tuple[str, str]], imgs: set[tuple[str, str]]) -> None:
    images = image_order(graph)
    assert sorted(images) == sorted(graph.tree.images)
    at = {name: i for i, name in enumerate(images)}
    assert all(at[b] < at[a] for a, b in imgs)
    assert {(a, b) for a, deps in graph.component_deps.items() for b in deps} == comp
    assert {(a, b) for a, deps in graph.image_deps.items() for b in deps} == imgs
    assert {(e.dependent, e.dependency) for e in graph.edges} == comp


@settings(max_examples=200, deadline=None)
@given(case=trees_and_refs(acyclic=True), data=st.data())
def test_property_dag_orders_and_selection(
    case: tuple[Tree, dict[str, list[ImageRef]], set[tuple[str, str]], set[tuple[str, str]]],
    data: st.DataObject,
) -> None:
    tree, refs, comp, imgs = case
    graph = build_graph(tree, refs)
    check_orders(graph, comp, imgs)
    assert image_order(graph) == image_order(build_graph(tree, refs))
    named = set(data.draw(st.lists(st.sampled_from(sorted(tree.components)), max_size=3)))
    chosen = select(graph, named)
    assert named <= chosen
    assert all(dep in chosen for name in chosen for dep in graph.component_deps[name])
    assert chosen == reachable(comp, named)


def check_loop_report(
    error: GraphError, tree: Tree, comp: set[tuple[str, str]], imgs: set[tuple[str, str]]
) -> None:
    message = str(error)
    path = loop_path(message)
    edges = imgs if "between images" in message.splitlines()[0] else comp
    assert path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1  # a simple loop
    steps = list(itertools.pairwise(path))
    assert all(step in edges for step in steps), (message, edges)
    lines = message.splitlines()[1:]
    assert len(lines) == len(steps)
    for (a, b), line in zip(steps, lines, strict=True):
        assert line.startswith(f"  {a} -> {b}: src/")
        assert "?" not in line


@settings(max_examples=200, deadline=None)
@given(case=trees_and_refs(acyclic=False))
def test_property_any_graph_is_ordered_or_reports_a_real_loop(
    case: tuple[Tree, dict[str, list[ImageRef]], set[tuple[str, str]], set[tuple[str, str]]],
) -> None:
    tree, refs, comp, imgs = case
    cyclic = has_cycle(list(tree.components), comp) or has_cycle(list(tree.images), imgs)
    event("loop" if cyclic else "no loop")
    if cyclic:
        with pytest.raises(GraphError) as info:
            build_graph(tree, refs)
        check_loop_report(info.value, tree, comp, imgs)
    else:
        check_orders(build_graph(tree, refs), comp, imgs)


@settings(max_examples=150, deadline=None)
@given(case=trees_and_refs(acyclic=True), data=st.data())
def test_property_injected_loop_is_reported(
    case: tuple[Tree, dict[str, list[ImageRef]], set[tuple[str, str]], set[tuple[str, str]]],
    data: st.DataObject,
) -> None:
    tree, refs, comp, imgs = case
    names = sorted(tree.components)
    loop = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True))
    spec = {
        name: ([i.name for i in c.images], [d.name for d in c.deps])
        for name, c in tree.components.items()
    }
    refs = {image: list(found) for image, found in refs.items()}
    if len(loop) == 1:  # a component cannot list itself, but an image can use itself
        assume(spec[loop[0]][0])
        image = data.draw(st.sampled_from(spec[loop[0]][0]))
        refs[image].append(ImageRef(f"{image}:latest", 99, "FROM"))
        imgs = imgs | {(image, image)}
    for a, b in itertools.pairwise([*loop, loop[0]] if len(loop) > 1 else []):
        a_images, b_images = spec[a][0], spec[b][0]
        by_from = bool(a_images and b_images) and data.draw(st.booleans())
        if by_from:
            user = data.draw(st.sampled_from(a_images))
            used = data.draw(st.sampled_from(b_images))
            refs[user].append(ImageRef(used, 99, "FROM"))
            imgs = imgs | {(user, used)}
        elif b not in spec[a][1]:
            spec[a][1].append(b)
        comp = comp | {(a, b)}
    looped = make_tree(spec)
    with pytest.raises(GraphError) as info:
        build_graph(looped, refs)
    check_loop_report(info.value, looped, comp, imgs)


def test_unknown_images_are_named_with_what_was_meant() -> None:
    """`pai-build push -i` names unknown images the way unknown components are named."""
    assert unknown_message(["bsae", "App"], ["base", "app"], "image") == (
        "Unknown images: 'bsae' (did you mean 'base'?), 'App' (did you mean 'app'?)"
    )
