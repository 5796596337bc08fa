"""Plan a tree: discover components, parse their dockerfiles, build the graph.

This runs on every doit call (`doit list` too), so it reads each dockerfile once and
does nothing else: no docker calls, no hashing.
"""

from __future__ import annotations

from paitasks.dockerfile import ImageRef, parse_dockerfile
from paitasks.graph import Graph, build_graph
from paitasks.settings import Settings
from paitasks.tree import discover


def load_graph(settings: Settings) -> Graph:
    """The tree under `settings.src` as a checked graph; raises PaiTasksError on bad input."""
    tree = discover(settings.src, settings.variant)
    refs: dict[str, tuple[ImageRef, ...]] = {
        name: parse_dockerfile(image.dockerfile).refs for name, image in tree.images.items()
    }
    return build_graph(tree, refs)
