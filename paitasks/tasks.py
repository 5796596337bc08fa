"""Turn a planned tree into doit task dicts: wiring only, the work is in actions.py.

Per component C, in the order a round runs (tasks appear only where they have work):
  copy-deps:C        copy each components.dep entry into C/dependency/ (after its build:)
  prebuild:C         build/build-pre.sh
  build-image:<img>  one per dockerfile; after the images it uses (FROM, COPY --from)
  postbuild:C        build/build-post.sh
  build:C            C fully built; `build` is every component
  clean:C            remove C's temp folders
A component starts only after every component it needs (its components.dep entries and
the owners of the images it uses) is fully built, as OpenPAI's order has it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from paitasks import actions
from paitasks.freshness import CopyDepsSkip, ImageSpec, ImageUpToDate, PushUpToDate
from paitasks.graph import Graph
from paitasks.loader import Plan
from paitasks.settings import Settings
from paitasks.tree import Component, display_path

TaskDict = dict[str, Any]
GROUP_DOCS = {
    "copy-deps": "copy every components.dep entry into its component's dependency/",
    "prebuild": "run every build-pre.sh",
    "build-image": "build every image",
    "postbuild": "run every build-post.sh",
}


def generate(plan: Plan, settings: Settings) -> Iterator[TaskDict]:
    """Every task of the tree, plus the `build` and `clean` groups."""
    graph = plan.graph
    tree = graph.tree
    # Group tasks first (name None): doit then adds each `build:C` / `clean:C` to them.
    yield {
        "basename": "build",
        "name": None,
        "doc": f"build all {len(tree.components)} components ({len(tree.images)} images)",
        # `doit clean` (doit's own command, which shadows the `clean` task) lands here.
        "clean": [(actions.clean_all, [str(settings.root)])],
    }
    yield {
        "basename": "clean",
        "name": None,
        "doc": "remove every temp folder (dependency/, generated/) a run left",
    }
    for basename, doc in GROUP_DOCS.items():
        yield {"basename": basename, "name": None, "doc": doc}
    copied = frozenset(dep for deps in graph.copy_deps.values() for dep in deps)
    for component in tree.components.values():
        yield from component_tasks(component, plan, settings, copied)
    yield from push_tasks(graph, settings)


def push_tasks(graph: Graph, settings: Settings) -> Iterator[TaskDict]:
    """`push:<image>` for one image (after its bases), and `push` for all of them.

    `push` publishes nothing until every image has built: its hidden `_publish:<image>`
    tasks wait for `build`, so a failed build never leaves a half-published set.
    """
    config = str(settings.config) if settings.config else None
    yield {
        "basename": "push",
        "doc": f"push all {len(graph.tree.images)} images, once every image has built",
        "actions": None,
        "task_dep": ["_publish"],
    }
    yield {"basename": "_publish", "name": None, "doc": "push every image (after `build`)"}
    for image in graph.tree.images:
        action = [(actions.push_image, [image, config, settings.verbose])]
        bases = graph.image_deps[image]
        yield {
            "basename": f"push:{image}",
            "doc": f"push image {image} to the registry (after its bases)",
            "actions": action,
            "task_dep": [f"build-image:{image}", *(f"push:{base}" for base in bases)],
            "uptodate": [PushUpToDate(image, config)],
        }
        yield {
            "basename": "_publish",
            "name": image,
            "doc": f"push image {image} once every image has built",
            "actions": action,
            "task_dep": ["build", *(f"_publish:{base}" for base in bases)],
            "uptodate": [PushUpToDate(image, config)],
        }


def component_tasks(
    component: Component, plan: Plan, settings: Settings, copied: frozenset[str] = frozenset()
) -> Iterator[TaskDict]:
    """The tasks of one component's round; `copied`: the components others copy."""
    graph = plan.graph
    name = component.name
    root = str(settings.root)
    folder = str(component.path)
    where = display_path(component.path, settings.root)
    needs = [f"build:{dep}" for dep in graph.component_deps[name]]
    chain = list(needs)  # what the next step of this component's round waits for
    own: list[str] = []  # every task of this round, for build:C

    copy = graph.copy_deps[name]
    if copy:
        task = f"copy-deps:{name}"
        sources = [(dep, str(graph.tree.components[dep].path)) for dep in copy]
        copy_task: TaskDict = {
            "basename": "copy-deps",
            "name": name,
            "doc": f"copy {', '.join(copy)} into {where}/dependency/",
            "actions": [(actions.copy_deps, [root, name, folder, sources])],
            "task_dep": chain,
        }
        hooked = component.pre_hook or component.post_hook
        if component.images and not hooked and name not in copied:
            # Nothing but this component's own images reads the copies: skip them when
            # those images are up to date anyway.
            specs = tuple(image_spec(plan, image.name, settings) for image in component.images)
            copy_task["uptodate"] = [CopyDepsSkip(specs)]
        yield copy_task
        chain, own = [task], [*own, task]

    if component.pre_hook is not None:
        task = f"prebuild:{name}"
        yield _hook_task("prebuild", component, settings, str(component.pre_hook), chain)
        chain, own = [task], [*own, task]

    images = [f"build-image:{image.name}" for image in component.images]
    for image in component.images:
        spec = image_spec(plan, image.name, settings)
        yield {
            "basename": "build-image",
            "name": image.name,
            "doc": f"build image {image.name} from {display_path(image.dockerfile, settings.root)}",
            "actions": [(actions.build_image, [spec, settings.verbose])],
            "task_dep": [*chain, *(f"build-image:{used}" for used in spec.uses)],
            "uptodate": [ImageUpToDate(spec)],
        }
    if images:
        chain, own = images, [*own, *images]

    if component.post_hook is not None:
        task = f"postbuild:{name}"
        yield _hook_task("postbuild", component, settings, str(component.post_hook), chain)
        chain, own = [task], [*own, task]

    yield {
        "basename": "build",
        "name": name,
        "doc": _build_doc(component, graph),
        "actions": None,
        "task_dep": [*needs, *own],  # `doit info build:C` lists what C needs
    }
    yield {
        "basename": "clean",
        "name": name,
        "doc": f"remove {where}/dependency/ and {where}/generated/ if a run left them",
        "actions": [(actions.clean, [root, folder])],
        "uptodate": [False],
    }


def image_spec(plan: Plan, image: str, settings: Settings) -> ImageSpec:
    """Everything the build of one image and its up-to-date check need."""
    graph = plan.graph
    found = graph.tree.images[image]
    component = graph.tree.components[found.component]
    return ImageSpec(
        name=image,
        dockerfile=str(found.dockerfile),
        context=str(component.path),
        state=str(settings.state),
        uses=graph.image_deps[image],
        external=plan.external_images(image),
        builder=settings.builder,
        network=settings.network,
        variant=settings.variant,
        prepared=bool(graph.copy_deps[component.name] or component.pre_hook),
        sources=plan.context_sources(image),
        copies=tuple(
            (dep, str(graph.tree.components[dep].path))
            for dep in graph.copy_deps[component.name]
        ),
    )


def _hook_task(
    kind: str, component: Component, settings: Settings, script: str, task_dep: list[str]
) -> TaskDict:
    skip = "; skipped while build/hook-inputs are unchanged" if component.hook_inputs else ""
    return {
        "basename": kind,
        "name": component.name,
        "doc": f"run {display_path(component.path, settings.root)}/build/"
        f"build-{'pre' if kind == 'prebuild' else 'post'}.sh{skip}",
        "actions": [
            (
                actions.hook,
                [
                    str(settings.root),
                    str(settings.src),
                    component.name,
                    str(component.path),
                    script,
                    settings.verbose,
                    None if component.hook_inputs is None else list(component.hook_inputs),
                    str(settings.state),
                    [image.name for image in component.images] if kind == "postbuild" else [],
                ],
            )
        ],
        "task_dep": task_dep,
    }


def _build_doc(component: Component, graph: Graph) -> str:
    images = ", ".join(image.name for image in component.images) or "no images"
    needs = graph.component_deps[component.name]
    after = f"; needs {', '.join(needs)}" if needs else ""
    return f"component {component.name} ({images}){after}"
