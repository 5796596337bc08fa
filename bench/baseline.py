"""pai_build's own way of building a tree, written from the reference facts for comparison.

For the benchmarks only. It does what OpenPAI's `build/pai_build.py build` does, one step
after another and nothing more clever:

1. every folder directly under `src/` is a component; its images are `build/*.dockerfile`
   (image name = file name without `.dockerfile`); it needs the components listed in
   `build/component.dep` (or `components.dep`) and the owners of the images its
   dockerfiles are `FROM`;
2. the components in topological order; for each one: copy each dependency's whole folder
   to `<component>/dependency/<dep>/`, run `build/build-pre.sh`, `docker build` every
   dockerfile (context: the component folder, network host), run `build/build-post.sh`;
3. at the end, also after a failure, remove every `src/*/generated` and `src/*/dependency`.

No up-to-date check, no parallelism: every image is built every time, which is what the
engine's layer cache makes cheap or not. `builder="classic"` runs the legacy builder
(`DOCKER_BUILDKIT=0 docker build`, what pai_build ran); `builder="buildkit"` runs the CLI's
default `docker build` (BuildKit through the buildx plugin).
"""

from __future__ import annotations

import argparse
import heapq
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEP_FILES = ("component.dep", "components.dep")
TEMP_FOLDERS = ("dependency", "generated")
BUILDERS = ("classic", "buildkit")
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)


class BaselineError(RuntimeError):
    """A step of the round failed (the message names it and carries docker's last lines)."""


@dataclass(frozen=True)
class BaselineComponent:
    name: str
    path: Path
    dockerfiles: tuple[Path, ...]  # sorted by name
    deps: tuple[str, ...]  # component.dep entries, file order

    def image(self, dockerfile: Path) -> str:
        return dockerfile.name[: -len(".dockerfile")]


@dataclass
class BaselineRun:
    """What one round did and how long its steps took (seconds)."""

    images: list[str] = field(default_factory=list)
    copy_seconds: float = 0.0
    hook_seconds: float = 0.0
    build_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0


def read_tree(src: Path) -> dict[str, BaselineComponent]:
    """Every component under `src`, with its dockerfiles and dependency-file entries."""
    components: dict[str, BaselineComponent] = {}
    for folder in sorted(src.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        build = folder / "build"
        dockerfiles = tuple(sorted(build.glob("*.dockerfile"))) if build.is_dir() else ()
        deps: list[str] = []
        for name in DEP_FILES:
            dep_file = build / name
            if dep_file.is_file():
                for line in dep_file.read_text(encoding="utf-8").splitlines():
                    entry = line.strip()
                    if entry and not entry.startswith("#") and entry not in deps:
                        deps.append(entry)
                break
        components[folder.name] = BaselineComponent(folder.name, folder, dockerfiles, tuple(deps))
    return components


def order(components: dict[str, BaselineComponent]) -> list[str]:
    """Topological order over dependency-file entries and FROM lines (ties by name)."""
    owners = {c.image(f): c.name for c in components.values() for f in c.dockerfiles}
    needs: dict[str, set[str]] = {}
    for component in components.values():
        wanted = set(component.deps)
        for dockerfile in component.dockerfiles:
            for image in _FROM_RE.findall(dockerfile.read_text(encoding="utf-8")):
                owner = owners.get(image.split(":", 1)[0].lower())
                if owner is not None and owner != component.name:
                    wanted.add(owner)
        unknown = wanted - set(components)
        if unknown:
            raise BaselineError(f"{component.name}: unknown dependency {sorted(unknown)}")
        needs[component.name] = wanted
    waiting = {name: len(deps) for name, deps in needs.items()}
    dependents: dict[str, list[str]] = {name: [] for name in needs}
    for name, deps in needs.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        result.append(name)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(result) != len(needs):
        raise BaselineError("Dependency loop detected")
    return result


def docker_build_command(
    image: str, dockerfile: Path, context: Path, network: str = "host"
) -> list[str]:
    return [
        "docker",
        "build",
        "--network",
        network,
        "-t",
        image,
        "-f",
        str(dockerfile),
        str(context),
    ]


def docker_env(builder: str) -> dict[str, str]:
    """The environment of `docker build` for one builder (classic: the legacy builder)."""
    if builder not in BUILDERS:
        raise ValueError(f"builder must be one of {', '.join(BUILDERS)}")
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "0" if builder == "classic" else "1"
    return env


def docker_build(image: str, dockerfile: Path, context: Path, builder: str = "classic") -> None:
    """One `docker build`, as pai_build runs it; raises BaselineError with the last lines."""
    result = subprocess.run(
        docker_build_command(image, dockerfile, context),
        env=docker_env(builder),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-20:])
        raise BaselineError(f"docker build of {image} failed ({result.returncode}):\n{tail}")


def run_hook(script: Path, root: Path) -> None:
    """A build-pre.sh or build-post.sh, from the repository root (the parent of src/)."""
    result = subprocess.run(
        ["bash", str(script)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BaselineError(f"{script} failed ({result.returncode}):\n{result.stdout[-2000:]}")


def copy_deps(src: Path, component: BaselineComponent) -> None:
    """Copy each dependency's whole folder (with its generated/) into dependency/<dep>/."""
    for dep in component.deps:
        destination = component.path / "dependency" / dep
        shutil.copytree(src / dep, destination, symlinks=True, dirs_exist_ok=True)


def prepare_component(src: Path, component: BaselineComponent) -> None:
    """What comes before the component's docker builds: copies, then build-pre.sh."""
    copy_deps(src, component)
    pre = component.path / "build" / "build-pre.sh"
    if pre.is_file():
        run_hook(pre, src.parent)


def remove_temp_folders(src: Path) -> None:
    for folder in sorted(src.iterdir()):
        for name in TEMP_FOLDERS:
            shutil.rmtree(folder / name, ignore_errors=True)


def build_tree(src: Path | str, builder: str = "classic") -> BaselineRun:
    """Build every component of the tree under `src`, pai_build's way."""
    src = Path(src).absolute()
    run = BaselineRun()
    start = time.perf_counter()
    try:
        components = read_tree(src)
        for name in order(components):
            component = components[name]
            began = time.perf_counter()
            copy_deps(src, component)
            copied = time.perf_counter()
            run.copy_seconds += copied - began
            pre = component.path / "build" / "build-pre.sh"
            if pre.is_file():
                run_hook(pre, src.parent)
            run.hook_seconds += time.perf_counter() - copied
            for dockerfile in component.dockerfiles:
                image = component.image(dockerfile)
                began = time.perf_counter()
                docker_build(image, dockerfile, component.path, builder)
                run.build_seconds[image] = time.perf_counter() - began
                run.images.append(image)
            post = component.path / "build" / "build-post.sh"
            if post.is_file():
                began = time.perf_counter()
                run_hook(post, src.parent)
                run.hook_seconds += time.perf_counter() - began
    finally:
        remove_temp_folders(src)
        run.total_seconds = time.perf_counter() - start
    return run


def push_tree(images: Sequence[str], repository: str, tag: str) -> float:
    """pai_build's push: each image tagged `<repository>/<image>:<tag>` and pushed, one
    after another (`docker tag`, `docker push`); the seconds it took."""
    start = time.perf_counter()
    for image in images:
        target = f"{repository}/{image}:{tag}"
        for command in (["docker", "tag", image, target], ["docker", "push", target]):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise BaselineError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a tree pai_build's way (benchmarks).")
    parser.add_argument("src", type=Path, help="the source folder (its sub-folders are components)")
    parser.add_argument("--builder", choices=BUILDERS, default="classic")
    parser.add_argument(
        "--push", metavar="REGISTRY/NAMESPACE", help="then tag and push every image there"
    )
    parser.add_argument("--tag", default="latest", help="the tag to push (with --push)")
    args = parser.parse_args(argv)
    try:
        run = build_tree(args.src, args.builder)
        pushed = push_tree(run.images, args.push, args.tag) if args.push else None
    except (BaselineError, OSError) as exc:
        print(f"baseline: {exc}", file=sys.stderr)
        return 1
    print(
        f"built {len(run.images)} images in {run.total_seconds:.2f}s "
        f"(docker build {sum(run.build_seconds.values()):.2f}s, "
        f"copies {run.copy_seconds:.2f}s, hooks {run.hook_seconds:.2f}s)"
        + (f"; pushed them in {pushed:.2f}s" if pushed is not None else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
