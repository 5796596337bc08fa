"""Generate synthetic OpenPAI-style component trees for the benchmarks.

A generated tree is `<dest>/src/<component>/...`, ready for `doit build src=<dest>/src`
and for `bench/baseline.py`. Nothing here talks to Docker.

Shapes
------
* ``wide``: a base component, and every other component builds images FROM the base
  image. No component needs another, so all of them can build at the same time.
* ``deep``: a base component, then layers of ``width`` components. Each image of layer 0
  is FROM the base image; each image of layer k is FROM an image of layer k-1, and the
  component lists ``deps`` components of layer k-1 in its ``component.dep`` (so they are
  copied into its ``dependency/`` folder, as pai_build does).

Every image is built FROM scratch in the end: the base component's ``build-pre.sh`` copies
the static ``/bin/busybox`` into its ``generated/`` folder and the base dockerfile installs
it, so no build ever pulls anything.

Every dockerfile carries ``LABEL org.paitasks.bench=<label>``, so a benchmark can find and
remove every image it made (tags, replaced images and intermediate layers alike) with one
label filter. The ``seed`` goes into every context file: a new seed gives contents the
engine has never built, so no layer comes from the cache.

Run ``python bench/gen_tree.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Shape = Literal["wide", "deep"]
SHAPES: tuple[Shape, ...] = ("wide", "deep")
LABEL = "org.paitasks.bench"
BUSYBOX = Path("/bin/busybox")
BASE_COMPONENT = "base"
STAMP_FILE = "stamp.txt"


@dataclass(frozen=True)
class TreeSpec:
    """What to generate."""

    components: int  # every component, the base one included (at least 1)
    shape: Shape = "wide"
    images_per_component: int = 1  # for every component but the base (which has one)
    width: int = 8  # deep: components per layer
    deps: int = 2  # deep: layer k-1 components each component lists in component.dep
    hook_every: int = 4  # every n-th component has build-pre.sh and build-post.sh; 0: none
    declare_hooks: bool = False  # write build/hook-inputs: what the hooks read (rule 5)
    files_per_context: int = 3  # files under <component>/files/
    file_size: int = 512  # bytes per file
    prefix: str = "bench-"  # every image name starts with it
    seed: str = "0"  # goes into every file; a new seed means nothing is cached
    sleep: float = 0.0  # seconds every image but the base sleeps in a RUN step
    stamp: bool = False  # COPY stamp.txt first: rewrite it (write_stamps) to force a rebuild
    run_first: bool = False  # the RUN step before the COPY steps (reused while files change)
    label: str = ""  # value of the org.paitasks.bench label; default: the prefix

    def __post_init__(self) -> None:
        if self.components < 1:
            raise ValueError("a tree needs at least one component (the base)")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.images_per_component < 1 or self.width < 1 or self.deps < 0:
            raise ValueError("images per component and width must be >= 1, deps >= 0")
        if self.files_per_context < 0 or self.file_size < 0 or self.hook_every < 0:
            raise ValueError("files, file size and hook_every must be >= 0")


@dataclass(frozen=True)
class GenComponent:
    """One generated component."""

    name: str
    images: tuple[str, ...]
    parents: tuple[str, ...]  # images its images are FROM (one per image)
    deps: tuple[str, ...]  # components listed in its component.dep
    hooks: bool
    layer: int  # 0 for the base; deep: 1 + layer index


@dataclass(frozen=True)
class GeneratedTree:
    """Where a tree was written and what it holds."""

    root: Path  # the tree's root (doit keeps its state in root/.paitasks)
    src: Path  # root/src
    spec: TreeSpec
    components: dict[str, GenComponent] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.spec.label or self.spec.prefix

    @property
    def images(self) -> list[str]:
        """Every image, in an order that builds each after the image it is FROM."""
        ordered = sorted(self.components.values(), key=lambda c: (c.layer, c.name))
        return [image for component in ordered for image in component.images]

    @property
    def base_image(self) -> str:
        return self.components[BASE_COMPONENT].images[0]

    def leaves(self) -> list[str]:
        """Components no other component needs (by FROM or component.dep), base excluded."""
        needed = {dep for c in self.components.values() for dep in c.deps}
        owners = {image: c.name for c in self.components.values() for image in c.images}
        needed.update(owners[p] for c in self.components.values() for p in c.parents)
        return sorted(
            name for name in self.components if name not in needed and name != BASE_COMPONENT
        )


def generate(dest: Path | str, spec: TreeSpec) -> GeneratedTree:
    """Write the tree described by `spec` under `dest` (created; must not hold a src/)."""
    root = Path(dest).absolute()
    src = root / "src"
    src.mkdir(parents=True, exist_ok=False)
    components = _layout(spec)
    for component in components.values():
        _write_component(src / component.name, component, spec)
    return GeneratedTree(root=root, src=src, spec=spec, components=components)


def component_names(count: int) -> list[str]:
    """Names of the non-base components, `c0001` ..., zero-padded so they sort by number."""
    digits = max(4, len(str(count)))
    return [f"c{index:0{digits}d}" for index in range(1, count + 1)]


def _layout(spec: TreeSpec) -> dict[str, GenComponent]:
    base_image = f"{spec.prefix}{BASE_COMPONENT}"
    layout = {
        BASE_COMPONENT: GenComponent(BASE_COMPONENT, (base_image,), (), (), True, 0),
    }
    names = component_names(spec.components - 1)
    previous: list[GenComponent] = []  # deep: the layer before the current one
    current: list[GenComponent] = []
    for index, name in enumerate(names):
        if spec.shape == "deep" and index % spec.width == 0 and index:
            previous, current = current, []
        layer = 1 + (index // spec.width if spec.shape == "deep" else 0)
        position = index % spec.width if spec.shape == "deep" else index
        if spec.images_per_component == 1:
            images: tuple[str, ...] = (f"{spec.prefix}{name}",)
        else:
            images = tuple(f"{spec.prefix}{name}-{i}" for i in range(spec.images_per_component))
        if previous:
            count = min(len(previous), max(spec.deps, 1))
            chosen = [previous[(position + k) % len(previous)] for k in range(count)]
            parent = chosen[0]
            parents = tuple(parent.images[i % len(parent.images)] for i in range(len(images)))
            deps = tuple(c.name for c in chosen[: spec.deps])
        else:
            parents = (base_image,) * len(images)
            deps = ()
        hooks = spec.hook_every > 0 and (index + 1) % spec.hook_every == 0
        component = GenComponent(name, images, parents, deps, hooks, layer)
        layout[name] = component
        current.append(component)
    return layout


def _write_component(folder: Path, component: GenComponent, spec: TreeSpec) -> None:
    build = folder / "build"
    build.mkdir(parents=True)
    files = folder / "files"
    files.mkdir()
    for number in range(spec.files_per_context):
        text = _filler(f"{spec.seed}/{component.name}/{number}", spec.file_size)
        (files / f"f{number:03d}.txt").write_text(text, encoding="ascii")
    if spec.stamp:
        write_stamp(folder, spec.seed)
    if component.deps:
        # pai_build's file: one component per line, no trailing newline needed.
        (build / "component.dep").write_text("\n".join(component.deps) + "\n", encoding="ascii")
    label = spec.label or spec.prefix
    if component.name == BASE_COMPONENT:
        (build / "build-pre.sh").write_text(_BASE_PRE_HOOK, encoding="ascii")
        if spec.declare_hooks:
            (build / "hook-inputs").write_text(f"{BUSYBOX}\n", encoding="ascii")
        (build / f"{component.images[0]}.dockerfile").write_text(
            _BASE_DOCKERFILE.format(label=label), encoding="ascii"
        )
        return
    if component.hooks:
        (build / "build-pre.sh").write_text(
            _PRE_HOOK.format(text=f"{component.name} {spec.seed}"), encoding="ascii"
        )
        (build / "build-post.sh").write_text(_POST_HOOK, encoding="ascii")
        if spec.declare_hooks:
            # The hooks read nothing outside their component: an empty list says so.
            (build / "hook-inputs").write_text("", encoding="ascii")
    for image, parent in zip(component.images, component.parents, strict=True):
        lines = [f"FROM {parent}", f'LABEL {LABEL}="{label}"']
        work = f"echo {image} > /opt/{image}.txt"
        if spec.sleep > 0:
            work += f" && sleep {spec.sleep:g}"
        if spec.run_first:
            lines.append(f"RUN {work}")
        if spec.stamp:
            lines.append(f"COPY {STAMP_FILE} /opt/{image}.stamp")
        lines.append(f"COPY files/ /opt/{component.name}/files/")
        if component.hooks:
            lines.append(f"COPY generated/ /opt/{component.name}/generated/")
        if not spec.run_first:
            lines.append(f"RUN {work}")
        (build / f"{image}.dockerfile").write_text("\n".join(lines) + "\n", encoding="ascii")


def write_stamp(folder: Path, text: str | None = None) -> None:
    """(Re)write a component's stamp.txt: with a new text, its images must rebuild."""
    value = text if text is not None else secrets.token_hex(8)
    (folder / STAMP_FILE).write_text(value + "\n", encoding="ascii")


def write_stamps(tree: GeneratedTree) -> None:
    """A new random stamp in every non-base component (trees made with stamp=True)."""
    for name in tree.components:
        if name != BASE_COMPONENT:
            write_stamp(tree.src / name)


def _filler(key: str, size: int) -> str:
    """`size` characters of text that depends on `key` only (deterministic, cheap)."""
    block = hashlib.sha256(key.encode()).hexdigest() + "\n"
    return (block * (size // len(block) + 1))[:size]


_BASE_DOCKERFILE = f"""FROM scratch
LABEL {LABEL}="{{label}}"
COPY files/ /opt/base/files/
COPY generated/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
"""

_BASE_PRE_HOOK = f"""#!/bin/bash
# The base image is FROM scratch: bring in the static busybox (nothing is ever pulled).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p generated
cp {BUSYBOX} generated/busybox
"""

_PRE_HOOK = """#!/bin/bash
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p generated
printf '%s\\n' "{text}" > generated/hook.txt
"""

_POST_HOOK = """#!/bin/bash
set -euo pipefail
test -f "$(dirname "$0")/../generated/hook.txt"
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dest", type=Path, help="folder to create; the tree goes to DEST/src")
    parser.add_argument("-n", "--components", type=int, default=40, help="with the base")
    parser.add_argument("--shape", choices=SHAPES, default="wide")
    parser.add_argument("--images", type=int, default=1, help="images per component")
    parser.add_argument("--width", type=int, default=8, help="deep: components per layer")
    parser.add_argument("--deps", type=int, default=2, help="deep: component.dep entries")
    parser.add_argument("--hook-every", type=int, default=4, help="0: no hooks")
    parser.add_argument(
        "--declare-hooks", action="store_true", help="write build/hook-inputs for the hooks"
    )
    parser.add_argument("--files", type=int, default=3, help="files per context")
    parser.add_argument("--file-size", type=int, default=512)
    parser.add_argument("--prefix", default=f"bench{secrets.token_hex(3)}-")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--sleep", type=float, default=0.0, help="RUN sleep in each image")
    parser.add_argument("--stamp", action="store_true", help="COPY stamp.txt into each image")
    parser.add_argument("--run-first", action="store_true", help="RUN before the COPY steps")
    args = parser.parse_args(argv)
    try:
        spec = TreeSpec(
            components=args.components,
            shape=args.shape,
            images_per_component=args.images,
            width=args.width,
            deps=args.deps,
            hook_every=args.hook_every,
            declare_hooks=args.declare_hooks,
            files_per_context=args.files,
            file_size=args.file_size,
            prefix=args.prefix,
            seed=args.seed,
            sleep=args.sleep,
            stamp=args.stamp,
            run_first=args.run_first,
        )
        tree = generate(args.dest, spec)
    except (ValueError, OSError) as exc:
        print(f"gen_tree: {exc}", file=sys.stderr)
        return 2
    print(
        f"{tree.src}: {len(tree.components)} components, {len(tree.images)} images "
        f"(prefix {spec.prefix}); build with: "
        f"python -m doit -f {Path(__file__).resolve().parent.parent / 'dodo.py'} "
        f"-n 4 build src={tree.src}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
