"""Turn a planned tree into doit task dicts: wiring only, the work is in actions.py.

Per component C, in the order a round runs (tasks appear only where they have work):
  copy-deps:C        copy each components.dep entry into C/dependency/ (after its build:)
  prebuild:C         build/build-pre.sh
  build-image:<img>  one per dockerfile; after the images it uses (FROM, COPY --from)
  postbuild:C        build/build-post.sh
  build:C            C fully built; `build` is every component
  clean:C            remove C's temp folders
A component starts only after every component it needs (its components.dep entries and
the owners of the images it uses) is fully built, as OpenPAI's order has it. The copies
are made when something first reads them (tempfolders.py): copy-deps:C runs up front
only for a build-pre.sh that does not declare its inputs. Every action and check is given
the run (run.py), which holds what the tasks share.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paitasks import actions
from paitasks.freshness import CopiesDeferred, ImageUpToDate, Lookahead, PushUpToDate
from paitasks.graph import Graph
from paitasks.inputs import ImageSpec, last_builder
from paitasks.loader import Plan
from paitasks.run import Run
from paitasks.settings import Settings
from paitasks.tempfolders import RoundSpec
from paitasks.tree import Component, display_path

TaskDict = dict[str, Any]
GROUP_DOCS = {
    "copy-deps": "copy every components.dep entry into its component's dependency/",
    "prebuild": "run every build-pre.sh",
    "build-image": "build every image",
    "postbuild": "run every build-post.sh",
}


def generate(plan: Plan, run: Run, ahead: Lookahead | None = None) -> Iterator[TaskDict]:
    """Every task of the tree, plus the `build` and `clean` groups."""
    graph = plan.graph
    tree = graph.tree
    # Group tasks first (name None): doit then adds each `build:C` / `clean:C` to them.
    yield {
        "basename": "build",
        "name": None,
        "doc": f"build all {len(tree.components)} components ({len(tree.images)} images)",
        # `doit clean` (doit's own command, which shadows the `clean` task) lands here.
        "clean": [(actions.clean_all, [run])],
    }
    yield {
        "basename": "clean",
        "name": None,
        "doc": "remove every temp folder (dependency/, generated/) a run left",
    }
    for basename, doc in GROUP_DOCS.items():
        yield {"basename": basename, "name": None, "doc": doc}
    rounds: dict[str, RoundSpec] = {}
    ahead = ahead or Lookahead(run)
    for component in tree.components.values():
        yield from component_tasks(component, plan, run, ahead, rounds)
    yield from push_tasks(graph, run)


def push_tasks(graph: Graph, run: Run) -> Iterator[TaskDict]:
    """`push:<image>` for one image (after its bases), and `push` for all of them.

    `push` publishes nothing until every image has built and is in the registry: its
    hidden `_upload:<image>` tasks put each image there under its fingerprint tag as soon
    as it is built, and its `_publish:<image>` tasks, which move each `:tag`, wait for
    `build` and for every upload, so a failed build or upload never leaves a
    half-published set.
    """
    yield {
        "basename": "push",
        "doc": f"push all {len(graph.tree.images)} images, once every image has built",
        "actions": None,
        "task_dep": ["_publish"],
    }
    yield {"basename": "_publish", "name": None, "doc": "move every image's tag (after `build`)"}
    yield {"basename": "_upload", "name": None, "doc": "put every image in the registry"}
    for image in graph.tree.images:
        bases = graph.image_deps[image]
        yield {
            "basename": f"push:{image}",
            "doc": f"push image {image} to the registry (after its bases)",
            "actions": [(actions.push_image, [run, image, bases])],
            "task_dep": [f"build-image:{image}", *(f"push:{base}" for base in bases)],
            "uptodate": [PushUpToDate(run, image)],
        }
        yield {
            "basename": "_upload",
            "name": image,
            "doc": f"put image {image} in the registry under its fingerprint tag",
            "actions": [(actions.upload_image, [run, image, bases])],
            "task_dep": [f"build-image:{image}", *(f"_upload:{base}" for base in bases)],
            "uptodate": [PushUpToDate(run, image, upload=True)],
        }
        yield {
            "basename": "_publish",
            "name": image,
            "doc": f"move image {image}'s tag once every image is in the registry",
            "actions": [(actions.publish_tag, [run, image])],
            "task_dep": ["build", "_upload"],
            "uptodate": [PushUpToDate(run, image)],
        }


def component_tasks(
    component: Component,
    plan: Plan,
    run: Run,
    ahead: Lookahead,
    rounds: dict[str, RoundSpec] | None = None,
) -> Iterator[TaskDict]:
    """The tasks of one component's round; `ahead`: the run's questions to the registry
    and predictions, and `rounds`: round specs made so far (both shared by the tree)."""
    settings = run.settings
    graph = plan.graph
    name = component.name
    round_ = round_spec(plan, name, {} if rounds is None else rounds)
    where = display_path(component.path, settings.root)
    needs = [f"build:{dep}" for dep in graph.component_deps[name]]
    chain = list(needs)  # what the next step of this component's round waits for
    own: list[str] = []  # every task of this round, for build:C

    copy = graph.copy_deps[name]
    if copy:
        task = f"copy-deps:{name}"
        copy_task: TaskDict = {
            "basename": "copy-deps",
            "name": name,
            "doc": f"copy {', '.join(copy)} into {where}/dependency/",
            "actions": [(actions.copy_deps, [run, round_])],
            "task_dep": chain,
        }
        if component.pre_hook is None or component.hook_inputs is not None:
            # No hook needs them up front: made when something reads them.
            copy_task["uptodate"] = [CopiesDeferred()]
        yield copy_task
        chain, own = [task], [*own, task]

    if component.pre_hook is not None:
        task = f"prebuild:{name}"
        yield _hook_task("prebuild", round_, run, ahead, str(component.pre_hook), chain)
        chain, own = [task], [*own, task]

    images = [f"build-image:{image.name}" for image in component.images]
    for image in component.images:
        spec = image_spec(plan, image.name, settings, round_)
        doc = f"build image {image.name} from {display_path(image.dockerfile, settings.root)}"
        builder = last_builder(settings.state, image.name) if settings.builders else None
        if builder is not None:  # builders=: `doit info` says where it was built last
            doc += f"; last built on builder {builder}"
        yield {
            "basename": "build-image",
            "name": image.name,
            "doc": doc,
            "actions": [(actions.build_image, [run, spec])],
            "task_dep": [*chain, *(f"build-image:{used}" for used in spec.uses)],
            "uptodate": [ImageUpToDate(run, spec, ahead)],
        }
    if images:
        chain, own = images, [*own, *images]

    if component.post_hook is not None:
        task = f"postbuild:{name}"
        yield _hook_task("postbuild", round_, run, ahead, str(component.post_hook), chain)
        chain, own = [task], [*own, task]

    if settings.publish == "fingerprints":  # each image in the registry once built
        own += [f"_upload:{image.name}" for image in component.images]
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
        "actions": [(actions.clean, [run, str(component.path)])],
        "uptodate": [False],
    }


def image_spec(
    plan: Plan, image: str, settings: Settings, round_: RoundSpec | None = None
) -> ImageSpec:
    """Everything the build of one image and its up-to-date check need."""
    graph = plan.graph
    found = graph.tree.images[image]
    component = graph.tree.components[found.component]
    return ImageSpec(
        name=image,
        dockerfile=str(found.dockerfile),
        context=str(component.path),
        uses=graph.image_deps[image],
        external=plan.external_images(image),
        build_tool=settings.build_tool,
        network=settings.network,
        build_args=tuple(
            (key, value) for key, value in settings.build_args
            if key in plan.dockerfiles[image].args
        ),
        platform=settings.platform,
        sources=plan.context_sources(image),
        round=round_ or round_spec(plan, component.name, {}),
    )


def round_spec(plan: Plan, name: str, made: dict[str, RoundSpec]) -> RoundSpec:
    """The round spec of a component and, within it, of every component it copies."""
    if name not in made:
        component = plan.graph.tree.components[name]
        made[name] = RoundSpec(
            name=name,
            folder=str(component.path),
            copies=tuple(
                round_spec(plan, dep, made) for dep in plan.graph.copy_deps[name]
            ),
            pre_hook=str(component.pre_hook) if component.pre_hook else None,
            post_hook=str(component.post_hook) if component.post_hook else None,
            declared=component.hook_inputs,
            images=tuple(image.name for image in component.images),
        )
    return made[name]


def _hook_task(
    kind: str,
    round_: RoundSpec,
    run: Run,
    ahead: Lookahead,
    script: str,
    task_dep: list[str],
) -> TaskDict:
    skip = "; skipped while build/hook-inputs are unchanged" if round_.declared else ""
    where = display_path(Path(round_.folder), run.root)
    return {
        "basename": kind,
        "name": round_.name,
        "doc": f"run {where}/build/build-{'pre' if kind == 'prebuild' else 'post'}.sh{skip}",
        "actions": [(actions.hook, [run, ahead, round_, script])],
        "task_dep": task_dep,
    }


def _build_doc(component: Component, graph: Graph) -> str:
    images = ", ".join(image.name for image in component.images) or "no images"
    needs = graph.component_deps[component.name]
    after = f"; needs {', '.join(needs)}" if needs else ""
    return f"component {component.name} ({images}){after}"
