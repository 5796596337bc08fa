"""The graph as text: JSON for tools, DOT for graphviz, Mermaid for READMEs.

Nodes are components and images; an image belongs to its component; an edge points from
what is needed to what needs it and says where it comes from (`components.dep`, `FROM`,
`COPY --from`, `RUN --mount`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from paitasks.graph import Graph
from paitasks.tree import display_path

FORMATS: dict[str, Callable[[Graph], str]] = {}


def renderer(name: str) -> Callable[[Callable[[Graph], str]], Callable[[Graph], str]]:
    def register(function: Callable[[Graph], str]) -> Callable[[Graph], str]:
        FORMATS[name] = function
        return function

    return register


def graph_data(graph: Graph) -> dict[str, Any]:
    """A plain, documented structure: the JSON format, and what the others draw."""
    root = graph.tree.root
    components = [
        {
            "name": component.name,
            "images": [image.name for image in component.images],
            "needs": list(graph.component_deps[component.name]),
            "copies": list(graph.copy_deps[component.name]),
        }
        for component in graph.tree.components.values()
    ]
    images = [
        {
            "name": image.name,
            "component": image.component,
            "dockerfile": display_path(image.dockerfile, root),
            "uses": list(graph.image_deps[image.name]),
        }
        for image in graph.tree.images.values()
    ]
    edges = []
    for edge in graph.edges:
        if edge.kind == "components.dep":
            edges.append(
                {
                    "from": f"component:{edge.dependency}",
                    "to": f"component:{edge.dependent}",
                    "kind": edge.kind,
                    "file": display_path(edge.file, root),
                    "line": edge.line,
                }
            )
    for edge in graph.image_edges:
        edges.append(
            {
                "from": f"image:{edge.used_image}",
                "to": f"image:{edge.image}",
                "kind": edge.kind,
                "file": display_path(edge.file, root),
                "line": edge.line,
            }
        )
    return {"components": components, "images": images, "edges": edges}


@renderer("json")
def to_json(graph: Graph) -> str:
    return json.dumps(graph_data(graph), indent=2) + "\n"


def _drawn_edges(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Edges to draw: one arrow per (from, to, kind), however many lines say it."""
    return list(dict.fromkeys((e["from"], e["to"], e["kind"]) for e in data["edges"]))


def _node_id(node: str) -> str:
    kind, _, name = node.partition(":")
    return ("c_" if kind == "component" else "i_") + "".join(
        ch if ch.isalnum() else "_" for ch in name
    )


@renderer("dot")
def to_dot(graph: Graph) -> str:
    data = graph_data(graph)
    lines = ["digraph paitasks {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for component in data["components"]:
        cid = _node_id(f"component:{component['name']}")
        lines.append(f'  subgraph "cluster_{cid}" {{')
        lines.append(f'    label="{component["name"]}";')
        lines.append(f'    {cid} [label="{component["name"]}", shape=folder];')
        for image in component["images"]:
            lines.append(f'    {_node_id(f"image:{image}")} [label="{image}", shape=box];')
        lines.append("  }")
    for source, target, kind in _drawn_edges(data):
        lines.append(f'  {_node_id(source)} -> {_node_id(target)} [label="{kind}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


@renderer("mermaid")
def to_mermaid(graph: Graph) -> str:
    data = graph_data(graph)
    lines = ["graph LR"]
    for component in data["components"]:
        cid = _node_id(f"component:{component['name']}")
        lines.append(f'  subgraph {cid}_group["{component["name"]}"]')
        lines.append(f'    {cid}[/"{component["name"]}"/]')
        for image in component["images"]:
            lines.append(f'    {_node_id(f"image:{image}")}["{image}"]')
        lines.append("  end")
    for source, target, kind in _drawn_edges(data):
        lines.append(f'  {_node_id(source)} -- "{kind}" --> {_node_id(target)}')
    return "\n".join(lines) + "\n"
