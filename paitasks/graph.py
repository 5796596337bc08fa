"""The dependency graph of a component tree: what needs what, in which order, and why.

Every edge keeps the file and line it comes from, so a loop can be reported with the exact
places to edit. The graph is checked for loops when it is built, so every `Graph` is
acyclic and the order functions cannot fail. All walks are iterative (a 5,000-long chain
must not hit the recursion limit) and linear apart from sorting.
"""

from __future__ import annotations

import difflib
import graphlib
import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from paitasks import reference
from paitasks.errors import GraphError
from paitasks.tree import Tree, display_path

if TYPE_CHECKING:
    from paitasks.dockerfile import ImageRef

EdgeKind = Literal["components.dep", "FROM", "COPY --from", "RUN --mount"]

LOOP_MESSAGE = "Dependency loop detected"


@dataclass(frozen=True)
class Edge:
    """`dependent` needs `dependency`, because of `file`:`line`."""

    dependent: str  # component name that needs ...
    dependency: str  # ... this component
    kind: EdgeKind
    file: Path
    line: int
    image: str | None = None  # dockerfile edges: the dependent image
    used_image: str | None = None  # dockerfile edges: the referenced image of the tree
    reference: str | None = None  # dockerfile edges: the reference as the dockerfile has it

    def describe(self, root: Path) -> str:
        """Where the edge comes from, e.g. `src/b/build/b.dockerfile:1 (FROM a)`."""
        where = f"{display_path(self.file, root)}:{self.line}"
        if self.kind == "components.dep":
            return where
        return f"{where} ({self.kind} {self.reference or self.used_image})"


@dataclass(frozen=True)
class Graph:
    """Component and image dependencies of one tree; acyclic by construction."""

    tree: Tree
    # component -> components it needs (dep file and owners of referenced tree images),
    # sorted, never itself
    component_deps: Mapping[str, tuple[str, ...]]
    # component -> its dependency-file entries only (copied into dependency/), file order
    copy_deps: Mapping[str, tuple[str, ...]]
    # image -> tree images it references (FROM / COPY --from / RUN --mount), sorted
    image_deps: Mapping[str, tuple[str, ...]]
    # evidence of component_deps: dep-file edges and dockerfile edges between components
    edges: tuple[Edge, ...]
    # evidence of image_deps: every dockerfile edge, also within one component
    image_edges: tuple[Edge, ...] = ()


def build_graph(tree: Tree, refs: Mapping[str, Sequence[ImageRef]]) -> Graph:
    """Join dependency files and dockerfile references into one checked graph.

    `refs` maps an image of the tree to its dockerfile's references; a reference is an
    edge when it names an image of the tree (`reference.local_image_name`: `x`,
    `x:latest`, `docker.io/library/x`...). Raises GraphError on a loop between components
    or between images.
    """
    stray = sorted(set(refs) - set(tree.images))
    if stray:
        raise ValueError(f"references given for images not in the tree: {', '.join(stray)}")

    component_deps: dict[str, set[str]] = {name: set() for name in tree.components}
    copy_deps: dict[str, tuple[str, ...]] = {}
    image_deps: dict[str, set[str]] = {name: set() for name in tree.images}
    edges: list[Edge] = []
    image_edges: list[Edge] = []

    for name, component in tree.components.items():
        copy_deps[name] = tuple(dep.name for dep in component.deps)
        if component.deps:
            assert component.dep_file is not None  # discover() sets both or neither
            for dep in component.deps:
                component_deps[name].add(dep.name)
                edges.append(Edge(name, dep.name, "components.dep", component.dep_file, dep.line))
        for image in component.images:
            for ref in refs.get(image.name, ()):
                used = reference.local_image_name(ref.reference)
                if used is None or used not in tree.images:
                    continue
                owner = tree.images[used].component
                edge = Edge(
                    dependent=name,
                    dependency=owner,
                    kind=ref.kind,
                    file=image.dockerfile,
                    line=ref.line,
                    image=image.name,
                    used_image=used,
                    reference=ref.reference,
                )
                image_edges.append(edge)
                image_deps[image.name].add(used)
                if owner != name:
                    component_deps[name].add(owner)
                    edges.append(edge)

    graph = Graph(
        tree=tree,
        component_deps=_frozen(component_deps),
        copy_deps=MappingProxyType(copy_deps),
        image_deps=_frozen(image_deps),
        edges=tuple(edges),
        image_edges=tuple(image_edges),
    )
    cycle = _find_cycle(graph.component_deps)
    if cycle is not None:
        raise GraphError(_loop_message(cycle, graph.edges, tree.root, ""))
    cycle = _find_cycle(graph.image_deps)
    if cycle is not None:
        image_evidence = tuple(_as_image_edge(e) for e in graph.image_edges)
        raise GraphError(_loop_message(cycle, image_evidence, tree.root, " between images"))
    return graph


def image_order(graph: Graph) -> list[str]:
    """Images, each after every tree image it references; ties broken by name."""
    return dependencies_first(graph.image_deps)


def select(graph: Graph, names: Iterable[str]) -> set[str]:
    """The named components plus everything they need, transitively (OpenPAI's `-s`)."""
    wanted = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    known = graph.component_deps
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise GraphError(unknown_message(unknown, known))
    chosen: set[str] = set()
    stack = list(wanted)
    while stack:
        name = stack.pop()
        if name not in chosen:
            chosen.add(name)
            stack.extend(known[name])
    return chosen


def _frozen(deps: Mapping[str, set[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({name: tuple(sorted(deps[name])) for name in sorted(deps)})


def _as_image_edge(edge: Edge) -> Edge:
    """The same evidence with image names as the endpoints, for image-level messages."""
    assert edge.image is not None and edge.used_image is not None
    return Edge(
        edge.image,
        edge.used_image,
        edge.kind,
        edge.file,
        edge.line,
        edge.image,
        edge.used_image,
        edge.reference,
    )


def dependencies_first(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Every name of `deps` (name -> what it needs), after what it needs; the smallest
    ready name goes next, so the order is stable."""
    sorter = graphlib.TopologicalSorter(deps)
    try:
        sorter.prepare()
    except graphlib.CycleError:  # build_graph rejects loops; a hand-made Graph may not
        raise GraphError(f"{LOOP_MESSAGE}: {' -> '.join(_find_cycle(deps) or ())}") from None
    ready: list[str] = []
    order: list[str] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, name)
        order.append(heapq.heappop(ready))
        sorter.done(order[-1])
    return order


def _find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One loop as [a, b, ..., a], each needing the next, from its smallest name; or None."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in sorted(deps):  # graphlib walks from each name in this order ...
        sorter.add(name)
    for name, needed in deps.items():
        for dep in needed:
            sorter.add(dep, name)  # ... to what it needs: edges reversed, so a loop is too
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        ring = error.args[1][:-1]
        first = ring.index(min(ring))
        return [*ring[first:], *ring[:first], ring[first]]
    return None


def _loop_message(cycle: list[str], evidence: Sequence[Edge], root: Path, what: str) -> str:
    """The loop on one line, then one line per step saying which file makes it."""
    steps = set(itertools.pairwise(cycle))
    where: dict[tuple[str, str], list[str]] = {}
    for edge in evidence:
        step = (edge.dependent, edge.dependency)
        if step in steps:
            where.setdefault(step, []).append(edge.describe(root))
    lines = [f"{LOOP_MESSAGE}{what}: {' -> '.join(cycle)}"]
    for step in itertools.pairwise(cycle):
        lines.append(f"  {step[0]} -> {step[1]}: {'; '.join(where.get(step, ['?']))}")
    return "\n".join(lines)


def unknown_message(
    unknown: Sequence[str], known: Iterable[str], noun: str = "component"
) -> str:
    """Name every unknown component (or image), with a guess when one is close enough."""
    known = list(known)
    by_lower = {name.lower(): name for name in known}
    parts = []
    for name in unknown:
        guesses = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        same_but_case = by_lower.get(name.lower())
        if same_but_case is not None and same_but_case not in guesses:
            guesses.insert(0, same_but_case)
        hint = f" (did you mean {' or '.join(repr(g) for g in guesses)}?)" if guesses else ""
        parts.append(f"{name!r}{hint}")
    return f"Unknown {noun}{'' if len(unknown) == 1 else 's'}: {', '.join(parts)}"
