"""Plan a tree: discover components, parse their dockerfiles, build the graph.

This runs on every doit call (`doit list` too), so it reads each dockerfile once and
does nothing else: no docker calls, no hashing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from paitasks.dockerfile import ImageRef, local_image_name, parse_dockerfile
from paitasks.graph import Graph, build_graph
from paitasks.settings import Settings
from paitasks.tree import discover


@dataclass(frozen=True)
class Plan:
    graph: Graph
    refs: Mapping[str, tuple[ImageRef, ...]]  # image -> what its dockerfile refers to

    def external_images(self, image: str) -> tuple[str, ...]:
        """References of `image` to images the tree does not build (e.g. ubuntu:16.04)."""
        tree_images = self.graph.tree.images
        return tuple(
            dict.fromkeys(
                ref.reference
                for ref in self.refs[image]
                if local_image_name(ref.reference) not in tree_images
            )
        )


def load_plan(settings: Settings) -> Plan:
    """The tree under `settings.src` as a checked graph; raises PaiTasksError on bad input."""
    tree = discover(settings.src, settings.variant)
    refs: dict[str, tuple[ImageRef, ...]] = {
        name: parse_dockerfile(image.dockerfile).refs for name, image in tree.images.items()
    }
    return Plan(build_graph(tree, refs), refs)


def load_graph(settings: Settings) -> Graph:
    return load_plan(settings).graph
