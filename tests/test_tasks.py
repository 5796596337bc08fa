"""Wiring of the doit task dicts: names, docs, dependencies and picklable actions.

Trees are written to disk and planned for real (`discover` + `load_plan`, so dockerfiles
are parsed); nothing here talks to a Docker engine. The dicts of `tasks.generate` are
taken from `dodo.doit_namespace`'s task generator, the very call doit and `pai-build`
make, so these tests hold whatever planning object `generate` takes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doit.control import TaskControl
from doit.loader import generate_tasks
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from paitasks.dodo import doit_namespace
from paitasks.graph import Graph
from paitasks.loader import load_plan
from paitasks.run import Run
from paitasks.settings import Settings, resolve_settings
from paitasks.tasks import generate
from paitasks.tempfolders import TempFolders
from paitasks.tree import discover
from tests.support import doit_on

GROUPS = ("build", "clean", "copy-deps", "prebuild", "build-image", "postbuild")


def build_names(tasks: Iterable[str]) -> set[str]:
    """The build and clean tasks among `tasks` (push tasks are tested in test_push.py)."""
    return {name for name in tasks if name.split(":", 1)[0] in GROUPS}


# --- writing trees ------------------------------------------------------------------------


@dataclass
class ComponentSpec:
    deps: list[str] = field(default_factory=list)  # dependency file entries
    images: dict[str, str] = field(default_factory=dict)  # image -> its FROM reference
    pre: bool = False
    post: bool = False
    dep_file: str = "component.dep"
    build_folder: bool = True


TreeSpec = dict[str, ComponentSpec]


def write_tree(src: Path, spec: TreeSpec) -> None:
    src.mkdir(parents=True)
    for name, component in spec.items():
        folder = src / name
        folder.mkdir()
        if not component.build_folder:
            (folder / "README.md").write_text("nothing to build\n")
            continue
        build = folder / "build"
        build.mkdir()
        for image, base in component.images.items():
            (build / f"{image}.dockerfile").write_text(f"FROM {base}\nRUN echo {image}\n")
        if component.deps:
            (build / component.dep_file).write_text("\n".join(component.deps))
        if component.pre:
            (build / "build-pre.sh").write_text("echo pre\n")
        if component.post:
            (build / "build-post.sh").write_text("echo post\n")


def task_dicts(src: Path) -> Iterator[dict[str, Any]]:
    """The dicts `tasks.generate` yields for the tree at `src`, as doit receives them."""
    _, task_generator = doit_namespace(resolve_settings({"src": str(src)}, environ={}))
    yield from task_generator()


def full_name(task: Mapping[str, Any]) -> str:
    name = task.get("name")
    return str(task["basename"]) if name is None else f"{task['basename']}:{name}"


def plan(src: Path) -> tuple[Graph, Settings, dict[str, dict[str, Any]]]:
    """Plan the tree at `src` and return its task dicts by full task name."""
    run_settings = resolve_settings({"src": str(src)}, environ={})
    graph = load_plan(run_settings).graph
    assert set(graph.tree.components) == set(discover(src).components)
    tasks: dict[str, dict[str, Any]] = {}
    for task in task_dicts(src):
        name = full_name(task)
        assert name not in tasks, f"task {name} generated twice"
        tasks[name] = task
    return graph, run_settings, tasks


def closure(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Every task each task waits for, transitively, from the dicts' own task_dep."""
    reach: dict[str, set[str]] = {}
    for start in tasks:
        seen: set[str] = set()
        stack = list(tasks[start].get("task_dep") or [])
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(tasks[name].get("task_dep") or [])
        reach[start] = seen
    return reach


def round_tasks(name: str, component: ComponentSpec) -> list[str]:
    """The tasks of one component's build round (clean:C is not part of it)."""
    found = [f"build-image:{image}" for image in component.images]
    if component.deps:
        found.append(f"copy-deps:{name}")
    if component.pre:
        found.append(f"prebuild:{name}")
    if component.post:
        found.append(f"postbuild:{name}")
    return [*found, f"build:{name}"]


# --- a small fixed tree -------------------------------------------------------------------

SAMPLE: TreeSpec = {
    "base": ComponentSpec(images={"base-image": "busybox:1.36"}),
    "lib": ComponentSpec(post=True),
    "app": ComponentSpec(
        deps=["lib"],
        images={"app": "base-image", "app-debug": "app:latest"},
        pre=True,
        post=True,
        dep_file="components.dep",
    ),
    "docs": ComponentSpec(build_folder=False),
    "tool": ComponentSpec(images={"tool": "docker.io/library/base-image"}, pre=True),
}


def test_task_names(tmp_path: Path) -> None:
    write_tree(tmp_path / "src", SAMPLE)
    _, _, tasks = plan(tmp_path / "src")
    assert build_names(tasks) == {
        *GROUPS,
        "copy-deps:app",
        "prebuild:app",
        "prebuild:tool",
        "postbuild:app",
        "postbuild:lib",
        "build-image:base-image",
        "build-image:app",
        "build-image:app-debug",
        "build-image:tool",
        *(f"build:{c}" for c in SAMPLE),
        *(f"clean:{c}" for c in SAMPLE),
    }
    for group in ("build", "clean"):
        assert tasks[group].get("name") is None
        assert not tasks[group].get("actions")


def test_every_task_has_a_doc(tmp_path: Path) -> None:
    write_tree(tmp_path / "src", SAMPLE)
    _, _, tasks = plan(tmp_path / "src")
    for name, task in tasks.items():
        doc = task.get("doc")
        assert isinstance(doc, str) and doc.strip(), name


def test_docs_name_what_they_do(tmp_path: Path) -> None:
    write_tree(tmp_path / "src", SAMPLE)
    _, _, tasks = plan(tmp_path / "src")
    assert "lib" in tasks["copy-deps:app"]["doc"]
    assert "src/app/build/app-debug.dockerfile" in tasks["build-image:app-debug"]["doc"]
    assert "build-pre.sh" in tasks["prebuild:app"]["doc"]
    assert "build-post.sh" in tasks["postbuild:lib"]["doc"]
    build_doc = tasks["build:app"]["doc"]
    assert "app" in build_doc and "base" in build_doc and "lib" in build_doc


def test_sample_wiring(tmp_path: Path) -> None:
    write_tree(tmp_path / "src", SAMPLE)
    _, _, tasks = plan(tmp_path / "src")
    reach = closure(tasks)
    # app: copy lib, pre hook, images (app-debug FROM app), post hook
    assert set(tasks["copy-deps:app"]["task_dep"]) == {"build:base", "build:lib"}
    assert "copy-deps:app" in reach["prebuild:app"]
    assert "prebuild:app" in reach["build-image:app"]
    assert "build-image:app" in reach["build-image:app-debug"]
    assert {"build-image:app", "build-image:app-debug"} <= reach["postbuild:app"]
    assert "postbuild:lib" in reach["build:lib"]
    # tool uses base-image through its full docker.io name
    assert "build:base" in reach["prebuild:tool"]
    # docs and base need nothing; clean tasks never build anything
    assert reach["build:docs"] == set()
    assert reach["build:base"] == {"build-image:base-image"}
    for component in SAMPLE:
        assert reach[f"clean:{component}"] == set()


def test_publish_fingerprints_puts_each_built_image_in_the_registry(tmp_path: Path) -> None:
    """publish=fingerprints: each round ends with its images uploaded under their
    fingerprint tags; nothing in a round moves a `:tag`."""
    write_tree(tmp_path / "src", SAMPLE)
    for publish in (None, "fingerprints"):
        variables = {"src": str(tmp_path / "src"), "config": str(tmp_path / "cfg"),
                     **({"publish": publish} if publish else {})}
        settings = resolve_settings(variables, environ={})
        tasks = {full_name(task): task for task in generate(load_plan(settings), Run(settings))}
        reach = closure(tasks)
        rounds = {name: found for name, found in reach.items() if name.startswith("build:")}
        uploads = {name: {task for task in found if task.startswith("_upload:")}
                   for name, found in rounds.items()}
        if publish is None:
            assert not any(uploads.values()), uploads
            continue
        assert uploads["build:app"] >= {"_upload:app", "_upload:app-debug", "_upload:base-image"}
        assert uploads["build:base"] == {"_upload:base-image"}
        assert uploads["build:docs"] == set()
        assert not any(task.startswith(("_publish", "push")) for found in rounds.values()
                       for task in found), rounds


def test_doit_accepts_the_dicts(tmp_path: Path) -> None:
    """doit itself turns the dicts into tasks: every task_dep names a task, groups fill up."""
    src = tmp_path / "src"
    write_tree(src, SAMPLE)
    doit_tasks = generate_tasks("paitasks", task_dicts(src))
    control = TaskControl(doit_tasks)  # raises InvalidTask on an unknown task_dep
    by_name = control.tasks
    assert set(by_name["build"].task_dep) == {f"build:{c}" for c in SAMPLE}
    assert set(by_name["clean"].task_dep) == {f"clean:{c}" for c in SAMPLE}
    assert set(by_name["build-image"].task_dep) == {
        "build-image:base-image",
        "build-image:app",
        "build-image:app-debug",
        "build-image:tool",
    }


def test_actions_share_one_run(tmp_path: Path) -> None:
    """Every action is given the same Run: the state its tasks share, and nothing else."""
    write_tree(tmp_path / "src", SAMPLE)
    _, _, tasks = plan(tmp_path / "src")
    with_actions = set()
    runs = set()
    for name, task in tasks.items():
        actions = task.get("actions")
        if actions:
            with_actions.add(name)
            for _function, arguments in actions:
                assert isinstance(arguments[0], Run), name
                runs.add(id(arguments[0]))
    assert len(runs) == 1
    assert build_names(with_actions) == {
        "copy-deps:app",
        "prebuild:app",
        "prebuild:tool",
        "postbuild:app",
        "postbuild:lib",
        "build-image:base-image",
        "build-image:app",
        "build-image:app-debug",
        "build-image:tool",
        *(f"clean:{c}" for c in SAMPLE),
    }


# --- the groups, as a user runs them -----------------------------------------------------


def leftover_tree(tmp_path: Path) -> Path:
    """The sample tree with a temp folder an interrupted run recorded and left behind."""
    src = tmp_path / "src"
    write_tree(src, SAMPLE)
    TempFolders(tmp_path, tmp_path / ".paitasks").claim(src / "app", "app")
    (src / "app" / "generated").mkdir()
    (src / "app" / "generated" / "artifact").write_text("left by an interrupted run")
    return src



def test_doit_run_clean_removes_leftovers(tmp_path: Path) -> None:
    src = leftover_tree(tmp_path)
    result = doit_on(src, "run", "clean")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (src / "app" / "generated").exists()
    assert TempFolders(tmp_path, tmp_path / ".paitasks").recorded() == []


def test_doit_clean_runs_the_clean_group(tmp_path: Path) -> None:
    """`doit list` shows a `clean` task, so `doit clean` must run it.

    doit has a built-in `clean` command, which takes precedence over a task of that name:
    it cleans the `clean` attributes of tasks (paitasks sets none), says nothing and exits
    0, and the recorded temp folders stay.
    """
    src = leftover_tree(tmp_path)
    listed = doit_on(src, "list")
    assert "clean" in {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    result = doit_on(src, "clean")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (src / "app" / "generated").exists(), (
        "`doit clean` left the temp folder: doit's own clean command ran, not the task"
    )


# --- random DAG-shaped trees --------------------------------------------------------------

NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")
EXTERNAL = ("busybox:1.36", "ubuntu:16.04", "scratch", "golang:1.13.8-alpine")
FORMS = ("{}", "{}:latest", "docker.io/library/{}", "library/{}")


@dataclass
class RandomTree:
    spec: TreeSpec
    image_owner: dict[str, str]
    image_uses: dict[str, set[str]]  # image -> tree images it is FROM
    needs: dict[str, set[str]]  # component -> components it needs


@st.composite
def random_trees(draw: st.DrawFn) -> RandomTree:
    count = draw(st.integers(min_value=1, max_value=len(NAMES)))
    order = draw(st.permutations(NAMES))[:count]  # a topological order, not the name order
    spec: TreeSpec = {}
    image_owner: dict[str, str] = {}
    image_uses: dict[str, set[str]] = {}
    needs: dict[str, set[str]] = {}
    for position, name in enumerate(order):
        earlier = list(order[:position])
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        images: dict[str, str] = {}
        for k in range(draw(st.integers(min_value=0, max_value=2))):
            image = name if k == 0 else f"{name}-extra"
            candidates = [*EXTERNAL, *image_owner, *images]  # earlier components', own earlier
            base = draw(st.sampled_from(candidates))
            if base in EXTERNAL:
                images[image] = base
                image_uses[image] = set()
            else:
                images[image] = draw(st.sampled_from(FORMS)).format(base)
                image_uses[image] = {base}
        for image in images:
            image_owner[image] = name
        needs[name] = set(deps) | {
            image_owner[used] for image in images for used in image_uses[image]
        } - {name}
        spec[name] = ComponentSpec(
            deps=deps,
            images=images,
            pre=draw(st.booleans()),
            post=draw(st.booleans()),
            dep_file=draw(st.sampled_from(["component.dep", "components.dep"])),
            build_folder=bool(images or deps) or draw(st.booleans()),
        )
        if not spec[name].build_folder:
            spec[name].pre = spec[name].post = False
    return RandomTree(spec, image_owner, image_uses, needs)


def transitive(needs: Mapping[str, Iterable[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(needs[start])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(needs[name])
    return seen


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_trees())
def test_random_trees_are_wired_in_dependency_order(tree: RandomTree) -> None:
    spec = tree.spec
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        write_tree(src, spec)
        graph, _, tasks = plan(src)

    # the planner saw the edges this tree was made with, so the checks below are not vacuous
    assert {c: set(d) for c, d in graph.component_deps.items()} == tree.needs
    assert {i: set(u) for i, u in graph.image_deps.items()} == tree.image_uses
    event(f"edges: {sum(len(d) for d in tree.needs.values())}")

    expected = set(GROUPS)
    for name, component in spec.items():
        expected |= {*round_tasks(name, component), f"clean:{name}"}
    assert build_names(tasks) == expected

    for name, task in tasks.items():
        assert task["doc"].strip(), name
        for dep in task.get("task_dep") or []:
            assert dep in tasks, f"{name} waits for unknown task {dep}"

    reach = closure(tasks)
    for name in tasks:
        assert name not in reach[name], f"{name} depends on itself"

    for name, component in spec.items():
        own = round_tasks(name, component)
        images = [f"build-image:{image}" for image in component.images]
        # every task of the round waits for every component it needs to be fully built
        for needed in tree.needs[name]:
            for step in own:
                assert f"build:{needed}" in reach[step], (step, needed)
        # build:C is the whole round
        assert set(own) - {f"build:{name}"} <= reach[f"build:{name}"]
        # the round's order: copy-deps, pre hook, images, post hook
        steps = [
            [f"copy-deps:{name}"] if component.deps else [],
            [f"prebuild:{name}"] if component.pre else [],
            images,
            [f"postbuild:{name}"] if component.post else [],
        ]
        for i, before in enumerate(steps):
            for later in steps[i + 1 :]:
                for b in before:
                    for a in later:
                        assert b in reach[a], (a, b)
        # `build:C` builds C and what it needs, nothing else (OpenPAI's `-s C`)
        built = {t.split(":", 1)[1] for t in reach[f"build:{name}"] if t.startswith("build:")}
        assert built == transitive(tree.needs, name)
        # clean:C never builds anything
        assert reach[f"clean:{name}"] == set()

    for image, used in tree.image_uses.items():
        for base in used:
            assert f"build-image:{base}" in reach[f"build-image:{image}"], (image, base)
