"""Run doit in this process with timers around paitasks' main steps; write them as JSON.

    python bench/probe.py OUT.json -- -f dodo.py -n 1 build src=TREE/src

For the benchmark's no-op breakdown: how much of a run is imports, planning (discovering
the tree and making the task dicts), up-to-date checks (of which hashing context files),
engine calls (listing images, connecting, detecting buildx; wherever they happen),
copy-deps and hooks, the run's start and end, and doit itself (the rest).

The timers wrap module attributes from outside (nothing in paitasks is changed); an
attribute that no longer exists is reported under "missing" instead of failing. Nested
spans (hashing inside a check) are counted in both. With `-n` above 1, actions run in
worker threads, so their sums may overlap the main thread's work.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import functools  # noqa: E402 - the clock starts before any import
import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

# (module, owner attribute path, span name); owner "" means a module-level function.
PROBES: tuple[tuple[str, str, str], ...] = (
    ("paitasks.dodo", "load_plan", "plan: read tree, parse dockerfiles, graph"),
    ("paitasks.tasks", "generate", "plan: make task dicts"),
    ("paitasks.freshness", "ImageUpToDate.__call__", "checks: up-to-date checks (all)"),
    ("paitasks.contents", "scan_context", "checks: hash context files"),
    ("paitasks.inputs", "scan_context", "checks: hash context files"),  # before 5453fd9
    ("paitasks.engine", "Engine.local_images", "engine: list images (every call)"),
    ("paitasks.engine", "Engine.client", "engine: connect (every use)"),
    ("paitasks.inputs", "load_record", "checks: read last build records"),
    ("paitasks.actions", "copy_deps", "work: copy-deps"),
    ("paitasks.actions", "hook", "work: hooks"),
    ("paitasks.actions", "build_image", "work: image builds"),
    ("paitasks.reporter", "PaiReporter.initialize", "run start: lock, leftovers"),
    ("paitasks.reporter", "PaiReporter.complete_run", "run end: caches, temp folders, summary"),
)
# The spans that do not nest in one another: what is left of the run is doit's own.
TOP_LEVEL = (
    "plan: read tree, parse dockerfiles, graph",
    "plan: make task dicts",
    "checks: up-to-date checks (all)",
    "work: copy-deps",
    "work: hooks",
    "work: image builds",
    "run start: lock, leftovers",
    "run end: caches, temp folders, summary",
)


class Spans:
    """Total seconds and call counts per span name (thread-safe)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1


def _timed(function: Callable[..., Any], name: str, spans: Spans) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def timed_generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            iterator = function(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    spans.add(name, time.perf_counter() - start)
                    return
                spans.add(name, time.perf_counter() - start)
                yield item

        return timed_generator

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spans.add(name, time.perf_counter() - start)

    return timed


ENGINE_IMPORT = "import: paitasks.engine (the docker SDK loads only when used)"


def _patch(module: ModuleType, spans: Spans) -> list[str]:
    """Wrap the probes of one module; return the names of those it does not have."""
    missing = []
    for module_name, path, name in PROBES:
        if module_name != module.__name__:
            continue
        owner: Any = module
        *parents, attribute = path.split(".")
        try:
            for part in parents:
                owner = getattr(owner, part)
            static = inspect.getattr_static(owner, attribute)
        except AttributeError:
            missing.append(name)
            continue
        if isinstance(static, property) and static.fget is not None:
            setattr(owner, attribute, property(_timed(static.fget, name, spans)))
        elif callable(static):
            setattr(owner, attribute, _timed(static, name, spans))
        else:
            missing.append(name)
    return missing


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a probed module right after its first import, wherever that happens.

    paitasks imports its docker clients only when a task needs them, so the probe must
    not import them up front (that would move their cost into the start-up).
    """

    def __init__(self, spans: Spans, missing: list[str]) -> None:
        self.spans = spans
        self.missing = missing
        self.pending = {module for module, _, _ in PROBES}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader: Any = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            start = time.perf_counter()
            original(module)
            if fullname == "paitasks.engine":
                self.spans.add(ENGINE_IMPORT, time.perf_counter() - start)
            self.missing += _patch(module, self.spans)

        loader.exec_module = exec_module
        return spec


def install(spans: Spans) -> list[str]:
    """Wrap the probes of modules already imported, and of the others once imported.

    Returns the list that collects the names of probes paitasks no longer has.
    """
    missing: list[str] = []
    finder = PatchOnImport(spans, missing)
    for module_name in sorted(finder.pending):
        module = sys.modules.get(module_name)
        if module is not None:
            finder.pending.discard(module_name)
            missing += _patch(module, spans)
    sys.meta_path.insert(0, finder)
    return missing


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python bench/probe.py OUT.json -- DOIT-ARGUMENTS...", file=sys.stderr)
        return 2
    out, doit_args = Path(argv[0]), argv[2:]
    spans = Spans()
    imports_start = time.perf_counter()
    from doit.doit_cmd import DoitMain

    import paitasks.dodo  # noqa: F401 - what the dodo file imports, timed as start-up

    imports = time.perf_counter() - imports_start
    missing = install(spans)
    run_start = time.perf_counter()
    code = DoitMain().run(doit_args)
    run_seconds = time.perf_counter() - run_start
    top = sum(spans.seconds.get(name, 0.0) for name in TOP_LEVEL)
    result = {
        "returncode": code,
        "total": time.perf_counter() - _STARTED,
        "imports": imports,
        "doit run": run_seconds,
        "doit itself": max(0.0, run_seconds - top),
        "spans": spans.seconds,
        "calls": spans.calls,
        "missing": missing,
    }
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
