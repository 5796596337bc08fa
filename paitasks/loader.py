"""Plan a tree: discover components, parse their dockerfiles, build the graph.

This runs on every doit call (`doit list` too), so it reads each dockerfile once and
does nothing else: no docker calls, no hashing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from paitasks.dockerfile import DockerfileInfo, parse_dockerfile
from paitasks.errors import TreeError
from paitasks.graph import Graph, build_graph
from paitasks.reference import local_image_name
from paitasks.settings import Settings
from paitasks.tree import discover


@dataclass(frozen=True)
class Plan:
    graph: Graph
    dockerfiles: Mapping[str, DockerfileInfo]  # image -> what its dockerfile says

    def context_sources(self, image: str) -> tuple[str, ...] | None:
        """The context paths a build of `image` reads; None for all of it.

        All of it, too, when an image of the tree it is built on has ONBUILD triggers
        that copy from the context (they run in this build).
        """
        bases = self.graph.image_deps[image]
        if any(self.dockerfiles[used].onbuild_reads_context for used in bases):
            return None
        return self.dockerfiles[image].context

    def external_images(self, image: str) -> tuple[str, ...]:
        """References of `image` to images the tree does not build (e.g. ubuntu:16.04)."""
        tree_images = self.graph.tree.images
        return tuple(
            dict.fromkeys(
                ref.reference
                for ref in self.dockerfiles[image].refs
                if local_image_name(ref.reference) not in tree_images
            )
        )


def load_plan(settings: Settings) -> Plan:
    """The tree under `settings.src` as a checked graph; raises PaiTasksError on bad input."""
    tree = discover(settings.src, settings.variant)
    if not tree.components:
        raise TreeError(f"source folder {settings.src} has no components (sub-folders)")
    args = dict(settings.build_args)
    infos = {name: parse_dockerfile(image.dockerfile, args) for name, image in tree.images.items()}
    refs = {name: info.refs for name, info in infos.items()}
    return Plan(build_graph(tree, refs), infos)
