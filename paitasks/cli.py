"""`pai-build`: OpenPAI's `pai_build.py` command line, running paitasks' doit tasks.

    pai-build build [-c CONFIG_DIR] [-s COMPONENT ...] [--src DIR] [-j N] [--pull]
    pai-build push -c CONFIG_DIR [-i IMAGE ...] [--src DIR] [-j N] [--pull]
    pai-build plan [-c CONFIG_DIR] [--src DIR]
    pai-build graph [--src DIR] [--format json|dot|mermaid]
    pai-build report [--src DIR]

Each command is a short list of steps: read settings, plan the tree (every input error
surfaces here, before any work), then hand the selected tasks to doit.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from paitasks.config import load_settings
from paitasks.disk import read_json
from paitasks.dodo import doit_namespace
from paitasks.errors import PaiTasksError
from paitasks.freshness import Lookahead
from paitasks.graph import image_order, select, unknown_message
from paitasks.inputs import last_builder
from paitasks.loader import Plan, load_plan
from paitasks.render import FORMATS
from paitasks.reporter import REPORT_FILE, summary_lines
from paitasks.run import Run
from paitasks.settings import BUILD_TOOLS, Settings, resolve_settings
from paitasks.tasks import image_spec
from paitasks.timeline import TRACE_FILE, read_critical_path

Command = Callable[[argparse.Namespace], int]
SLOWEST = 5  # image builds `pai-build report` lists
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register a sub-command."""

    def register(function: Command) -> Command:
        COMMANDS[name] = function
        return function

    return register


def settings_from(args: argparse.Namespace) -> Settings:
    variables = {"src": args.src}
    if getattr(args, "config", None):
        variables["config"] = args.config
    if getattr(args, "variant", None):
        variables["variant"] = args.variant
    if getattr(args, "build_tool", None):
        variables["build_tool"] = args.build_tool
    if getattr(args, "verbose", False):
        variables["verbose"] = "1"
    if getattr(args, "pull", False):
        variables["pull"] = "1"
    if getattr(args, "builders", None):
        variables["builders"] = args.builders
    if getattr(args, "publish_fingerprints", False):
        variables["publish"] = "fingerprints"
    for name in ("build_args", "platform"):
        if getattr(args, name, None):
            variables[name] = getattr(args, name)
    return resolve_settings(variables)


def run_doit(settings: Settings, task_names: Sequence[str], jobs: int) -> int:
    """Run doit's `run` command on our tasks, as `doit -n JOBS TASK...` would."""
    pushes = any(name == "push" or name.startswith("push:") for name in task_names)
    config, generator = doit_namespace(settings, pushes=pushes)
    loader = ModuleTaskLoader({"DOIT_CONFIG": config, "task_paitasks": generator})
    arguments = ["run"]
    if jobs > 1:
        arguments += ["-n", str(jobs)]
    return int(DoitMain(loader).run([*arguments, *task_names]))


def load(settings: Settings) -> Plan:
    if not settings.src.is_dir():
        raise PaiTasksError(f"source folder {settings.src} does not exist")
    return load_plan(settings)


@command("build")
def build(args: argparse.Namespace) -> int:
    """Build the named components and what they need (all when none is named)."""
    settings = settings_from(args)
    graph = load(settings).graph
    if args.component:
        select(graph, args.component)  # unknown names fail here, before any work
        tasks = [f"build:{name}" for name in dict.fromkeys(args.component)]
    else:
        tasks = ["build"]
    return run_doit(settings, tasks, args.jobs)


@command("push")
def push(args: argparse.Namespace) -> int:
    """Build, then push the named images (all when none is named): all or nothing.

    Two doit runs: the builds of everything the images need, and only when all of them
    succeeded, the pushes. A named image's bases from the tree are pushed with it.
    """
    settings = settings_from(args)
    load_settings(args.config)
    graph = load(settings).graph
    images = list(dict.fromkeys(args.image))
    unknown = [name for name in images if name not in graph.tree.images]
    if unknown:
        raise PaiTasksError(unknown_message(unknown, graph.tree.images, "image"))
    if not images:
        return run_doit(settings, ["push"], args.jobs)
    owners = dict.fromkeys(graph.tree.images[name].component for name in images)
    code = run_doit(settings, [f"build:{owner}" for owner in owners], args.jobs)
    if code != 0:
        print("pai-build: the build step failed: nothing was pushed", file=sys.stderr)
        return code
    return run_doit(settings, [f"push:{name}" for name in images], args.jobs)


def checked(settings: Settings, plan: Plan) -> tuple[Run, Lookahead]:
    """A run that checks without building: every image known to its lookahead, whose
    registry questions are asked at once."""
    run = Run(settings)
    ahead = Lookahead(run)
    for image in plan.graph.tree.images:
        ahead.add(image_spec(plan, image, settings))
    if run.remote is not None:  # the registry's answers, asked at once
        ahead(list(plan.graph.tree.images), [])
    return run, ahead


@command("plan")
def plan_command(args: argparse.Namespace) -> int:
    """Say which images a build would rebuild, and why, without building anything."""
    settings = settings_from(args)
    plan = load(settings)
    run, ahead = checked(settings, plan)
    predictions = ahead.predictions
    stale = remote = predicted = 0
    if settings.builders:
        print(f"builders: {', '.join(settings.builders)} (each build goes to the least busy)")
    for image in image_order(plan.graph):
        fresh, reasons = predictions.predict(image)
        found = run.findings.latest(image)
        builder = last_builder(settings.state, image)
        if builder is not None:
            reasons = (*reasons, f"last built on builder {builder}")
        if image in predictions.predicted:
            predicted += 1
            print(f"decided when its hooks run: {image}: {'; '.join(reasons)}")
        elif not fresh:
            stale += 1
            print(f"rebuild {image}: {'; '.join(reasons)}")
        elif found is not None and found.where == "registry":
            remote += 1
            print(f"up to date in the registry: {image}" + (f" ({reasons[-1]})" if builder else ""))
    total = len(plan.graph.tree.images)
    kept = total - stale - predicted
    where = f" ({remote} in the registry only)" if remote else ""
    later = f"; {predicted} decided when hooks run" if predicted else ""
    print(
        f"{stale} of {total} image{'s' if total != 1 else ''} would be rebuilt; "
        f"{kept} {'is' if kept == 1 else 'are'} up to date{where}{later}"
    )
    return 0


@command("prune")
def prune_command(args: argparse.Namespace) -> int:
    """Remove the fingerprint tags of the tree's images beyond the newest --keep and
    older than --older-than days; never what `:tag`, another kept tag or the current
    tree's fingerprints name."""
    if args.keep is None and args.older_than is None:
        raise PaiTasksError("prune needs --keep N, --older-than DAYS, or both")
    if (args.keep is not None and args.keep < 0) or (
        args.older_than is not None and args.older_than < 0
    ):
        raise PaiTasksError("--keep and --older-than take 0 or more")
    settings = settings_from(args)
    load_settings(args.config)
    plan = load(settings)
    run, ahead = checked(settings, plan)
    current: dict[str, str] = {}
    for image in image_order(plan.graph):
        ahead.predictions.predict(image)
        found = run.findings.fingerprint(image)
        if found is not None and image not in ahead.predictions.predicted:
            current[image] = found
    from paitasks import prune  # the registry's client: only when pruning

    done = prune.prune(run, list(plan.graph.tree.images), current, args.keep,
                       args.older_than, args.dry_run, print)
    unknown = len(plan.graph.tree.images) - len(current)
    print(
        f"{len(done.removed)} fingerprint tags {'would be removed' if args.dry_run else 'removed'}"
        f" ({done.size / 1e6:.1f} MB of configs and layers named; a layer another image "
        f"uses stays); {done.kept} kept"
        + (f"; {unknown} images' current fingerprints are known only once their hooks run"
           if unknown else "")
    )
    return 0


@command("report")
def report_command(args: argparse.Namespace) -> int:
    """The last run's summary, and where its time went (`.paitasks/report.json` and
    `.paitasks/trace.json`)."""
    settings = settings_from(args)
    folder = settings.state
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PaiTasksError(f"no run has been reported in {folder} yet") from None
    except (OSError, ValueError) as exc:
        raise PaiTasksError(f"cannot read {folder / REPORT_FILE}: {exc}") from None
    print(f"last run: {report.get('started')} to {report.get('finished')}, {report.get('result')}")
    for line, _ in summary_lines(report):
        print(line)
    trace = read_json(folder / TRACE_FILE)
    registry = report.get("registry")
    if registry:
        print(
            f"\nregistry: {registry.get('requests')} requests ({registry.get('retried')} "
            f"retried), in flight during {registry.get('busy_seconds', 0):.2f}s of the run's "
            f"{report.get('seconds', 0):.2f}s; the up-to-date checks waited "
            f"{registry.get('waited_seconds', 0):.2f}s for its answers"
        )
    path = read_critical_path(trace)
    if path:
        total = sum(seconds for _, seconds in path)
        print(f"\ncritical path ({total:.1f}s of tasks, each waiting for the one before):")
        for name, seconds in path:
            print(f"  {seconds:6.1f}s  {name}")
    timed = sorted(
        ((entry["seconds"], image) for image, entry in (report.get("images") or {}).items()
         if isinstance(entry.get("seconds"), int | float) and entry.get("status") == "done"),
        reverse=True,
    )
    if timed:
        print("\nslowest image builds:")
        for seconds, image in timed[:SLOWEST]:
            print(f"  {seconds:6.1f}s  {image}")
    return 0


@command("graph")
def graph_command(args: argparse.Namespace) -> int:
    """Print the component and image graph (json, dot or mermaid)."""
    graph = load(settings_from(args)).graph
    sys.stdout.write(FORMATS[args.format](graph))
    return 0


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--src", default="src", help="source folder (default: ./src)")
    sub.add_argument("-j", "--jobs", type=int, default=1, help="parallel tasks (default 1)")
    sub.add_argument("--variant", help="cluster kind, e.g. k8s")
    sub.add_argument("--build-tool", "--builder", dest="build_tool", choices=BUILD_TOOLS)
    sub.add_argument("--build-args", metavar="FILE", help="KEY=VALUE lines: build args")
    sub.add_argument("--platform", help="target platform, e.g. linux/amd64")
    sub.add_argument("-v", "--verbose", action="store_true", help="show docker's output")
    sub.add_argument(
        "--builders", "--engines", dest="builders", metavar="NAME,...",
        help="buildx builders (docker contexts or others) that build (needs a registry)",
    )
    sub.add_argument(
        "--pull", action="store_true",
        help="with a registry: bring images that are up to date there into the engine",
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="pai-build", description="Build a tree of Docker images (OpenPAI's pai_build)."
    )
    sub = main.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="build components and their dependencies")
    build_parser.add_argument("-c", "--config", help="folder with services-configuration.yaml")
    build_parser.add_argument(
        "-s", "--component", nargs="+", default=[], help="components to build (default: all)"
    )
    build_parser.add_argument(
        "--publish-fingerprints", action="store_true",
        help="put each image built in the registry under its fingerprint tag ($PAI_PUBLISH); "
        "its :tag is never moved",
    )
    _common(build_parser)
    push_parser = sub.add_parser("push", help="build, then push images to the registry")
    push_parser.add_argument(
        "-c", "--config", required=True, help="folder with services-configuration.yaml"
    )
    push_parser.add_argument(
        "-i", "--image", nargs="+", default=[], help="images to push (default: all)"
    )
    _common(push_parser)
    plan_parser = sub.add_parser("plan", help="say what a build would rebuild, and why")
    plan_parser.add_argument(
        "-c", "--config", help="folder with services-configuration.yaml: look in its registry too"
    )
    _common(plan_parser)
    prune_parser = sub.add_parser("prune", help="remove old fingerprint tags from the registry")
    prune_parser.add_argument(
        "-c", "--config", required=True, help="folder with services-configuration.yaml"
    )
    prune_parser.add_argument("--keep", type=int, metavar="N",
                              help="keep the newest N fingerprint tags of each image")
    prune_parser.add_argument("--older-than", type=float, metavar="DAYS",
                              help="remove only fingerprint tags older than DAYS")
    prune_parser.add_argument("--dry-run", action="store_true",
                              help="list what would be removed; remove nothing")
    _common(prune_parser)
    report_parser = sub.add_parser("report", help="the last run's summary and critical path")
    report_parser.add_argument("--src", default="src", help="source folder (default: ./src)")
    graph_parser = sub.add_parser("graph", help="print the component and image graph")
    graph_parser.add_argument("--format", choices=sorted(FORMATS), default="mermaid")
    _common(graph_parser)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PaiTasksError as exc:
        print(f"pai-build: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pai-build: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
