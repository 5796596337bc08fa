"""paitasks benchmarks: planning, no-op rebuild, one changed leaf, parallelism, cold build,
fresh CI runner, two engines.

    python bench/run.py [--quick] [--runs N] [--only 2,3] [--snapshot] [--json out.json]

Every scenario runs paitasks the way a user does (`python -m doit -f dodo.py ... src=TREE`,
a fresh process each time) and, where there is one, a baseline in the same run: pai_build's
sequential way (bench/baseline.py) or `doit -n 1`. Each figure is the median of N runs,
with the min-max next to it. `--quick` runs a tiny size of each scenario once (a smoke
test, not a measurement). `--snapshot` measures the last commit instead of the working
tree, so edits made meanwhile do not change the code under test.

Trees are generated under a temp folder (bench/gen_tree.py); every image name carries a
random prefix and every image the label `org.paitasks.bench=<run id>`, so the end of the
run (also after a failure or Ctrl-C) removes every image it made, and the temp trees. The
fresh-runner scenario also uses engine 2 (a second dockerd, `PAITASKS_ENGINE2_SOCKET`) and
the registry (`PAITASKS_REGISTRY`, namespace: the run id), and the two-engines scenario
builds on both engines through `builders=` (engine 2's docker context:
`PAITASKS_ENGINE2_CONTEXT`): the end removes the run's images there too, and deletes its
repositories' manifests through the registry's API.
docs/benchmarks.md has the figures and what they mean.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

import docker
import docker.errors
from baseline import BUILDERS, docker_build_command, docker_env, prepare_component, read_tree
from gen_tree import LABEL, GeneratedTree, TreeSpec, generate, write_stamps
from probe import TOP_LEVEL

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROBE = BENCH / "probe.py"
BASELINE = BENCH / "baseline.py"

SCENARIOS = {
    "1": "planning",
    "2": "no-op rebuild",
    "3": "one leaf changed",
    "4": "parallelism",
    "5": "cold build",
    "6": "fresh CI runner",
    "7": "two engines",
    "8": "a far registry",
}
INSIDE = "*counted in the parts above:*"
# An image built, in a run's output: doit's own line (`.  build-image:X`, up to a8a1812)
# or paitasks' progress line (`[3/9] done build-image:X 0.5s`, since).
BUILT_RE = re.compile(r"^(?:\.  |\[\s*\d+/\d+\] done )build-image:(\S+)", re.MULTILINE)
# Engine 2 (a fresh CI runner) and the registry: what `scripts/dev-engine up` starts.
ENGINE2_HOST = "unix://" + os.environ.get(
    "PAITASKS_ENGINE2_SOCKET", "/var/run/paitasks-engine2.sock"
)
REGISTRY = os.environ.get("PAITASKS_REGISTRY", "127.0.0.1:5000")
# The docker contexts of `builders=` in scenario 7: engine 1's and engine 2's.
ENGINE1_CONTEXT = "default"
ENGINE2_CONTEXT = os.environ.get("PAITASKS_ENGINE2_CONTEXT", "paitasks-engine2")
BUILDKIT_BUILDER = "paitasks-buildkit"  # scripts/dev-engine's buildkitd (driver remote)
MANIFEST_TYPES = ", ".join(
    f"application/vnd.{kind}"
    for kind in (
        "docker.distribution.manifest.v2+json",
        "docker.distribution.manifest.list.v2+json",
        "oci.image.manifest.v1+json",
        "oci.image.index.v1+json",
    )
)


@dataclass(frozen=True)
class Sizes:
    planning: tuple[int, ...]  # components of the planning trees
    tree: int  # components (= images) of the no-op, leaf and cold-build tree
    width: int  # components per layer of that tree
    parallel: int  # independent images of the parallelism scenario
    chain: int  # images of the chain
    sleep: float  # seconds each parallelism image sleeps
    slow_run: float  # seconds of the fresh runner's slow RUN step


FULL = Sizes(
    planning=(100, 1000, 5000), tree=40, width=8, parallel=8, chain=8, sleep=2.0, slow_run=3.0
)
QUICK = Sizes(planning=(30,), tree=6, width=3, parallel=3, chain=3, sleep=1.0, slow_run=1.0)


@dataclass
class Row:
    """One line of the table; times in seconds."""

    scenario: str
    size: str
    ours: list[float]
    baseline: list[float] = field(default_factory=list)
    baseline_is: str = ""  # what the baseline column measures
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times faster than the baseline (baseline median / paitasks median)."""
        if not self.ours or not self.baseline:
            return None
        ours = statistics.median(self.ours)
        return statistics.median(self.baseline) / ours if ours > 0 else None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    breakdown: list[tuple[str, list[float]]] = field(default_factory=list)
    # components -> the parts of `doit list --all` (seconds, one value per run)
    planning: dict[int, list[tuple[str, list[float]]]] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """What bench/probe.py measured inside one no-op run (seconds)."""

    imports: float
    doit_itself: float
    spans: dict[str, float]
    missing: tuple[str, ...] = ()  # probes whose function this paitasks no longer has


@dataclass(frozen=True)
class Timed:
    """One child process: wall time, its peak memory, exit code and output."""

    seconds: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Published:
    """What one `doit build push` run did, from its `.paitasks/report.json`."""

    images: int  # images in the report
    built: tuple[str, ...]
    pushed: tuple[str, ...]
    pulled: tuple[str, ...]


class RegistryAPI:
    """The registry's HTTP API (distribution v2) on loopback: list and delete."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, path: str, method: str = "GET") -> HTTPResponse:
        request = urllib.request.Request(f"http://{self.address}{path}", method=method)
        request.add_header("Accept", MANIFEST_TYPES)
        response: HTTPResponse = self._opener.open(request, timeout=30)
        return response

    def ping(self) -> bool:
        try:
            with self._request("/v2/"):
                return True
        except OSError:  # URLError and HTTPError are OSErrors
            return False

    def repositories(self, prefix: str) -> list[str]:
        """Repositories whose name starts with `prefix` (the catalog is sorted)."""
        found: list[str] = []
        last = prefix
        while True:
            with self._request(f"/v2/_catalog?n=500&last={last}") as response:
                names = json.load(response).get("repositories") or []
            found += [name for name in names if name.startswith(prefix)]
            if len(names) < 500 or not names[-1].startswith(prefix):
                return found
            last = names[-1]

    def delete_repository(self, repository: str) -> None:
        """Delete every manifest of `repository` (the registry runs with deletes enabled)."""
        try:
            with self._request(f"/v2/{repository}/tags/list") as response:
                tags = json.load(response).get("tags") or []
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return
            raise
        for tag in tags:
            try:
                with self._request(f"/v2/{repository}/manifests/{tag}", "HEAD") as response:
                    digest = response.headers["Docker-Content-Digest"]
                self._request(f"/v2/{repository}/manifests/{digest}", "DELETE").close()
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # another tag of the same manifest, deleted already
                    raise


def timed_run(command: Sequence[str], env: dict[str, str] | None = None) -> Timed:
    """Run `command`, timing it; the peak RSS is the child's own (os.wait4's rusage)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Timed(
            seconds=seconds,
            max_rss_mb=usage.ru_maxrss / 1024,  # Linux: kilobytes
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Bench:
    """Temp trees, the engine's images of this run, and how to run paitasks on them."""

    def __init__(
        self, work: Path, repo: Path, runs: int, builder: str | None, baseline_builder: str
    ) -> None:
        self.work = work
        self.dodo = repo / "dodo.py"
        self.runs = runs
        self.run_id = f"bench{secrets.token_hex(4)}"
        self.builder = builder
        self.baseline_builder = baseline_builder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PAI_")}
        self.env["NO_COLOR"] = "1"
        # A user's paitasks has its .pyc files (pip writes them, or the first run does):
        # compiling its sources anew in every timed run would measure the compiler.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        # paitasks is imported from `repo` (ahead of an installed or editable copy).
        path = [str(repo), *filter(None, self.env.get("PYTHONPATH", "").split(os.pathsep))]
        self.env["PYTHONPATH"] = os.pathsep.join(path)
        # The same, on engine 2 (a fresh CI runner).
        self.env2 = {k: v for k, v in self.env.items() if k != "DOCKER_CONTEXT"}
        self.env2["DOCKER_HOST"] = ENGINE2_HOST
        self._client: docker.DockerClient | None = None
        self._client2: docker.DockerClient | None = None
        self.registry = RegistryAPI(REGISTRY)
        self._config: Path | None = None  # the registry settings, once written

    # -- trees ------------------------------------------------------------------------

    def tree(self, tag: str, spec: TreeSpec) -> GeneratedTree:
        """`spec` as a new tree under work/<tag>, its images named `<run id>-<tag>-...`."""
        folder = self.work / tag
        if folder.exists():
            shutil.rmtree(folder)
        spec = dataclasses.replace(spec, prefix=f"{self.run_id}-{tag}-", label=self.run_id)
        return generate(folder, spec)

    # -- commands ---------------------------------------------------------------------

    def doit(
        self,
        tree: GeneratedTree,
        *args: str,
        jobs: int | None = 4,
        env: dict[str, str] | None = None,
    ) -> Timed:
        command = [sys.executable, "-m", "doit", "-f", str(self.dodo)]
        if jobs is not None:
            command += ["-n", str(jobs)]
        command += [*args, f"src={tree.src}"]
        if self.builder:
            command.append(f"builder={self.builder}")
        result = timed_run(command, env or self.env)
        if result.returncode != 0:
            errors = [line for line in result.stdout.splitlines()
                      if "ERROR" in line or "failed" in line][:20]
            raise BenchError(
                f"{' '.join(command)} failed ({result.returncode}):\n" + "\n".join(errors)
                + f"\n{_tail(result.stdout)}\n{_tail(result.stderr)}"
            )
        return result

    def build(
        self, tree: GeneratedTree, jobs: int = 4, expect: Sequence[str] | None = None
    ) -> Timed:
        """`doit -n jobs build`; checks that exactly `expect` images were built."""
        result = self.doit(tree, "build", jobs=jobs)
        if expect is not None:
            statuses = image_statuses(tree)
            built = sorted(name for name, status in statuses.items() if status == "done")
            fresh = [name for name, status in statuses.items() if status.startswith("up to date")]
            if built != sorted(expect) or len(built) + len(fresh) != len(tree.images):
                raise BenchError(
                    f"expected to build {sorted(expect)} of {len(tree.images)} images, "
                    f"built {built} and found {len(fresh)} up to date"
                )
        return result

    def publish(
        self,
        tree: GeneratedTree,
        engine2: bool = False,
        expect: tuple[Sequence[str], Sequence[str]] | None = None,
        config: Path | None = None,
    ) -> Timed:
        """`doit -n 4 build push config=CFG` on engine 1 or 2; checks in its report that
        exactly `expect` = (built, pushed) images were built and pushed, none pulled."""
        result = self.doit(
            tree,
            "build",
            "push",
            f"config={config or self.registry_config()}",
            env=self.env2 if engine2 else self.env,
        )
        if expect is not None:
            done = published(tree)
            built, pushed = expect
            wanted = Published(len(tree.images), tuple(sorted(built)), tuple(sorted(pushed)), ())
            if done != wanted:
                raise BenchError(f"expected {wanted}, the run's report.json says {done}")
        return result

    def registry_config(self, domain: str = REGISTRY) -> Path:
        """A services-configuration.yaml naming the registry (or `domain`, a far
        registry in front of it), with the run id as namespace."""
        if self._config is None:
            if not self.registry.ping():
                raise BenchError(f"no registry answers on {REGISTRY} (scripts/dev-engine up)")
            self._config = self.work / "registry-config"
        if domain == REGISTRY:
            folder = self._config
        else:
            folder = self.work / f"registry-config-{domain.replace(':', '-')}"
        folder.mkdir(exist_ok=True)
        (folder / "services-configuration.yaml").write_text(
            "cluster:\n  docker-registry:\n"
            f"    namespace: {self.run_id}\n    domain: '{domain}'\n    tag: latest\n",
            encoding="utf-8",
        )
        return folder

    def fresh_copy(self, tree: GeneratedTree, tag: str) -> GeneratedTree:
        """A copy of `tree`'s sources under work/<tag>, without its `.paitasks/`: a new
        checkout on a fresh runner."""
        folder = self.work / tag
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(tree.src, folder / "src", symlinks=True)
        return dataclasses.replace(tree, root=folder, src=folder / "src")

    def baseline(
        self, tree: GeneratedTree, builder: str | None = None, env: dict[str, str] | None = None,
        push: str | None = None,
    ) -> Timed:
        """bench/baseline.py on `tree` (pai_build's way), a fresh process like pai_build;
        with `push` (registry/namespace), it then tags and pushes every image there."""
        builder = builder or self.baseline_builder
        command = [sys.executable, str(BASELINE), str(tree.src), "--builder", builder]
        if push:
            command += ["--push", push]
        result = timed_run(command, env or self.env)
        if result.returncode != 0:
            raise BenchError(f"baseline failed:\n{_tail(result.stdout)}\n{_tail(result.stderr)}")
        return result

    def probe(self, tree: GeneratedTree, *args: str) -> Probe:
        """`doit ARGS` under bench/probe.py: its parts, timed from inside (builds nothing)."""
        out = self.work / f"probe-{secrets.token_hex(4)}.json"
        command = [sys.executable, str(PROBE), str(out), "--", "-f", str(self.dodo), *args]
        command.append(f"src={tree.src}")
        if self.builder:
            command.append(f"builder={self.builder}")
        result = timed_run(command, self.env)
        if result.returncode != 0 or BUILT_RE.search(result.stdout):
            raise BenchError(f"probe run failed or built:\n{_tail(result.stdout)}")
        data = json.loads(out.read_text(encoding="utf-8"))
        spans = {str(name): float(value) for name, value in data["spans"].items()}
        missing = tuple(str(name) for name in data.get("missing", ()))
        return Probe(float(data["imports"]), float(data["doit itself"]), spans, missing)

    def python(self, code: str) -> Timed:
        result = timed_run([sys.executable, "-c", code], self.env)
        if result.returncode != 0:
            raise BenchError(f"python -c {code!r} failed:\n{_tail(result.stderr)}")
        return result

    # -- engine -----------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env(timeout=120)
        return self._client

    @property
    def client2(self) -> docker.DockerClient:
        """Engine 2's client."""
        if self._client2 is None:
            self._client2 = docker.DockerClient(base_url=ENGINE2_HOST, timeout=120)
        return self._client2

    def remove_images(self, tag_prefix: str | None = None, engine2: bool = False) -> int:
        """Remove this run's images: those with a name holding `tag_prefix` (also under
        the registry's name), or all of them; on engine 1 or engine 2.

        All of them means every image with this run's label, also untagged ones (replaced
        by a rebuild), the classic builder's intermediate images and images pulled from
        the registry (the label is in their configuration).
        """
        client = self.client2 if engine2 else self.client
        removed = 0
        for _ in range(5):  # children first: a parent still used fails, the next pass gets it
            listing = client.api.images(all=True, filters={"label": f"{LABEL}={self.run_id}"})
            targets = []
            for entry in listing:
                tags = [t for t in entry.get("RepoTags") or () if t != "<none>:<none>"]
                if tag_prefix is None:
                    targets.append(entry["Id"])
                else:
                    targets.extend(t for t in tags if tag_prefix in t)
            if not targets:
                break
            failed = False
            for target in targets:
                try:
                    client.api.remove_image(target, force=True)
                    removed += 1
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError:
                    failed = True
            if not failed:
                break
        return removed

    def fresh_runner(self) -> None:
        """Engine 2 as a new CI runner has it: none of this run's images and an empty
        build cache (BuildKit keeps the layers it fetched, so a leaf built after another
        would find most of its base already there)."""
        self.remove_images(engine2=True)
        self.client2.api.prune_builds(all=True)

    def delete_repositories(self, prefix: str = "") -> int:
        """Delete the manifests of this run's registry repositories (`<run id>/<prefix>...`)."""
        if self._config is None:
            return 0  # no scenario used the registry
        repositories = self.registry.repositories(f"{self.run_id}/{prefix}")
        for repository in repositories:
            self.registry.delete_repository(repository)
        return len(repositories)

    def cleanup(self) -> None:
        """Everything this run made: images on both engines, registry repositories."""
        progress(f"removed {self.remove_images()} images of this run")
        if self._config is not None:  # the fresh-runner scenario ran: engine 2 too
            progress(f"removed {self.remove_images(engine2=True)} images of this run on engine 2")
        progress(f"deleted {self.delete_repositories()} registry repositories of this run")

    def close(self) -> None:
        for client in (self._client, self._client2):
            if client is not None:
                client.close()


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def runs_of(runs: int, label: str) -> Iterator[int]:
    """0 .. runs-1, saying on stderr which run starts."""
    for index in range(runs):
        progress(f"{label}: run {index + 1}/{runs}")
        yield index


# -- scenarios ------------------------------------------------------------------------


def scenario_planning(bench: Bench, sizes: Sizes, report: Report) -> None:
    """`doit list --all` on big trees that are never built: wall time and peak memory."""
    results: dict[int, tuple[list[float], list[float]]] = {}
    for count in sizes.planning:
        progress(f"planning: generating {count} components")
        width = max(5, round(count**0.5))
        tree = bench.tree(f"pl{count}", TreeSpec(count, shape="deep", width=width))
        times: list[float] = []
        memory: list[float] = []
        probes: list[Probe] = []
        for _ in runs_of(bench.runs, f"planning {count}"):
            result = bench.doit(tree, "list", "--all", jobs=None)
            times.append(result.seconds)
            memory.append(result.max_rss_mb)
            probes.append(bench.probe(tree, "list", "--all"))
        results[count] = (times, memory)
        report.planning[count] = _parts(probes, ("= doit list --all, from outside", times))
        shutil.rmtree(tree.root)
    smallest = min(results)
    for count, (times, memory) in results.items():
        row = Row(
            f"1. {SCENARIOS['1']}: doit list --all",
            f"{count:,} components",
            times,
            note=f"peak RSS {statistics.median(memory):.0f} MB",
        )
        if count > smallest:
            extra = statistics.median(times) - statistics.median(results[smallest][0])
            per = extra / (count - smallest) * 1000
            row.note += f"; {per:.2f} ms per component above {smallest}"
        if count == 1000:
            row.target, row.met = "<= 1.5 s", statistics.median(times) <= 1.5
        if count == 5000:
            row.target = "< 400 MB"
            row.met = statistics.median(memory) < 400
        report.rows.append(row)


def standard_tree(sizes: Sizes, seed: str = "0") -> TreeSpec:
    """The tree of scenarios 2, 3 and 5: deep, one image per component, some hooks.

    Each component lists one component.dep entry, the component it is FROM. With more,
    the copies grow with every layer (a dependency's folder is copied with its own
    dependency/ folder, as pai_build does), and copying would be all this tree measures.
    """
    return TreeSpec(
        sizes.tree,
        shape="deep",
        width=sizes.width,
        deps=1,
        hook_every=4,
        files_per_context=5,
        seed=seed,
    )


def scenario_noop_and_leaf(bench: Bench, sizes: Sizes, report: Report, run_leaf: bool) -> None:
    """Scenario 2 (no-op rebuild, its floors and breakdown) and 3 (one leaf changed)."""
    ours_tree = bench.tree("np", standard_tree(sizes))
    base_tree = bench.tree("nb", standard_tree(sizes))
    # The CLI's default `docker build` today is BuildKit: its warm rebuild, for context.
    other = "buildkit" if bench.baseline_builder == "classic" else "classic"
    other_tree = bench.tree("nk", standard_tree(sizes))
    # The same tree where every component with hooks lists what they read (rule 5's
    # build/hook-inputs), so a no-op may skip them too.
    declared_tree = bench.tree("nd", dataclasses.replace(standard_tree(sizes), declare_hooks=True))
    images = len(ours_tree.images)
    progress(f"no-op: first builds of the {images}-image trees")
    bench.build(ours_tree, expect=ours_tree.images)
    bench.build(declared_tree, expect=declared_tree.images)
    bench.baseline(base_tree)
    bench.baseline(other_tree, other)

    floors: dict[str, list[float]] = {"pass": [], "doit": [], "paitasks": [], "list": []}
    noop4: list[float] = []
    noop1: list[float] = []
    declared4: list[float] = []
    warm: list[float] = []
    warm_other: list[float] = []
    probes: list[Probe] = []

    for _ in runs_of(bench.runs, "no-op"):
        floors["pass"].append(bench.python("pass").seconds)
        floors["doit"].append(bench.python("import doit").seconds)
        floors["paitasks"].append(bench.python("import paitasks.dodo").seconds)
        floors["list"].append(bench.doit(ours_tree, "list", "--all", jobs=None).seconds)
        noop4.append(bench.build(ours_tree, 4, expect=[]).seconds)
        noop1.append(bench.build(ours_tree, 1, expect=[]).seconds)
        declared4.append(bench.build(declared_tree, 4, expect=[]).seconds)
        warm.append(bench.baseline(base_tree).seconds)
        warm_other.append(bench.baseline(other_tree, other).seconds)
        probes.append(bench.probe(ours_tree, "-n", "1", "build"))

    size = f"{images} images"
    report.rows += [
        Row("2. floor: python -c pass", "-", floors["pass"]),
        Row("2. floor: python -c 'import doit'", "-", floors["doit"]),
        Row("2. floor: python -c 'import paitasks.dodo'", "-", floors["paitasks"]),
        Row("2. floor: doit list --all (planning)", size, floors["list"]),
    ]
    rows = []
    for label, times in (("", noop4), (", hooks declare inputs", declared4)):
        for baseline, builder in ((warm, bench.baseline_builder), (warm_other, other)):
            row = Row(
                f"2. {SCENARIOS['2']}{label}: doit -n 4 build",
                size,
                times,
                baseline,
                baseline_is=f"pai_build way, warm cache ({builder})",
                target=">= 25x",
            )
            row.met = (row.ratio or 0) >= 25
            rows.append(row)
    noop = rows[0]
    report.rows += [
        *rows,
        Row(
            f"2. {SCENARIOS['2']}: doit -n 1 build",
            size,
            noop1,
            warm,
            baseline_is=noop.baseline_is,
        ),
    ]
    report.breakdown = _breakdown(floors["pass"], probes, noop1)

    if run_leaf:
        scenario_leaf(bench, (ours_tree, declared_tree), base_tree, report, (noop4, declared4))
    for tree in (ours_tree, base_tree, other_tree, declared_tree):
        shutil.rmtree(tree.root)


def _parts(probes: list[Probe], whole: tuple[str, list[float]]) -> list[tuple[str, list[float]]]:
    """The parts of a run as bench/probe.py timed them (one value per run), then `whole`
    (the run timed from outside), then the spans counted inside those parts."""
    rows: list[tuple[str, list[float]]] = [
        (
            "start-up: imports of the dodo file (doit, paitasks)",
            [p.imports for p in probes],
        )
    ]
    names = list(dict.fromkeys(name for p in probes for name in p.spans))
    order = ("plan", "import", "checks", "engine", "work", "run start", "run end")
    names.sort(key=lambda n: order.index(n.split(":")[0]) if n.split(":")[0] in order else 9)
    for name in [n for n in names if n in TOP_LEVEL]:
        rows.append((name, [p.spans.get(name, 0.0) for p in probes]))
    rows.append(("doit itself (the rest of the run)", [p.doit_itself for p in probes]))
    rows.append(whole)
    inside = [n for n in names if n not in TOP_LEVEL]
    if inside:
        rows.append((INSIDE, []))
        rows += [(name, [p.spans.get(name, 0.0) for p in probes]) for name in inside]
    measured = {name for p in probes for name in p.spans}
    for name in dict.fromkeys(name for p in probes for name in p.missing):
        if name not in measured:  # a span may be probed where older code had it
            progress(f"probe {name!r}: its function is gone from paitasks, not measured")
    return rows


def _breakdown(
    interpreter: list[float], probes: list[Probe], noop1: list[float]
) -> list[tuple[str, list[float]]]:
    """The no-op run (-n 1) in parts: start-up, planning, checks, work, doit itself."""
    whole = ("= no-op doit -n 1 build, measured from outside", noop1)
    return [("start-up: the interpreter (python -c pass)", interpreter), *_parts(probes, whole)]


def scenario_leaf(
    bench: Bench,
    trees: tuple[GeneratedTree, GeneratedTree],
    base_tree: GeneratedTree,
    report: Report,
    noops: tuple[list[float], list[float]],
) -> None:
    """Change one file of a leaf component: exactly its image rebuilds. Measured in the
    tree as generated and in its copy whose hooks declare their inputs."""
    ours_tree = trees[0]
    leaf = ours_tree.leaves()[-1]
    images = [tree.components[leaf].images[0] for tree in trees]
    base_image = base_tree.components[leaf].images[0]
    components = read_tree(base_tree.src)
    prepare_component(base_tree.src, components[leaf])  # its dependency/ and generated/
    ours: tuple[list[float], list[float]] = ([], [])
    folder = base_tree.src / leaf
    command = docker_build_command(
        base_image, folder / "build" / f"{base_image}.dockerfile", folder
    )
    other = "buildkit" if bench.baseline_builder == "classic" else "classic"
    builders = (bench.baseline_builder, other)
    single: dict[str, list[float]] = {builder: [] for builder in builders}
    for _ in runs_of(bench.runs, "one leaf changed"):
        for tree, image, times in zip(trees, images, ours, strict=True):
            with (tree.src / leaf / "files" / "f000.txt").open("a", encoding="ascii") as handle:
                handle.write(f"{secrets.token_hex(8)}\n")
            times.append(bench.build(tree, 4, expect=[image]).seconds)
        for builder in builders:
            # A new line each time, so each builder really builds.
            with (base_tree.src / leaf / "files" / "f000.txt").open("a") as handle:
                handle.write(f"{secrets.token_hex(8)}\n")
            result = timed_run(command, {**bench.env, **docker_env(builder)})
            if result.returncode != 0:
                raise BenchError(f"docker build of {base_image} failed:\n{_tail(result.stdout)}")
            single[builder].append(result.seconds)
    variants = zip(("", ", hooks declare inputs"), ours, noops, images, strict=True)
    for label, times, noop, image in variants:
        for builder in builders:
            row = Row(
                f"3. {SCENARIOS['3']}{label}: doit -n 4 build",
                f"{len(ours_tree.images)} images, 1 rebuilt",
                times,
                single[builder],
                baseline_is=f"one docker build of that image ({builder})",
                target="within 2x (>= 0.5x)",
                note=f"only {image.removeprefix(bench.run_id + '-')} built, every run; "
                f"{_seconds(statistics.median(times) - statistics.median(noop))} "
                "more than a no-op",
            )
            row.met = (row.ratio or 0) >= 0.5
            report.rows.append(row)


def scenario_parallel(bench: Bench, sizes: Sizes, report: Report) -> None:
    """Independent sleeping images: -n 4 vs -n 1; and a chain, where -n 4 must not hurt."""
    common = TreeSpec(
        sizes.parallel + 1, sleep=sizes.sleep, stamp=True, hook_every=0, files_per_context=1
    )
    shapes = {
        "wide": bench.tree("pw", common),
        "chain": bench.tree(
            "pc",
            dataclasses.replace(common, components=sizes.chain + 1, shape="deep", width=1, deps=0),
        ),
    }
    for kind, tree in shapes.items():
        progress(f"parallelism ({kind}): first build")
        bench.build(tree, expect=tree.images)
        rebuilt = [image for image in tree.images if image != tree.base_image]
        times: dict[int, list[float]] = {4: [], 1: []}

        for index in runs_of(bench.runs, f"parallelism ({kind})"):
            for jobs in (4, 1) if index % 2 == 0 else (1, 4):
                write_stamps(tree)  # new contents: every image but the base really rebuilds
                times[jobs].append(bench.build(tree, jobs, expect=rebuilt).seconds)
        # (what is measured, how the images relate, target, ratio that meets it)
        label, relation, target, needed = {
            "wide": ("independent images", "images", ">= 2.5x", 2.5),
            "chain": ("chain", "images FROM the previous", "no slowdown (>= 0.95x)", 0.95),
        }[kind]
        row = Row(
            f"4. {SCENARIOS['4']}: {label}, -n 4",
            f"{len(rebuilt)} {relation}, RUN sleep {sizes.sleep:g}",
            times[4],
            times[1],
            baseline_is="doit -n 1 build",
            target=target,
        )
        row.met = (row.ratio or 0) >= needed
        report.rows.append(row)
        shutil.rmtree(tree.root)


def scenario_cold(bench: Bench, sizes: Sizes, report: Report) -> None:
    """Every image built from nothing: new contents each run, the old images removed."""
    ours: list[float] = []
    theirs: list[float] = []
    images = 0

    for _ in runs_of(bench.runs, "cold build"):
        seed = secrets.token_hex(8)  # contents no layer cache has seen
        for tag in ("cp", "cb"):
            bench.remove_images(f"{bench.run_id}-{tag}-")
            tree = bench.tree(tag, standard_tree(sizes, seed=f"{seed}-{tag}"))
            images = len(tree.images)
            if tag == "cp":
                ours.append(bench.build(tree, 4, expect=tree.images).seconds)
            else:
                theirs.append(bench.baseline(tree).seconds)
            shutil.rmtree(tree.root)
    report.rows.append(
        Row(
            f"5. {SCENARIOS['5']}: doit -n 4 build",
            f"{images} images",
            ours,
            theirs,
            baseline_is=f"pai_build way, nothing cached ({bench.baseline_builder})",
        )
    )


def published(tree: GeneratedTree) -> Published:
    """What the last run on `tree` built, pushed and pulled, from its report.json."""
    report = json.loads((tree.root / ".paitasks" / "report.json").read_text(encoding="utf-8"))
    images: dict[str, dict[str, object]] = report["images"]

    def having(status: str, push: bool = False) -> tuple[str, ...]:
        found = []
        for name, entry in images.items():
            part = entry.get("push") if push else entry
            if isinstance(part, dict) and part.get("status") == status:
                found.append(name)
        return tuple(sorted(found))

    return Published(len(images), having("done"), having("done", push=True), having("pulled"))


def image_statuses(tree: GeneratedTree) -> dict[str, str]:
    """Each image's status in the last run on `tree` (`done`, `up to date`, ...), from its
    report.json: the same whatever the run printed."""
    report = json.loads((tree.root / ".paitasks" / "report.json").read_text(encoding="utf-8"))
    return {name: str(entry.get("status")) for name, entry in report["images"].items()}


def _touch_file(tree: GeneratedTree, component: str) -> None:
    """Append a new line to a file of `component`: its image must rebuild."""
    with (tree.src / component / "files" / "f000.txt").open("a", encoding="ascii") as handle:
        handle.write(f"{secrets.token_hex(8)}\n")


def scenario_fresh_runner(bench: Bench, sizes: Sizes, report: Report) -> None:
    """Scenario 6, the standard tree on a fresh CI runner (engine 2, empty, and a copy of
    the tree without `.paitasks/`) while the registry holds every image: nothing changed
    against the same no-op on engine 1, which holds every image, and against pai_build's
    way on a fresh runner (everything built cold); then one leaf changed."""
    tree = bench.tree("fr", standard_tree(sizes))
    progress(f"fresh runner: first build and push of the {len(tree.images)}-image tree")
    bench.publish(tree, expect=(tree.images, tree.images))
    leaves = tree.leaves()
    warm: list[float] = []
    fresh: list[float] = []
    cold: list[float] = []
    leaf: list[float] = []
    nothing: tuple[list[str], list[str]] = ([], [])
    for index in runs_of(bench.runs, "fresh runner"):
        warm.append(bench.publish(tree, expect=nothing).seconds)
        bench.fresh_runner()
        fresh.append(bench.publish(bench.fresh_copy(tree, "frc"), True, nothing).seconds)
        # pai_build's way on a fresh runner: everything, with nothing in the layer cache.
        bench.fresh_runner()
        base_tree = bench.tree("fb", standard_tree(sizes, seed=secrets.token_hex(8)))
        cold.append(bench.baseline(base_tree, env=bench.env2).seconds)
        shutil.rmtree(base_tree.root)
        # One leaf changed (another one each run), on an empty engine 2.
        component = leaves[index % len(leaves)]
        image = tree.components[component].images[0]
        _touch_file(tree, component)
        bench.fresh_runner()
        copy = bench.fresh_copy(tree, "frc")
        leaf.append(bench.publish(copy, True, ([image], [image])).seconds)
        # Engine 1 takes the registry's new image, so it holds every image again.
        bench.doit(tree, "build", "push", f"config={bench.registry_config()}", "pull=1")
    bench.remove_images(engine2=True)
    size = f"{len(tree.images)} images"
    label = f"6. {SCENARIOS['6']}"
    command = "doit -n 4 build push config=CFG on engine 2"
    note = "0 built, 0 pushed, 0 pulled, every run (report.json)"
    rows = [
        Row(
            f"{label}, nothing changed: {command}",
            size,
            fresh,
            warm,
            baseline_is="the same no-op on engine 1, which holds every image",
            target="within 2x (>= 0.5x)",
            note=note,
        ),
        Row(
            f"{label}, nothing changed: {command}",
            size,
            fresh,
            cold,
            baseline_is=f"pai_build way on engine 2: all built, nothing cached "
            f"({bench.baseline_builder})",
            target=">= 15x",
            note=note,
        ),
    ]
    for row, needed in zip(rows, (0.5, 15), strict=True):
        row.met = (row.ratio or 0) >= needed
    rows.append(
        Row(
            f"{label}, one leaf changed: {command}",
            f"{size}, 1 built and pushed",
            leaf,
            cold,
            baseline_is=rows[1].baseline_is,
            note="exactly 1 built, 1 pushed, 0 pulled, every run (report.json); "
            f"{_seconds(statistics.median(leaf) - statistics.median(fresh))} "
            "more than nothing changed",
        )
    )
    report.rows += rows
    shutil.rmtree(tree.root)
    shutil.rmtree(bench.work / "frc")


def scenario_slow_run(bench: Bench, sizes: Sizes, report: Report) -> None:
    """Scenario 6, the layer cache: an image with a slow RUN before a COPY whose file
    changed, rebuilt on a fresh runner; the RUN step comes from the registry's inline
    cache. The baseline is the same build with nothing of that image in the registry."""
    spec = TreeSpec(
        2, sleep=sizes.slow_run, run_first=True, hook_every=0, files_per_context=1
    )
    times: dict[str, list[float]] = {"fs": [], "fc": []}
    for _ in runs_of(bench.runs, "fresh runner, slow RUN"):
        seed = secrets.token_hex(8)  # a RUN layer that engine 2's build cache never saw
        for tag, cached in (("fs", True), ("fc", False)):
            bench.remove_images(f"{bench.run_id}-{tag}-")
            bench.fresh_runner()
            bench.delete_repositories(f"{bench.run_id}-{tag}-")
            tree = bench.tree(tag, dataclasses.replace(spec, seed=f"{seed}-{tag}"))
            slow = tree.images[-1]
            config = f"config={bench.registry_config()}"
            if cached:  # engine 1 pushes both images, with their inline cache
                bench.doit(tree, "build", "push", config)
            else:  # the base only
                bench.doit(tree, f"push:{tree.base_image}", config)
            _touch_file(tree, tree.leaves()[0])
            copy = bench.fresh_copy(tree, f"{tag}c")
            times[tag].append(bench.publish(copy, True, ([slow], [slow])).seconds)
            shutil.rmtree(tree.root)
            shutil.rmtree(copy.root)
    bench.remove_images(engine2=True)
    row = Row(
        f"6. {SCENARIOS['6']}, slow RUN before a changed COPY: doit -n 4 build push "
        "config=CFG on engine 2",
        f"base + 1 image, RUN sleep {sizes.slow_run:g}, 1 built and pushed",
        times["fs"],
        times["fc"],
        baseline_is="the same with nothing of that image in the registry",
        target=f"RUN from the registry's cache (< {sizes.slow_run:g} s)",
        note=f"{_seconds(statistics.median(times['fc']) - statistics.median(times['fs']))} "
        "saved",
    )
    row.met = statistics.median(row.ours) < sizes.slow_run
    report.rows.append(row)


@dataclass(frozen=True)
class Variant:
    """One way scenario 7 builds its tree: `builders=` or not, and the checks on its report."""

    tag: str  # the tree's tag (image names `<run id>-<tag>-...`)
    label: str
    builders: tuple[str, ...]  # `builders=`; () builds on the local engine


@dataclass
class Spread:
    """What the runs of one variant measured: wall times, the build time of every image
    but the base (report.json's `seconds`), and how many each engine built per run."""

    walls: list[float] = field(default_factory=list)
    builds: list[float] = field(default_factory=list)
    counts: list[dict[str, int]] = field(default_factory=list)

    def per_build(self) -> float:
        return statistics.median(self.builds)

    def overhead(self, rounds: int) -> float:
        """The wall time beyond `rounds` builds one after another: start, plan, the base's
        build, the pushes of `:tag`, the end."""
        return statistics.median(self.walls) - rounds * self.per_build()

    def described(self) -> str:
        """`default 4, paitasks-engine2 4`, or a range per engine when runs differed."""
        names = sorted({name for counts in self.counts for name in counts})
        parts = []
        for name in names:
            found = sorted(counts.get(name, 0) for counts in self.counts)
            spread = f"{found[0]}" if found[0] == found[-1] else f"{found[0]}-{found[-1]}"
            parts.append(f"{name} {spread}")
        return ", ".join(parts)


RETRY_AFTER = 1.0  # seconds: what scenario 8's 429s ask for


@dataclass(frozen=True)
class FarRun:
    """One timed run through the far registry, with what it asked of it."""

    seconds: float
    requests: int  # requests the far registry served
    waits: float  # seconds of Retry-After waits the registry asked for (their union)


def far_run(bench: Bench, far: Any, run: Callable[[], Timed]) -> FarRun:
    """`run()`, timed, with the far registry's log of it."""
    mark = far.mark()
    timed = run()
    served = far.requests(mark)
    asked = sorted(  # each 429 asked for RETRY_AFTER seconds from its answer
        (item["end"], item["end"] + RETRY_AFTER)
        for item in served if item.get("fault") == "429" and item.get("end")
    )
    waits, reach = 0.0, float("-inf")
    for start, end in asked:
        if end > reach:
            waits += end - max(start, reach)
            reach = end
    return FarRun(timed.seconds, len(served), waits)


def scenario_far_registry(bench: Bench, sizes: Sizes, report: Report) -> None:
    """Scenario 8: the registry far away. bench's own proxy (tests/far_registry.py)
    between the runners and the registry adds a chosen round trip (0, 50, 150 ms) to
    every byte and connection; the standard tree, published through it. At each round
    trip: a fresh runner where nothing changed, one leaf changed there, and the warm
    engine's no-op with push; a cold build and push of the whole tree against pai_build's
    way (build everything, then `docker tag` and `docker push` each); and, at 50 ms,
    the leaf change with faults: one request in three answered 429 (Retry-After: 1) the
    first time, or 503 the first time."""
    sys.path.insert(0, str(REPO))
    from tests.far_registry import FarRegistry

    round_trips = (0, 50) if bench.runs == 1 and sizes is QUICK else (0, 50, 150)
    with FarRegistry(REGISTRY) as far:
        config = bench.registry_config(far.address)
        tree = bench.tree("far", standard_tree(sizes))
        progress(f"far registry: first build and push of the {len(tree.images)}-image tree")
        bench.publish(tree, expect=(tree.images, tree.images), config=config)
        leaves = tree.leaves()
        nothing: tuple[list[str], list[str]] = ([], [])
        times: dict[tuple[str, int], list[FarRun]] = {}
        loads: dict[tuple[str, int], list[float]] = {}  # the engine's load of the base
        count = 0

        def leaf_change(tag: str, key: tuple[str, int]) -> Timed:
            nonlocal count
            component = leaves[count % len(leaves)]
            count += 1
            image = tree.components[component].images[0]
            _touch_file(tree, component)
            bench.fresh_runner()
            copy = bench.fresh_copy(tree, tag)
            result = bench.publish(copy, True, ([image], [image]), config=config)
            loads.setdefault(key, []).append(engine_loads(copy.root))
            # Engine 1 takes the new image, so that it holds every image again.
            bench.doit(tree, "build", "push", f"config={config}", "pull=1")
            return result

        def fresh(tag: str) -> Timed:
            bench.fresh_runner()
            return bench.publish(bench.fresh_copy(tree, tag), True, nothing, config=config)

        # The round trips by turns within each run, so that a ratio compares runs made
        # minutes apart, not a quarter of an hour (this machine's speed drifts).
        for _ in runs_of(bench.runs, f"far registry at {', '.join(map(str, round_trips))} ms"):
            for rtt in round_trips:
                far.rtt(rtt)
                for kind, job in (
                    ("warm", lambda: bench.publish(tree, expect=nothing, config=config)),
                    ("fresh", lambda: fresh("farc")),
                    ("leaf", functools.partial(leaf_change, "farc", ("leaf", rtt))),
                ):
                    times.setdefault((kind, rtt), []).append(far_run(bench, far, job))
        far.rtt(50)
        for _ in runs_of(bench.runs, "far registry at 50 ms, with faults"):
            for kind, rules in (
                ("429", [{"action": "429", "every": 3, "retry_after": f"{RETRY_AFTER:g}"}]),
                ("503", [{"action": "503", "every": 3}]),
            ):
                far.faults(rules)
                try:
                    times.setdefault((kind, 50), []).append(
                        far_run(bench, far, functools.partial(leaf_change, "farf", (kind, 50)))
                    )
                finally:
                    far.faults([])
        cold: dict[int, tuple[list[float], list[float]]] = {}
        for rtt in round_trips[1:]:
            far.rtt(rtt)
            for index in runs_of(max(1, bench.runs // 2), f"cold build and push at {rtt} ms"):
                seed = secrets.token_hex(8)
                ours = bench.tree("farcold", standard_tree(sizes, seed=f"o{seed}"))
                theirs = bench.tree("farbase", standard_tree(sizes, seed=f"b{seed}"))
                pair = cold.setdefault(rtt, ([], []))
                for turn in ((0, 1) if index % 2 == 0 else (1, 0)):  # who goes first: by turns
                    if turn == 0:
                        expect = (ours.images, ours.images)
                        pair[0].append(bench.publish(ours, expect=expect, config=config).seconds)
                    else:
                        pushed = f"{far.address}/{bench.run_id}"
                        pair[1].append(bench.baseline(theirs, push=pushed).seconds)
                bench.remove_images(f"{bench.run_id}-farcold-")
                bench.remove_images(f"{bench.run_id}-farbase-")
                shutil.rmtree(ours.root)
                shutil.rmtree(theirs.root)
    bench.remove_images(engine2=True)
    shutil.rmtree(tree.root)
    for tag in ("farc", "farf"):
        shutil.rmtree(bench.work / tag, ignore_errors=True)
    report.rows += far_rows(times, cold, len(tree.images), round_trips, loads)


def engine_loads(root: Path) -> float:
    """Seconds the run under `root` spent loading images into the engine itself (a fresh
    runner's bases: the timeline's engine lane)."""
    trace = json.loads((root / ".paitasks" / "trace.json").read_text(encoding="utf-8"))
    events = trace["traceEvents"]
    engine = {event["pid"] for event in events
              if event["ph"] == "M" and event["args"]["name"] == "engine"}
    return sum(float(event["dur"]) for event in events if event["ph"] == "X"
               and event["pid"] in engine and event["name"].startswith("load ")) / 1e6


def far_rows(
    times: dict[tuple[str, int], list[FarRun]],
    cold: dict[int, tuple[list[float], list[float]]],
    images: int,
    round_trips: Sequence[int],
    loads: dict[tuple[str, int], list[float]] | None = None,
) -> list[Row]:
    label = f"8. {SCENARIOS['8']}"
    size = f"{images} images"
    rows = []

    def seconds(kind: str, rtt: int) -> list[float]:
        return [run.seconds for run in times.get((kind, rtt), [])]

    def loaded(rtt: int) -> str:
        found = {at: statistics.median(values) for (kind, at), values in (loads or {}).items()
                 if kind == "leaf" and at in (0, rtt) and values}
        if rtt not in found:
            return ""
        zero = f" ({found[0]:.2f} s at 0 ms)" if 0 in found else ""
        return f"; of it, the engine loading the leaf's base: {found[rtt]:.2f} s{zero}"

    def requests(kind: str, rtt: int) -> str:
        counts = [run.requests for run in times.get((kind, rtt), [])]
        return f"{statistics.median(counts):.0f} requests" if counts else ""

    for rtt in round_trips[1:]:
        for kind, what, target, needed in (
            ("fresh", "fresh runner, nothing changed", "<= 1.5x (>= 0.67x)", 1 / 1.5),
            ("warm", "warm engine, nothing changed, with push", "<= 1.3x (>= 0.77x)", 1 / 1.3),
        ):
            row = Row(
                f"{label} at {rtt} ms: {what}", size, seconds(kind, rtt), seconds(kind, 0),
                baseline_is="the same run with the registry 0 ms away",
                target=target if rtt == 50 else "",
                note=f"{requests(kind, rtt)}; 0 built, 0 pushed",
            )
            if rtt == 50:
                row.met = (row.ratio or 0) >= needed
            rows.append(row)
        leaf = Row(
            f"{label} at {rtt} ms: fresh runner, one leaf changed", f"{size}, 1 built",
            seconds("leaf", rtt), seconds("leaf", 0),
            baseline_is="the same run with the registry 0 ms away",
            target="<= 2.5 s" if rtt == 50 else "",
            note=f"{requests('leaf', rtt)}; exactly 1 built and 1 pushed{loaded(rtt)}",
        )
        if rtt == 50:
            leaf.met = statistics.median(leaf.ours) <= 2.5
        rows.append(leaf)
        ours, theirs = cold.get(rtt, ([], []))
        row = Row(
            f"{label} at {rtt} ms: cold build and push of the whole tree", size, ours, theirs,
            baseline_is="pai_build's way: docker build each, then docker tag and push each",
            target=">= 2x" if rtt == 50 else "",
        )
        if rtt == 50 and row.ratio is not None:
            row.met = row.ratio >= 2
        rows.append(row)
    base = statistics.median(seconds("leaf", 50)) if seconds("leaf", 50) else 0.0
    for kind, what in (("429", "429 (Retry-After: 1) to one request in three, once"),
                       ("503", "503 to one request in three, once")):
        runs = times.get((kind, 50), [])
        if not runs:
            continue
        waits = statistics.median(run.waits for run in runs)
        row = Row(
            f"{label} at 50 ms: fresh runner, one leaf changed, {what}", f"{size}, 1 built",
            [run.seconds for run in runs], seconds("leaf", 50),
            baseline_is="the same run without faults",
            target="<= (that + the waits asked) x 1.5",
            note=f"the run succeeded every time; waits asked {waits:.1f} s; "
                 f"{statistics.median(run.requests for run in runs):.0f} requests",
        )
        row.met = statistics.median(row.ours) <= (base + waits) * 1.5
        rows.append(row)
    return rows


def context_host(name: str) -> str | None:
    """The docker endpoint of docker context `name`; None if there is no such context."""
    result = subprocess.run(
        ["docker", "context", "inspect", name, "--format", "{{.Endpoints.docker.Host}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def built_where(tree: GeneratedTree) -> tuple[dict[str, int], list[float]]:
    """From the last run's report.json: images built per engine (`local` without
    `builders=`) and the build seconds of each image, the base excepted."""
    report = json.loads((tree.root / ".paitasks" / "report.json").read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    seconds: list[float] = []
    for name, entry in report["images"].items():
        if name == tree.base_image:
            continue
        engine = str(entry.get("builder") or "local")
        counts[engine] = counts.get(engine, 0) + 1
        seconds.append(float(entry["seconds"]))
    return counts, seconds


def scenario_two_engines(bench: Bench, sizes: Sizes, report: Report) -> None:
    """Scenario 7: independent sleeping images built and pushed with `builders=` naming
    engine 1 and engine 2, against `builders=` naming engine 1 alone and against local
    builds (no `builders=`); and with `builders=` naming engine 1 and the BuildKit builder
    (driver remote), against engine 1 alone. The engines share this machine's cores: the
    figures give the cost of a build and of the rest, from which the rows' notes estimate
    N machines."""
    host = context_host(ENGINE2_CONTEXT)
    if host != ENGINE2_HOST:
        raise BenchError(
            f"docker context {ENGINE2_CONTEXT!r} should reach engine 2 ({ENGINE2_HOST}), "
            f"it reaches {host or 'nothing (no such context)'}: set PAITASKS_ENGINE2_CONTEXT"
        )
    variants = (
        Variant("te", f"builders={ENGINE1_CONTEXT},{ENGINE2_CONTEXT}",
                (ENGINE1_CONTEXT, ENGINE2_CONTEXT)),
        Variant("oe", f"builders={ENGINE1_CONTEXT}", (ENGINE1_CONTEXT,)),
        Variant("lo", "no builders= (local builds)", ()),
        Variant("tb", f"builders={ENGINE1_CONTEXT},{BUILDKIT_BUILDER}",
                (ENGINE1_CONTEXT, BUILDKIT_BUILDER)),
    )
    spec = TreeSpec(sizes.parallel + 1, sleep=sizes.sleep, hook_every=0, files_per_context=1)
    config = f"config={bench.registry_config()}"
    spreads = {variant.tag: Spread() for variant in variants}
    images = sizes.parallel
    for index in runs_of(bench.runs, "two engines"):
        seed = secrets.token_hex(8)  # contents no engine's cache has seen, the base's too
        shift = index % len(variants)  # which goes first: each in turn
        for variant in variants[shift:] + variants[:shift]:
            prefix = f"{bench.run_id}-{variant.tag}-"
            bench.remove_images(prefix)
            bench.remove_images(prefix, engine2=True)
            bench.delete_repositories(prefix)
            tree = bench.tree(variant.tag, dataclasses.replace(spec, seed=f"{seed}-{variant.tag}"))
            args = ["build", "push", config]
            if variant.builders:
                args.append(f"builders={','.join(variant.builders)}")
            result = bench.doit(tree, *args)
            done = published(tree)
            every = tuple(sorted(tree.images))
            wanted = Published(len(every), every, every, ())
            if done != wanted:
                raise BenchError(f"{variant.label}: expected {wanted}, report.json says {done}")
            counts, seconds = built_where(tree)
            if sorted(counts) != sorted(variant.builders or ("local",)):
                raise BenchError(f"{variant.label}: images built per engine {counts}")
            spread = spreads[variant.tag]
            spread.walls.append(result.seconds)
            spread.builds += seconds
            spread.counts.append(counts)
            shutil.rmtree(tree.root)
    for variant in variants:
        prefix = f"{bench.run_id}-{variant.tag}-"
        bench.remove_images(prefix)
        bench.remove_images(prefix, engine2=True)
        bench.delete_repositories(prefix)

    two, one, local, builder = (spreads[variant.tag] for variant in variants)
    jobs = 4  # bench.doit's -n
    rounds = -(-images // jobs)
    # An estimate, not a measurement: N machines like this one, each building `jobs` images
    # at once as the one-engine run did (so its per-build time holds), with -n jobs*N.
    per_build, overhead = one.per_build(), one.overhead(rounds)
    estimates = ", ".join(
        f"N={machines} (-n {jobs * machines}): "
        f"{_seconds(overhead + -(-images // (jobs * machines)) * per_build)}"
        for machines in (2, 4)
    )
    size = f"{images} images, RUN sleep {sizes.sleep:g}"
    command = f"doit -n {jobs} build push config=CFG"
    rows = []
    for baseline, variant in ((one, variants[1]), (local, variants[2])):
        row = Row(
            f"7. {SCENARIOS['7']}: {command} {variants[0].label}",
            size,
            two.walls,
            baseline.walls,
            baseline_is=f"the same with {variant.label}",
            target="no slower (>= 0.95x)",
            note=f"built per run: {two.described()}; median build {_seconds(two.per_build())}"
            f" against {_seconds(baseline.per_build())}",
        )
        row.met = (row.ratio or 0) >= 0.95
        rows.append(row)
    rows[0].note += (
        f"; ESTIMATE for N machines, from {variants[1].label}'s figures "
        f"({_seconds(per_build)} per build with {jobs} at once, "
        f"{_seconds(overhead)} for the rest): {estimates}"
    )
    row = Row(
        f"7. {SCENARIOS['7']}: {command} {variants[3].label}",
        size,
        builder.walls,
        one.walls,
        baseline_is=f"the same with {variants[1].label}",
        target="no slower (>= 0.95x)",
        note=f"a buildx builder of the remote driver (BuildKit 0.13) and a dockerd; built "
        f"per run: {builder.described()}; median build {_seconds(builder.per_build())} "
        f"against {_seconds(one.per_build())}",
    )
    row.met = (row.ratio or 0) >= 0.95
    rows.append(row)
    report.rows += rows


# -- output ---------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


def format_table(report: Report) -> str:
    header = ["scenario", "size", "paitasks median", "min-max", "baseline median", "ratio"]
    header += ["target", "baseline is", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report.rows:
        ratio = row.ratio
        target = row.target
        if row.met is not None:
            target += " met" if row.met else " NOT met"
        cells = [
            row.scenario,
            row.size,
            _seconds(statistics.median(row.ours)),
            f"{_seconds(min(row.ours))} - {_seconds(max(row.ours))}",
            _seconds(statistics.median(row.baseline)) if row.baseline else "-",
            f"{ratio:.1f}x" if ratio is not None else "-",
            target or "-",
            row.baseline_is or "-",
            row.note or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_breakdown(report: Report) -> str:
    if not report.breakdown:
        return ""
    lines = [
        "| part of the no-op run (doit -n 1, 40 images when full) | median | min-max |",
        "|---|---|---|",
    ]
    for name, values in report.breakdown:
        if not values:
            lines.append(f"| {name} | | |")
            continue
        lines.append(
            f"| {name} | {_seconds(statistics.median(values))} | "
            f"{_seconds(min(values))} - {_seconds(max(values))} |"
        )
    return "\n".join(lines)


def format_planning(report: Report) -> str:
    if not report.planning:
        return ""
    sizes = list(report.planning)
    lines = [
        "| part of doit list --all (median) | "
        + " | ".join(f"{n:,} components" for n in sizes)
        + " |",
        "|---|" + "---|" * len(sizes),
    ]
    names = list(dict.fromkeys(name for parts in report.planning.values() for name, _ in parts))
    for name in names:
        cells = []
        for size in sizes:
            values = dict(report.planning[size]).get(name)
            cells.append(_seconds(statistics.median(values)) if values else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    """The machine and engine, as they are at the end of the run."""
    info = {
        "cpus": str(os.cpu_count()),
        "python": sys.version.split()[0],
        "load average (1, 5, 15 min) at the end": _load(),
    }
    with contextlib.suppress(docker.errors.DockerException):
        client = docker.from_env(timeout=30)
        info["docker engine"] = str(client.version().get("Version"))
        info["images in the engine at the end"] = str(len(client.api.images()))
        client.close()
    return info


def snapshot(repo: Path, destination: Path) -> Path:
    """The files of `repo`'s HEAD commit, exported to `destination`."""
    destination.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", "HEAD"],
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def describe_code(repo: Path, snapshot: bool) -> str:
    """Which code was measured: the commit, and whether the working tree had edits."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(repo)
    if snapshot:
        return f"commit {commit} (snapshot)"
    return f"commit {commit}" + (" plus uncommitted edits" if dirty else "")


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="paitasks-bench-"))
    try:
        yield folder
    finally:
        if keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5)")
    parser.add_argument("--only", default="", help="scenario numbers, e.g. 2,3 (default all)")
    parser.add_argument(
        "--builder",
        choices=("buildx", "classic"),
        default=None,
        help="paitasks' builder (default: its own choice, buildx when installed)",
    )
    parser.add_argument(
        "--baseline-builder",
        choices=BUILDERS,
        default="classic",
        help="classic: DOCKER_BUILDKIT=0 docker build, as pai_build ran it",
    )
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="the paitasks checkout to run (default: this one)"
    )
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="run the repo's last commit (git archive HEAD), not its working tree, so edits "
        "made while the benchmark runs do not change the code under test",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp trees (debugging)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 5)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown or runs < 1:
        parser.error(
            f"unknown scenario {unknown} (choose from 1-{len(SCENARIOS)})"
            if unknown
            else "runs >= 1"
        )

    report = Report()
    report.machine["load average (1, 5, 15 min) at the start"] = _load()
    started = time.perf_counter()
    status = 0
    with workspace(args.keep) as work:
        repo = args.repo.resolve()
        report.machine["paitasks code"] = describe_code(repo, args.snapshot)
        if args.snapshot:
            repo = snapshot(repo, work / "repo")
        bench = Bench(work, repo, runs, args.builder, args.baseline_builder)
        progress(f"run id {bench.run_id}, {runs} run(s) per figure, temp trees in {work}")
        try:
            # Compile every .pyc before any timing (some modules load only when needed).
            bench.python(
                "import compileall, paitasks; compileall.compile_dir(paitasks.__path__[0], quiet=1)"
            )
            if "1" in chosen:
                scenario_planning(bench, sizes, report)
            if "2" in chosen or "3" in chosen:
                if "2" not in chosen:  # the leaf scenario reuses the no-op trees
                    progress("scenario 3 needs scenario 2's trees: running both")
                scenario_noop_and_leaf(bench, sizes, report, run_leaf="3" in chosen)
            if "4" in chosen:
                scenario_parallel(bench, sizes, report)
            if "5" in chosen:
                scenario_cold(bench, sizes, report)
            if "6" in chosen:
                scenario_fresh_runner(bench, sizes, report)
                scenario_slow_run(bench, sizes, report)
            if "7" in chosen:
                scenario_two_engines(bench, sizes, report)
            if "8" in chosen:
                scenario_far_registry(bench, sizes, report)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            print("bench: stopped; the figures measured so far follow", file=sys.stderr)
            status = 1
        finally:
            try:
                bench.cleanup()
            finally:
                bench.close()
    report.machine.update(machine())
    report.machine["benchmark wall time"] = f"{time.perf_counter() - started:.0f} s"
    report.machine["runs per figure"] = str(runs)
    print_report(report)
    if args.json:
        data = {
            "rows": [asdict(r) for r in report.rows],
            "breakdown": report.breakdown,
            "planning": report.planning,
            "machine": report.machine,
        }
        args.json.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return status


def print_report(report: Report) -> None:
    if report.rows:
        print(format_table(report))
    for extra in (format_planning(report), format_breakdown(report)):
        if extra:
            print()
            print(extra)
    print()
    for key, value in report.machine.items():
        print(f"- {key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
