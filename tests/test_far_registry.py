"""A registry as users have it: far away, rate-limited, failing now and then, behind tokens.

Engine 1 publishes a prefixed copy of src-fixtures through `FarRegistry` (tests/
far_registry.py), a proxy of this project's own that adds a round trip to every byte and
injects faults, in front of a registry of this module's own. Engine 2 stands for a fresh
CI runner. What the runs did is read from the proxy's log (every request, who sent it,
what it was answered, when), from the registry's HTTP API and from `report.json`; the
tests count and compare, they never time. The times are in bench/run.py (scenario 8).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paitasks import publish
from paitasks.engine import Engine
from tests.far_registry import FarRegistry, logical_key, token_keys
from tests.support import (
    ENGINE2_ENV,
    FIXTURES,
    PAI_BUILD,
    LoggedRegistry,
    TokenAuth,
    clear_engine2,
    doit_on,
    engine2_images,
    fingerprint_tag,
    free_port,
    output,
    prefixed_tree,
    report,
    run_on_engine2_busybox,
    statuses,
    succeeded,
    write_config,
)

pytestmark = pytest.mark.engine

TAG = "v1"
RTT = 40  # milliseconds: far enough to tell requests sent at once from one after another
OURS = "python-urllib3"  # the User-Agent of paitasks' own registry requests
DOCKER = ("docker/", "containerd/")  # the engine's: dockerd's own, its BuildKit's
USER, PASSWORD = "ci-robot", "far-Pa55-do-not-leak"
FAST_STALL = {"PAI_REGISTRY_STALL": "3"}


@dataclass(frozen=True)
class Published:
    """The tree engine 1 built and pushed through the far registry."""

    src: Path
    ns: str
    config: Path
    far: FarRegistry
    registry: LoggedRegistry
    images: list[str]
    watchdog: str  # its prefixed name: the leaf the tests change

    def digest(self, image: str, tag: str = TAG) -> str | None:
        return self.registry.api.manifest_digest(f"{self.ns}/{image}", tag)


def fresh_runner(published: Published, root: Path, change: str | None = None) -> Path:
    """A fresh clone of the tree on engine 2 (no `.paitasks/`, no image of the tree);
    with `change`, a new line in watchdog's cmd/main.sh, so watchdog must be rebuilt."""
    clear_engine2(published.ns)
    src = root / "src"
    shutil.copytree(published.src, src, symlinks=True)
    if change is not None:
        script = src / "watchdog" / "cmd" / "main.sh"
        script.write_text(script.read_text() + f"# {change}\n")
    return src


def ours(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in requests if item["agent"].startswith(OURS)]


def engines(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in requests if item["agent"].startswith(DOCKER)]


def rounds(requests: list[dict[str, Any]], every: list[dict[str, Any]]) -> list[list[str]]:
    """`requests` grouped by when their client sent them: a request reaches the proxy's
    HTTP layer half a round trip after it was sent, and the first one of a connection a
    whole round trip later (the handshake). Requests sent one after another are a round
    trip apart; requests sent at once, a few milliseconds. `every` is all the requests
    the proxy served in the run (to tell which request opened its connection)."""
    opened: dict[int, float] = {}
    for item in sorted(every, key=lambda entry: entry["start"]):
        opened.setdefault(item["connection"], item["start"])
    rtt = RTT / 1000
    sent = sorted(
        (item["start"] - rtt / 2 - (rtt if opened[item["connection"]] == item["start"] else 0),
         item["path"])
        for item in requests
    )
    groups: list[list[str]] = []
    last = float("-inf")
    for moment, path in sent:
        if moment - last > rtt / 2:
            groups.append([])
        groups[-1].append(path)
        last = moment
    return groups


def faulted(requests: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [item for item in requests if item["fault"] == action]


def key(item: dict[str, Any]) -> str:
    return logical_key(item["method"], f"{item['path']}?{item['query']}")


def retried_later(requests: list[dict[str, Any]], failed: dict[str, Any]) -> dict[str, Any]:
    """The request after `failed` that is the same, from the same client (its retry: an
    upload's id apart)."""
    later = [item for item in requests
             if item["start"] > failed["start"] and key(item) == key(failed)
             and item["agent"] == failed["agent"]]
    assert later, f"{key(failed)} was never tried again"
    return later[0]


def tags_served(published: Published) -> dict[str, str | None]:
    return {image: published.digest(image) for image in published.images}


def timeline(src: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each slice of the run's `.paitasks/trace.json`, with the name of its process."""
    trace = json.loads((src.parent / ".paitasks" / "trace.json").read_text())
    processes = {event["pid"]: event["args"]["name"] for event in trace["traceEvents"]
                 if event["ph"] == "M"}
    return [(processes[event["pid"]], event) for event in trace["traceEvents"]
            if event["ph"] == "X"]


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def far(logged_registry: LoggedRegistry) -> Iterator[FarRegistry]:
    with FarRegistry(logged_registry.address, rtt_ms=RTT) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def published(
    ns: str, far: FarRegistry, logged_registry: LoggedRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Published:
    root = tmp_path_factory.mktemp("far-published")
    src = root / "src"
    names = prefixed_tree(FIXTURES, src, ns)
    config = write_config(root / "cfg", far.address, ns, TAG)
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={config}"))
    images = sorted(report(src)["images"])
    found = Published(src, ns, config, far, logged_registry, images, names["watchdog"])
    assert all(tags_served(found).values()), tags_served(found)
    return found


@pytest.fixture
def faults(far: FarRegistry) -> Iterator[FarRegistry]:
    """The far registry, its fault rules cleared after the test."""
    yield far
    far.faults([])


# -- round trips: ask everything at once, on few connections ---------------------------


def test_a_fresh_runner_asks_every_question_once_and_at_once(
    published: Published, tmp_path: Path
) -> None:
    src = fresh_runner(published, tmp_path)
    mark = published.far.mark()
    result = doit_on(src, "-n", "4", "build", "push", f"config={published.config}", engine2=True)
    succeeded(result)
    found = statuses(src)
    assert set(found.values()) == {"up to date in the registry"}, found
    requests = published.far.requests(mark)
    assert not engines(requests), "the engine was not needed: nothing to pull or push"
    # `:tag` and each fingerprint tag known before the hooks run are asked with a GET
    # (the one round trip a HEAD costs, and the manifest comes with it), and each
    # image's config is read once, to check its fingerprint label.
    heads = [item for item in ours(requests) if "/manifests/" in item["path"]]
    asked = Counter(item["path"] for item in heads)
    assert all(count == 1 for count in asked.values()), asked.most_common(3)
    images = report(src)["images"]
    # componentB's hook declares no inputs, so its fingerprint is known only once the
    # hook ran; by then the label of what its `:tag` serves (read ahead) says that
    # fingerprint, and its check asks nothing.
    behind = next(image for image in images if image.endswith("component-b"))
    expected = {f"/v2/{published.ns}/{image}/manifests/{tag}"
                for image, entry in images.items()
                for tag in (TAG, fingerprint_tag(entry["fingerprint"]))
                if image != behind or tag == TAG}
    assert set(asked) == expected
    assert {item["method"] for item in ours(requests)} == {"GET"}
    configs = [item for item in ours(requests) if "/blobs/" in item["path"]]
    assert len(configs) == len({item["path"] for item in configs}) == len(images)
    others = [item["path"] for item in ours(requests) if item["method"] == "GET"
              and item not in heads and item not in configs]
    assert others == ["/v2/"]
    # Asked at once: the `:tag`s as soon as the tree is read and the fingerprint tags
    # once the run begins: two round trips for any number of images (one when they
    # overlap); the configs read one round trip after their manifests, all at once.
    groups = rounds(heads, requests)
    assert len(groups) <= 2, groups
    assert max(len(group) for group in groups) >= len(published.images) - 1, groups
    assert len(rounds(heads + configs, requests)) <= 5
    assert len({item["connection"] for item in heads}) >= len(published.images) - 1
    registry = report(src)["registry"]
    assert registry["requests"] >= len(expected)
    assert registry["retried"] == 0


def test_the_timeline_and_the_report_show_the_waits(
    published: Published, tmp_path: Path
) -> None:
    src = fresh_runner(published, tmp_path)
    succeeded(doit_on(src, "-n", "4", "build", f"config={published.config}", engine2=True))
    slices = Counter(process for process, _ in timeline(src))
    assert slices["up-to-date checks"] == len(published.images)
    assert slices[f"registry {published.far.address}"] >= len(published.images)
    shown = subprocess.run([PAI_BUILD, "report", "--src", str(src)], capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert "registry: " in shown and "the up-to-date checks waited" in shown


def test_a_warm_engine_asks_only_what_its_tags_serve(published: Published) -> None:
    """The engine that pushed holds every image under the registry's digests: the push
    checks need `:tag` only, one request per image, none of them twice, and no config
    (their labels are known from the push)."""
    mark = published.far.mark()
    succeeded(doit_on(published.src, "-n", "4", "build", "push", f"config={published.config}"))
    asked = ours(published.far.requests(mark))
    assert [item["path"] for item in asked if "/blobs/" in item["path"]] == []
    heads = [item for item in asked if "/manifests/" in item["path"]]
    assert sorted(item["path"] for item in heads) == sorted(
        f"/v2/{published.ns}/{image}/manifests/{TAG}" for image in published.images
    )


def test_a_changed_image_is_published_in_four_round_trips(
    published: Published, tmp_path: Path
) -> None:
    """After the build, nothing the checks read is read again: the image's new layers
    and config are sent and its base's layers mounted all at once, then its manifest is
    stored under its fingerprint tag, then `:tag` moves by putting that same manifest."""
    src = fresh_runner(published, tmp_path, change=secrets.token_hex(4))
    mark = published.far.mark()
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                      engine2=True))
    assert report(src)["images"][published.watchdog]["push"]["status"] == "done"
    requests = published.far.requests(mark)
    repository = f"/v2/{published.ns}/{published.watchdog}/"
    sent = [item for item in ours(requests)
            if item["path"].startswith(repository) and item["method"] in ("POST", "PUT")]
    assert any("/blobs/uploads/" in item["path"] and item["query"].startswith("mount=")
               for item in sent), "no layer of the base was mounted"
    first = min(item["start"] for item in sent)
    later = [item for item in ours(requests) if item["start"] >= first]
    assert [item for item in later if item["method"] in ("GET", "HEAD")] == []
    manifests = [item["path"] for item in sent if "/manifests/" in item["path"]]
    fingerprint = report(src)["images"][published.watchdog]["fingerprint"]
    assert manifests == [f"{repository}manifests/{fingerprint_tag(fingerprint)}",
                         f"{repository}manifests/{TAG}"]
    assert len(rounds(sent, requests)) == 4, rounds(sent, requests)


def test_a_new_image_is_built_without_asking_for_a_cache_the_registry_lacks(
    published: Published, tmp_path: Path
) -> None:
    """The registry has no `:tag` of an image never published (asked when the run
    began): its build is not told to import a layer cache from there, so the engine
    asks the registry nothing about it."""
    src = fresh_runner(published, tmp_path)
    base = next(name for name in published.images if name.endswith("-base-image"))
    image = f"{published.ns}-brand-new"
    (src / "brand-new" / "build").mkdir(parents=True)
    (src / "brand-new" / "note.txt").write_text("new\n", encoding="utf-8")
    (src / "brand-new" / "build" / f"{image}.dockerfile").write_text(
        f"FROM {base}\nCOPY note.txt /etc/note.txt\n", encoding="utf-8")
    mark = published.far.mark()
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                      engine2=True))
    requests = published.far.requests(mark)
    about = f"/v2/{published.ns}/{image}/"
    assert [item["path"] for item in engines(requests) if item["path"].startswith(about)] == []
    assert report(src)["images"][image]["push"]["status"] == "done"
    assert published.registry.api.manifest(f"{published.ns}/{image}", TAG)["layers"]
    assert run_on_engine2_busybox(image, "/etc/note.txt") == "new\n"


# -- faults: transient ones cost time, not the run --------------------------------------


def test_429_with_retry_after_on_one_request_in_three(
    published: Published, faults: FarRegistry, tmp_path: Path
) -> None:
    change = secrets.token_hex(4)
    src = fresh_runner(published, tmp_path, change=change)
    faults.faults([{"action": "429", "every": 3, "retry_after": "1"}])
    mark = faults.mark()
    result = doit_on(src, "-n", "4", "build", "push", f"config={published.config}", engine2=True)
    succeeded(result)
    requests = faults.requests(mark)
    refused = faulted(requests, "429")
    assert refused, "the rule picked no request"
    for failed in ours(refused):  # paitasks' own: tried again once the wait asked for passed
        if failed["method"] == "POST" and not failed["query"]:
            # An upload's first request is the same for every blob sent at once: its
            # retry is one of those that came after the wait.
            later = [item for item in ours(requests) if key(item) == key(failed)
                     and item["start"] - failed["end"] >= 1.0 - 0.05]
            assert later and later[0]["status"] not in (429, None), (key(failed), later)
            continue
        again = retried_later(requests, failed)
        assert again["start"] - failed["end"] >= 1.0 - 0.05, (key(failed), failed, again)
        assert again["status"] not in (429, None)
    entries = report(src)["images"]
    for image, entry in entries.items():  # each 429 about an image is a retry of it
        about = [item for item in ours(refused)
                 if item["path"].startswith(f"/v2/{published.ns}/{image}/")]
        assert entry["retries"] >= len(about), (image, entry["retries"], about)
    assert entries[published.watchdog]["push"]["status"] == "done"
    assert published.digest(published.watchdog) == published.registry.api.manifest_digest(
        f"{published.ns}/{published.watchdog}",
        fingerprint_tag(entries[published.watchdog]["fingerprint"]),
    )
    image = f"{published.far.address}/{published.ns}/{published.watchdog}:{TAG}"
    assert change in run_on_engine2_busybox(image, "/usr/bin/watchdog")


# Who sends the images: paitasks itself (images up to `send_limit` MB, the default for
# these), or the engine's own push (all images with `send_limit=0`).
SENDERS = {"paitasks": {}, "engine": {"PAI_SEND_LIMIT": "0"}}
# The requests of an upload: paitasks sends a blob with POST then PUT, the engine with
# POST, PATCH, PUT.
UPLOADING = {"paitasks": "PUT", "engine": "PATCH"}


def senders(requests: list[dict[str, Any]], sender: str) -> list[dict[str, Any]]:
    return ours(requests) if sender == "paitasks" else engines(requests)


@pytest.mark.parametrize("sender", sorted(SENDERS))
def test_429_without_retry_after_and_503_are_tried_again(
    published: Published, faults: FarRegistry, tmp_path: Path, sender: str
) -> None:
    src = fresh_runner(published, tmp_path, change=secrets.token_hex(4))
    faults.faults([
        {"action": "429", "every": 3, "methods": ["GET"], "path": "/manifests/"},
        {"action": "503", "every": 3, "methods": ["GET", "POST", "PATCH", "PUT"]},
    ])
    mark = faults.mark()
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                   engine2=True, env=SENDERS[sender]))
    requests = faults.requests(mark)
    assert faulted(requests, "429") and faulted(requests, "503")
    uploads = [item for item in senders(faulted(requests, "503"), sender)
               if "/blobs/uploads/" in item["path"]]
    assert uploads, f"no upload by {sender} met a 503"
    for failed in ours(faulted(requests, "429") + faulted(requests, "503")):
        retried_later(requests, failed)
    entries = report(src)["images"]
    assert entries[published.watchdog]["push"]["status"] == "done"
    assert entries[published.watchdog]["retries"] >= 1


def test_a_fresh_runner_fetches_the_base_of_what_it_builds_itself(
    published: Published, faults: FarRegistry, tmp_path: Path
) -> None:
    """The base of an image built on a fresh runner is fetched by paitasks (all its
    layers at once, each request retried) and loaded into the engine, so the engine's
    build asks the registry nothing about it: a 503 costs paitasks' retry, not dockerd's
    5 s wait."""
    src = fresh_runner(published, tmp_path, change=secrets.token_hex(4))
    base = next(name for name in published.images if name.endswith("-base-image"))
    about_base = f"/v2/{published.ns}/{base}/"
    faults.faults([{"action": "503", "every": 2, "methods": ["GET"],
                    "path": f"^{about_base}blobs/"}])
    mark = faults.mark()
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                      engine2=True))
    requests = faults.requests(mark)
    assert [item["path"] for item in engines(requests)
            if item["path"].startswith(about_base)] == []
    fetched = {item["path"].rpartition("/")[2] for item in ours(requests)
               if item["path"].startswith(f"{about_base}blobs/") and item["status"] == 200}
    layers = published.registry.api.layers(f"{published.ns}/{base}", TAG)
    assert set(layers) <= fetched
    loads = [event["name"] for process, event in timeline(src)
             if process == "engine" and event["name"].startswith("load ")]
    assert loads == [f"load {base} ({len(layers)} layers)"]  # the timeline shows the load
    failed = ours(faulted(requests, "503"))
    assert failed, "no fetch of the base met a 503"
    for item in failed:
        retried_later(requests, item)
    entries = report(src)["images"]
    assert entries[published.watchdog]["status"] == "done"
    assert entries[published.watchdog]["push"]["status"] == "done"
    assert run_on_engine2_busybox(published.watchdog, "/etc/watchdog-build").strip() == (
        "built-by-stage")


def test_a_base_is_brought_while_the_hooks_run(published: Published, tmp_path: Path) -> None:
    """An image the registry lacks will be built: its base is brought into the engine
    as soon as the registry said so, not when doit reaches the build. Here watchdog's
    build waits for its slow build-pre.sh (which declares its inputs, so its fingerprint
    is known before it runs); the base is loaded meanwhile, once."""
    src = fresh_runner(published, tmp_path, change=secrets.token_hex(4))
    build = src / "watchdog" / "build"
    (build / "build-pre.sh").write_text("#!/bin/bash\nsleep 3\n", encoding="utf-8")
    (build / "hook-inputs").write_text("", encoding="utf-8")  # it reads nothing
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                      engine2=True))
    slices = [event for process, event in timeline(src)
              if process in ("engine", "this machine")]
    base = next(name for name in published.images if name.endswith("-base-image"))
    loads = [event for event in slices if event["name"].startswith(f"load {base} ")]
    hook = next(event for event in slices if event["name"] == "prebuild:watchdog")
    built = next(event for event in slices
                 if event["name"] == f"build-image:{published.watchdog}")
    assert len(loads) == 1, loads
    assert loads[0]["ts"] < hook["ts"] + hook["dur"] <= built["ts"], (loads, hook, built)
    assert run_on_engine2_busybox(published.watchdog, "/etc/watchdog-build").strip() == (
        "built-by-stage")


@pytest.mark.parametrize("sender", sorted(SENDERS))
def test_a_reset_connection_is_tried_again(
    published: Published, faults: FarRegistry, tmp_path: Path, sender: str
) -> None:
    src = fresh_runner(published, tmp_path, change=secrets.token_hex(4))
    faults.faults([{"action": "reset", "every": 3}])
    mark = faults.mark()
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                   engine2=True, env=SENDERS[sender]))
    requests = faults.requests(mark)
    assert senders(faulted(requests, "reset"), sender)
    for failed in ours(faulted(requests, "reset")):
        retried_later(requests, failed)
    assert report(src)["images"][published.watchdog]["push"]["status"] == "done"


@pytest.mark.parametrize("sender", sorted(SENDERS))
def test_a_stalled_upload_is_tried_again_and_publishes_the_same_digest(
    published: Published, faults: FarRegistry, tmp_path: Path, sender: str,
) -> None:
    src = fresh_runner(published, tmp_path / "stalled", change=secrets.token_hex(4))
    faults.faults([{"action": "stall", "methods": [UPLOADING[sender]],
                    "path": "/blobs/uploads/"}])
    mark = faults.mark()
    result = doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                  engine2=True, env={**FAST_STALL, **SENDERS[sender]})
    succeeded(result)
    requests = faults.requests(mark)
    assert senders(faulted(requests, "stall"), sender), "no upload stalled"
    entries = report(src)["images"]
    assert entries[published.watchdog]["retries"] >= 1
    digest = published.digest(published.watchdog)
    image = f"{published.far.address}/{published.ns}/{published.watchdog}:{TAG}"
    if sender == "engine":
        # The registry serves the engine's image: its config, and layers that unpack to
        # the engine's layers. (Not a clean push's digest elsewhere: where the engine
        # took the base from the registry, it mounts the base's blobs as they are
        # compressed there, and another registry gets them compressed anew.)
        api = published.registry.api
        repository = f"{published.ns}/{published.watchdog}"
        assert digest is not None
        manifest = api.manifest(repository, digest)
        held = Engine(host=ENGINE2_ENV["DOCKER_HOST"]).image(image)
        assert held is not None and manifest["config"]["digest"] == held.id
        config = json.loads(api.blob(repository, held.id))
        blobs = [api.blob(repository, layer["digest"]) for layer in manifest["layers"]]
        unpacked = ["sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() for blob in blobs]
        assert unpacked == config["rootfs"]["diff_ids"]
    else:  # every layer is its base's (mounted) or compressed as any try compresses it
        api = published.registry.api
        layers = set(api.layers(f"{published.ns}/{published.watchdog}", TAG))
        base = next(name for name in published.images if name.endswith("-base-image"))
        mounted = set(api.layers(f"{published.ns}/{base}", TAG))
        engine = Engine(host=ENGINE2_ENV["DOCKER_HOST"])
        image_id, _, _ = engine.layout(image)
        _, exported = publish._export(engine, image, image_id, tmp_path)
        again = {"sha256:" + hashlib.sha256(publish._compressed(path)).hexdigest()
                 for path in exported.values()}
        assert layers - mounted, "no layer was sent"
        assert layers - mounted <= again, "a layer sent is not what another try sends"


@pytest.mark.parametrize("sender", sorted(SENDERS))
def test_a_registry_that_keeps_failing_ends_in_one_line_and_publishes_nothing(
    published: Published, faults: FarRegistry, tmp_path: Path, sender: str
) -> None:
    """Uploads stall every time: the run gives up after its tries with one line naming
    the registry, the image, what failed and the tries; no `:tag` moves, for any image
    (the uploads come first); the same run without the fault then publishes."""
    before = tags_served(published)
    src = fresh_runner(published, tmp_path, change=secrets.token_hex(4))
    faults.faults([{"action": "stall", "methods": [UPLOADING[sender]],
                    "path": "/blobs/uploads/", "times": 100}])
    result = doit_on(src, "-n", "4", "build", "push", f"config={published.config}",
                  engine2=True, env={**FAST_STALL, **SENDERS[sender], "PAI_REGISTRY_TRIES": "2"})
    assert result.returncode != 0
    text = output(result)
    assert "Traceback" not in text
    failure = [line for line in text.splitlines()
               if published.watchdog in line and "failed after 2 tries" in line]
    assert failure, text[-3000:]
    assert published.far.address in failure[0]
    assert "stalled" in failure[0] or "no answer" in failure[0]
    assert tags_served(published) == before, "a :tag moved although an upload failed"
    entries = report(src)["images"]
    assert entries[published.watchdog]["upload"]["status"] == "failed"
    assert not [image for image, entry in entries.items()
                if entry.get("push", {}).get("status") == "done"]
    faults.faults([])
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={published.config}", engine2=True))
    assert published.digest(published.watchdog) != before[published.watchdog]


# -- a token registry --------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRegistry:
    registry: LoggedRegistry
    far: FarRegistry


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """A registry that takes Bearer tokens from the far registry's token server, where
    only USER may get one."""
    if not LoggedRegistry.available():
        pytest.fail("docker-registry is not installed (Debian's docker-registry)")
    folder = tmp_path_factory.mktemp("token-registry")
    key, certificate = token_keys(folder / "keys")
    port = free_port()
    token = TokenAuth(f"http://127.0.0.1:{port}/token", certificate)
    registry = LoggedRegistry(folder / "registry", auth=(USER, PASSWORD), token=token)
    with FarRegistry(registry.address, rtt_ms=RTT, port=port,
                     tokens=(key, certificate, {USER: PASSWORD})) as proxy, registry:
        yield TokenRegistry(registry, proxy)


def test_a_token_registry_costs_one_token_per_set_of_repositories(
    token_registry: TokenRegistry, ns: str, tmp_path: Path
) -> None:
    far = token_registry.far
    root = tmp_path / "engine1"
    src = root / "src"
    prefixed_tree(FIXTURES, src, ns)
    config = write_config(root / "cfg", far.address, f"{ns}-t", TAG,
                          username=USER, password=PASSWORD)
    succeeded(doit_on(src, "-n", "4", "build", "push", f"config={config}"))
    runner = tmp_path / "runner" / "src"
    shutil.copytree(src, runner, symlinks=True)
    clear_engine2(ns)
    mark = far.mark()
    result = doit_on(runner, "-n", "4", "build", "push", f"config={config}", engine2=True)
    succeeded(result)
    assert PASSWORD not in output(result)
    images = report(runner)["images"]
    assert {entry["status"] for entry in images.values()} == {"up to date in the registry"}
    requests = ours(far.requests(mark))
    tokens = [item for item in requests if item["path"] == "/token"]
    scopes = [item["query"].count("scope=") for item in tokens]
    # One token for every repository of the tree (pull and push: the run pushes).
    assert len(tokens) == 1 and scopes == [len(images)], [item["query"] for item in tokens]
    heads = [item for item in requests if "/manifests/" in item["path"]]
    # `:tag` and the fingerprint tag, each once; but componentB's fingerprint is known
    # only after its hook, when its `:tag`'s label already says it.
    assert len(heads) == 2 * len(images) - 1, [item["path"] for item in heads]
    assert all(item["status"] == 200 for item in heads)
    configs = [item for item in requests if "/blobs/" in item["path"]]
    assert len(configs) == len(images) and all(item["status"] == 200 for item in configs)
    assert engine2_images(ns) == {}


def test_a_wrong_password_stops_the_run_before_any_work(
    token_registry: TokenRegistry, ns: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    prefixed_tree(FIXTURES, src, ns)
    config = write_config(tmp_path / "cfg", token_registry.far.address, f"{ns}-w", TAG,
                          username=USER, password="not-the-password")
    result = doit_on(src, "build", f"config={config}")
    assert result.returncode != 0
    text = output(result)
    assert token_registry.far.address in text and "Traceback" not in text
    assert "not-the-password" not in text
    assert not list(src.glob("*/generated")), "a hook ran"
