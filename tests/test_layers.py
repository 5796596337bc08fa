"""The modules of paitasks import each other in layers, never in a cycle.

Every import counts: at the top of a module, inside a function (imported late, for
speed) and under `TYPE_CHECKING`, since each is a module that must be understood before
the other. docs/architecture.md lists the same layers (checked below).
"""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "paitasks"

# Bottom first. A module imports from its own layer or a lower one, never a higher one.
LAYERS: list[set[str]] = [
    # facts and tools: data, words, processes
    {"errors", "failures", "fingerprint", "reference", "retries", "streaming", "timeline",
     "progress", "disk", "output"},
    # the tree and the settings: planning, no docker
    {"settings", "config", "context", "tree", "history", "dockerfile", "graph", "loader",
     "render"},
    # what a run reaches: engines, registries, the temp folders, hooks, an image's inputs
    {"engine", "builders", "registry", "tempfolders", "contents", "hooks", "inputs"},
    # the run: its services, one object
    {"run"},
    # the policies: up to date, and publishing
    {"freshness", "publish", "builds", "prune"},
    # doit's side: actions, task dicts, the reporter
    {"actions", "tasks", "reporter"},
    # entry points
    {"dodo", "cli"},
]


def imports() -> dict[str, set[str]]:
    """Each module of paitasks -> the modules of paitasks it imports, anywhere."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        uses: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "paitasks":
                    uses.update(alias.name for alias in node.names)
                elif node.module.startswith("paitasks."):
                    uses.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                uses.update(alias.name.split(".")[1] for alias in node.names
                            if alias.name.startswith("paitasks."))
        uses.discard(name)
        found[name] = uses
    return found


def test_no_module_imports_itself_back() -> None:
    try:
        graphlib.TopologicalSorter(imports()).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


def test_every_module_is_in_a_layer() -> None:
    layered = set().union(*LAYERS)
    assert set(imports()) - {"__init__"} == layered


@pytest.mark.parametrize("module", sorted(set().union(*LAYERS)))
def test_a_module_imports_only_its_layer_and_lower_ones(module: str) -> None:
    level = {name: number for number, layer in enumerate(LAYERS) for name in layer}
    higher = sorted(used for used in imports()[module] if level[used] > level[module])
    assert not higher, f"{module} (layer {level[module]}) imports {higher}"


def test_the_architecture_doc_shows_these_layers() -> None:
    """docs/architecture.md's layer table names the same modules in the same layers."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")]
    shown = [set(re.findall(r"`(\w+)`", row[2])) for row in rows if row[1].strip().isdigit()]
    assert shown == LAYERS
