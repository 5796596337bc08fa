"""The graph in JSON (schema-checked), DOT (read back by graphviz) and Mermaid."""

from __future__ import annotations

import json
import re
import subprocess

import jsonschema

from tests.support import FIXTURES, PAI_BUILD, REPO

# (what is needed, what needs it, kind) for src-fixtures
EXPECTED = {
    ("component:componentA", "component:componentB", "components.dep"),
    ("image:base-image", "image:component-b", "FROM"),
    ("image:base-image", "image:tools-base", "FROM"),
    ("image:tools-base", "image:tools", "FROM"),
    ("image:tools", "image:argbase", "FROM"),
    ("image:base-image", "image:watchdog", "FROM"),
    ("image:base-image", "image:rest-server", "FROM"),
    ("image:base-image", "image:drivers", "FROM"),
}


def graph(fmt: str, *extra: str) -> str:
    result = subprocess.run(
        [PAI_BUILD, "graph", "--src", str(FIXTURES), "--format", fmt, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_json_matches_its_schema_and_the_tree() -> None:
    data = json.loads(graph("json"))
    schema = json.loads((REPO / "docs" / "graph.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert {(e["from"], e["to"], e["kind"]) for e in data["edges"]} == EXPECTED
    components = {c["name"]: c for c in data["components"]}
    assert components["componentB"]["copies"] == ["componentA"]
    assert components["componentB"]["needs"] == ["base-image", "componentA"]
    assert components["tools"]["images"] == ["tools", "tools-base"]
    edge = next(e for e in data["edges"] if e["to"] == "image:argbase")
    assert edge["file"] == "src-fixtures/argbase/build/argbase.dockerfile"
    assert edge["line"] == 3


def test_variant_adds_its_images() -> None:
    data = json.loads(graph("json", "--variant", "k8s"))
    names = {image["name"] for image in data["images"]}
    assert "driver-k8s" in names and "driver-yarn" not in names


def test_dot_is_read_by_graphviz() -> None:
    text = graph("dot")
    plain = subprocess.run(
        ["dot", "-Tplain"], input=text, capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 0, plain.stderr
    drawn = {
        (line.split()[1], line.split()[2]) for line in plain.stdout.splitlines()
        if line.startswith("edge ")
    }
    assert ("i_tools_base", "i_tools") in drawn
    assert ("c_componentA", "c_componentB") in drawn
    assert len(drawn) == len(EXPECTED)


def test_mermaid_draws_every_edge_once() -> None:
    text = graph("mermaid")
    assert text.startswith("graph LR\n")
    arrows = re.findall(r"^  (\S+) -- \"([^\"]+)\" --> (\S+)$", text, re.MULTILINE)
    assert len(arrows) == len(EXPECTED) == len(set(arrows))
    assert ("i_tools", "FROM", "i_argbase") in arrows


def test_readme_shows_the_current_fixture_graph() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README has no mermaid graph"
    assert block.group(1) == graph("mermaid")
