"""Publishing: putting an image in the registry, and moving its `:tag` there.

`push` has two steps, so that nothing is half-published:

1. `upload`: the registry holds the image built from the current inputs under its
   fingerprint tag (`paitasks-<hex>`). Nothing to do when it has one already (built on
   another runner, or by a builder of `builders=`). Otherwise this engine's image is
   sent, and only what the registry lacks: a small image from this process (its new
   layers, compressed here; the layers of its tree bases mounted from their
   repositories, which sends nothing; its config; its manifest), each request pooled
   and retried on its own; a large one by the engine's own push, retried as a whole.
2. `move_tag`: once every image is in the registry, `:tag` is made to serve what the
   fingerprint tag serves: a manifest copy in the registry (no layer moves), or, where
   this process cannot ask for that, an engine's push.

Why large images are left to the engine (`send_limit`): docs/architecture.md.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paitasks import history
from paitasks.engine import LocalImage
from paitasks.errors import PaiTasksError
from paitasks.fingerprint import LABEL, REVISION_LABEL
from paitasks.inputs import last_builder
from paitasks.registry import Client, Exchange, Unsure, fingerprint_tag
from paitasks.retries import Transient
from paitasks.run import Run
from paitasks.streaming import LineSink

if TYPE_CHECKING:
    from paitasks.engine import Engine
    from paitasks.registry import RegistryView

SENDERS = 32  # at most, blobs sent (or mounted) at once
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
GZIP_LAYERS = {LAYER, "application/vnd.oci.image.layer.v1.tar+gzip"}


def upload(run: Run, image: str, bases: Sequence[str] = ()) -> str:
    """The digest the registry serves for the image's fingerprint tag, after sending
    this engine's image there if it has none. `bases`: the tree images it is built on,
    whose layers the registry has already."""
    remote = _remote(run)
    wanted = _fingerprint(run, image)
    by_fingerprint = remote.by_fingerprint(image, wanted)
    canonical = remote.digest(by_fingerprint)
    if canonical is not None:
        return canonical
    local = run.images.get(image)
    if local is None or local.labels.get(LABEL) != wanted:
        raise PaiTasksError(f"image {image}: not in the engine, build it first")
    engine = run.engine
    canonical = send(run, engine, image, bases, fingerprint_tag(wanted))
    if canonical is None:  # too large, or not reached directly: the engine pushes it
        # It keeps the pushed name (and the repository digest) until `:tag` moved too.
        canonical = engine_push(run, engine, image, image, fingerprint_tag(wanted))
    remote.learn(by_fingerprint, canonical)
    return canonical


def move_tag(run: Run, image: str) -> str:
    """Make `:tag` serve what the fingerprint tag serves: a manifest copy in the
    registry (no layer moves, nothing loaded here), else pushed by an engine."""
    settings, remote = run.registry_settings, _remote(run)
    wanted = _fingerprint(run, image)
    canonical = remote.find(image, wanted)
    if canonical is None:
        raise PaiTasksError(
            f"image {image}: the registry holds no image of its inputs: push it first"
        )
    by_tag = remote.by_tag(image)
    digest = remote.digest(by_tag)
    if digest != canonical:
        digest = remote.retag(image, canonical, settings.tag) or _tag_through_an_engine(
            run, image, canonical, run.output.lines(f"push:{image}", f"push {image}")
        )
        remote.learn(by_tag, digest)
    if digest != canonical:
        raise PaiTasksError(
            f"image {image}: pushed {settings.image_name(image)} as {digest}, but the "
            f"registry serves {canonical} for its fingerprint"
        )
    local = run.images.get(image)
    if local is not None and local.labels.get(LABEL) == wanted:
        # As pai_build leaves it: the engine's image under its full name too, if that
        # is the image `:tag` serves.
        engine = run.engine
        held = engine.image(image)
        if held is not None and canonical in published_digests(run, image, held):
            engine.tag(image, settings.image_name(image))
            engine.remove_images([remote.by_fingerprint(image, wanted)])  # the tag only
    return digest


def kept_for_newer(run: Run, image: str) -> str | None:
    """Why `:tag` of `image` stays where it is, or None: the `:tag` of an image this run
    moves serves an image of a newer commit (a descendant of the run's in the tree's git
    history: an overlapping run of a later commit published first). Then this run moves
    no `:tag` at all, so the registry never mixes the two commits' images; `force=1`
    moves them anyway. Decided once per run."""
    if run.settings.force:
        return None
    found = run.once("newer", lambda: _newer_published(run))
    if found is None:
        return None
    other, commit = found
    return (f"newer: {other}'s :{run.registry_settings.tag} serves commit {commit[:12]}, newer "
            f"than this run's {str(run.revision)[:12]}")


def _newer_published(run: Run) -> tuple[str, str] | None:
    """(image, commit) of an image this run would move `:tag` away from, built from a
    newer commit than this run's; None when there is none or the commits are unknown."""
    ours, remote = run.revision, _remote(run)
    client = remote.client()
    if ours is None or client is None:
        return None

    def revision(image: str) -> str | None:
        wanted = run.findings.fingerprint(image)
        served = remote.digest(remote.by_tag(image))
        if wanted is None or served is None:
            return None
        if served == remote.find(image, wanted):
            return None  # `:tag` stays as it is
        repository = remote.repository(image)
        try:
            manifest, _ = client.manifest(repository, served, image)
            return client.label(repository, manifest, REVISION_LABEL, image)
        except (Unsure, PaiTasksError):
            return None

    images = sorted(run.pushing)
    with ThreadPoolExecutor(max(1, min(16, len(images)))) as pool:
        commits = list(pool.map(revision, images))
    for image, commit in zip(images, commits, strict=True):
        if commit and history.is_newer(run.root, commit, ours):
            return image, commit
    return None


def bring(run: Run, image: str, digest: str) -> bool:
    """Load the registry's image `digest` of tree image `image` into this engine as
    `image:latest`, fetched by this process: all its layers at once, each request
    retried as the run's policy says, each blob checked against its digest and each
    layer against its diff id. A build on it then asks the registry nothing for it
    (dockerd's BuildKit fetches a base one layer after another, and waits 5 s before it
    tries a layer again). Once per run and image; False, with nothing done, where this
    process cannot: no direct client, not a single manifest of gzip layers, or more than
    `send_limit` MB (then the build fetches the base itself, as before)."""
    return run.once(f"bring {image}@{digest}", lambda: _bring(run, image, digest))


def _bring(run: Run, image: str, digest: str) -> bool:
    remote = _remote(run)
    client = remote.client()
    if client is None:
        return False
    repository = remote.repository(image)
    try:
        body, media_type = client.manifest(repository, digest, image)
    except Unsure:
        return False
    manifest = json.loads(body)
    layers = manifest.get("layers") or []
    size = sum(int(layer.get("size", 0)) for layer in layers)
    if (media_type not in (MANIFEST, OCI_MANIFEST) or not layers
            or any(layer.get("mediaType") not in GZIP_LAYERS for layer in layers)
            or size > run.settings.send_limit << 20):
        return False
    wanted = [manifest["config"]["digest"], *(layer["digest"] for layer in layers)]
    with ThreadPoolExecutor(min(SENDERS, len(wanted))) as pool:
        blobs = list(pool.map(lambda blob: _blob(client, repository, blob, image), wanted))
    config = json.loads(blobs[0])
    diff_ids = list(config.get("rootfs", {}).get("diff_ids") or [])
    if len(diff_ids) != len(layers):
        raise PaiTasksError(f"image {image}: {repository}@{digest} lists {len(layers)} layers "
                            f"but its config {len(diff_ids)}")
    with tempfile.TemporaryDirectory(prefix="paitasks-bring-") as folder:
        archive = Path(folder) / "image.tar"
        paths: list[str] = []
        with tarfile.open(archive, "w") as tar:
            for blob, diff_id in zip(blobs[1:], diff_ids, strict=True):
                path = f"{diff_id.removeprefix('sha256:')}/layer.tar"
                if path not in paths:
                    unpacked = Path(folder) / "layer.tar"
                    _unpack(blob, unpacked, diff_id, image)
                    tar.add(unpacked, path)
                paths.append(path)
            config_path = f"{wanted[0].removeprefix('sha256:')}.json"
            listing = [{"Config": config_path, "RepoTags": [f"{image}:latest"], "Layers": paths}]
            for name, data in ((config_path, blobs[0]), ("manifest.json",
                                                          json.dumps(listing).encode())):
                entry = tarfile.TarInfo(name)
                entry.size = len(data)
                tar.addfile(entry, io.BytesIO(data))
        with archive.open("rb") as stream, run.output.engine_step(
            f"load {image} ({len(layers)} layers)"
        ):
            run.engine.load(stream, image)
    image_id = wanted[0]  # an image's id is its config's digest
    remote.sent(image_id, digest)  # the engine's image is the registry's `digest`
    labels = (config.get("config") or {}).get("Labels") or {}
    run.images.update(image, LocalImage(image_id, dict(labels)))
    return True


def _blob(client: Client, repository: str, digest: str, image: str) -> bytes:
    data = client.blob(repository, digest, image)
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise PaiTasksError(f"image {image}: the registry sent {repository}@{digest} "
                            "with other content")
    return data


def _unpack(blob: bytes, target: Path, diff_id: str, image: str) -> None:
    """Decompress layer `blob` into `target`, checking it against `diff_id`."""
    digest = hashlib.sha256()
    with gzip.GzipFile(fileobj=io.BytesIO(blob)) as source, target.open("wb") as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if "sha256:" + digest.hexdigest() != diff_id:
        raise PaiTasksError(f"image {image}: a layer of its registry image does not unpack "
                            f"to {diff_id}")


def published_digests(run: Run, image: str, local: Any) -> set[str]:
    """The registry digests the engine's image `local` of `image` is published as:
    those the engine knows (it pushed or pulled it) and those sent from here."""
    remote = _remote(run)
    prefix = remote.by_digest(image, "")
    found = {entry[len(prefix):] for entry in local.repo_digests if entry.startswith(prefix)}
    sent = remote.sent(local.id)
    return found | ({sent} if sent else set())


def send(
    run: Run, engine: Engine, image: str, bases: Sequence[str], tag: str
) -> str | None:
    """Send this engine's `image` to the registry from this process, as `tag`: only
    the layers its tree `bases` do not have (those are mounted), its config and its
    manifest, each request retried on its own. The manifest's digest; None when the
    image is too large for that, or this process cannot reach the registry."""
    remote = _remote(run)
    client = remote.client()
    if client is None:
        return None
    image_id, size, diff_ids = engine.layout(image)
    if size > run.settings.send_limit << 20 or not diff_ids:
        return None
    repository = remote.repository(image)
    start = time.time()
    try:
        senders = min(SENDERS, len(set(diff_ids)) + 2)  # every layer, its config, the bases
        with ThreadPoolExecutor(senders) as pool, tempfile.TemporaryDirectory(
            prefix="paitasks-send-"
        ) as folder:
            # What the registry has of the bases, asked while the engine exports.
            asking = pool.submit(_base_layers, run, client, bases)
            with run.output.engine_step(f"export {image} ({len(diff_ids)} layers)"):
                config, layers = _export(engine, image, image_id, Path(folder))
            missing = [diff for diff in diff_ids if diff not in layers]
            if missing:
                raise Unsure(f"the engine's export lacks layer {missing[0]}")
            sending = pool.submit(client.upload, repository, image_id, config, image)
            entries = _send_layers(pool, client, repository, image, diff_ids,
                                   asking.result(), layers)
            sending.result()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "size": len(config), "digest": image_id},
            "layers": entries,
        }, indent=3).encode()
        digest = client.put_manifest(repository, tag, manifest, MANIFEST, image)
    except Unsure as exc:
        remote.journal.record(Exchange(f"send {repository}:{tag}", client.host, start,
                                       time.time(), 1, f"unsure: {exc}", image))
        return None
    if digest != "sha256:" + hashlib.sha256(manifest).hexdigest():
        raise PaiTasksError(f"image {image}: the registry stored another manifest ({digest})")
    remote.sent(image_id, digest)
    return digest


def _base_layers(run: Run, client: Client, bases: Sequence[str]) -> dict[str, dict[str, Any]]:
    """diff id -> the layer (its digest, size, media type and repository) as the
    registry holds it under the tree bases' images of the current inputs."""
    remote = _remote(run)
    known: dict[str, dict[str, Any]] = {}
    for base in bases:
        found = run.findings.latest(base)
        if found is None:
            continue
        # The image the check found (what builds took), else the registry's image of it.
        digest = found.digest or remote.find(base, found.fingerprint)
        if digest is None:
            continue
        repository = remote.repository(base)
        body, _ = client.manifest(repository, digest, base)
        manifest = json.loads(body)
        if "layers" not in manifest or "config" not in manifest:
            continue  # an index (several platforms): its layers are not this image's
        config = json.loads(client.blob(repository, manifest["config"]["digest"], base))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        for diff_id, layer in zip(diff_ids, manifest["layers"], strict=False):
            known.setdefault(diff_id, {**layer, "repository": repository})
    return known


def _export(
    engine: Engine, image: str, image_id: str, folder: Path
) -> tuple[bytes, dict[str, Path]]:
    """The image's config (as the engine stores it) and each layer, uncompressed, in
    a file of `folder`, by diff id (the sha256 of its content)."""
    config = b""
    layers: dict[str, Path] = {}
    with engine.export(image) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            content = tar.extractfile(member)
            assert content is not None
            if member.name == image_id.removeprefix("sha256:") + ".json":
                config = content.read()
            elif member.name.endswith("/layer.tar"):
                path = folder / f"{len(layers)}.tar"
                digest = hashlib.sha256()
                with open(path, "wb") as out:
                    while chunk := content.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                layers["sha256:" + digest.hexdigest()] = path
    if "sha256:" + hashlib.sha256(config).hexdigest() != image_id:
        raise Unsure("the engine's export has another config")
    return config, layers


def _send_layers(
    pool: ThreadPoolExecutor, client: Client, repository: str, image: str,
    diff_ids: Sequence[str], known: dict[str, dict[str, Any]], layers: dict[str, Path],
) -> list[dict[str, Any]]:
    """The manifest's layer entries, once each layer is in `repository`: mounted from
    a base's repository where the registry has it, else compressed here and sent."""

    def place(diff_id: str) -> dict[str, Any]:
        layer = known.get(diff_id)
        if layer is not None and client.mount(
            repository, layer["digest"], layer["repository"], image
        ):
            return {"mediaType": layer.get("mediaType", LAYER), "size": layer["size"],
                    "digest": layer["digest"]}
        body = _compressed(layers[diff_id])
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        client.upload(repository, digest, body, image)
        return {"mediaType": LAYER, "size": len(body), "digest": digest}

    ordered = list(dict.fromkeys(diff_ids))
    placed = dict(zip(ordered, pool.map(place, ordered), strict=True))
    return [placed[diff_id] for diff_id in diff_ids]


def _compressed(path: Path) -> bytes:
    """A layer gzipped the same way every time (no name, no time in its header), so a
    layer sent again after a failed try has the same digest."""
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as out:
        with open(path, "rb") as source, gzip.GzipFile(
            filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6
        ) as packed:
            shutil.copyfileobj(source, packed, 1 << 20)
        out.seek(0)
        return out.read()


def engine_push(run: Run, engine: Engine, image: str, source: str, tag: str) -> str:
    """Push `source` (an image or reference an engine holds) as the image's
    `<repository>:<tag>` through `engine`, tried as the run's policy says; recorded in
    the run's registry journal."""
    settings, remote = run.registry_settings, _remote(run)
    repository = settings.repository(image)
    tries, outcome, start = 1, "pushed", time.time()

    def retried(failure: Transient, wait: float) -> None:
        nonlocal tries
        tries += 1
        remote.journal.retried(image)

    try:
        return engine.push(
            source, repository, tag, remote.auth,
            on_line=run.output.lines(f"push:{image}", f"push {image}"),
            policy=run.policy, on_retry=retried,
        )
    except PaiTasksError as exc:
        outcome = f"failed: {exc}"
        raise
    finally:
        remote.journal.record(Exchange(
            f"push {repository}:{tag}", settings.host, start, time.time(), tries, outcome,
            image,
        ))


def _tag_through_an_engine(
    run: Run, image: str, canonical: str, on_line: LineSink | None
) -> str:
    """`:tag` pushed by a docker engine, where the registry cannot be asked to copy a
    manifest directly: (builders=) the one that built it, else one that pulls it by
    digest first (a docker context of builders=, else this machine's engine: a buildx
    builder of another driver has no engine to push from)."""
    remote, settings = _remote(run), run.registry_settings
    by_fingerprint = remote.by_fingerprint(image, run.findings.fingerprint(image) or "")
    engine, source = run.engine, remote.by_digest(image, canonical)
    builders = run.builders
    built_on = run.findings.built_on(image)
    if builders is not None and built_on is None:  # built by an earlier run, maybe
        last = last_builder(run.state, image)
        built_on = last if last in builders.names else None
    there = builders.docker_engine(built_on) if builders is not None else None
    if there is not None:
        engine = there  # the one that built it holds what it pushed; another pulls it
    if engine.image(by_fingerprint) is not None:
        source = by_fingerprint
    else:
        engine.pull(source, remote.auth, on_line, run.policy)
    digest = engine_push(run, engine, image, source, settings.tag)
    if source == by_fingerprint:  # keep the engine's tags few
        engine.remove_images([by_fingerprint])
    return digest


def _remote(run: Run) -> RegistryView:
    remote = run.remote
    if remote is None:
        _ = run.registry_settings  # raises: pushing needs registry settings
    assert remote is not None
    return remote


def _fingerprint(run: Run, image: str) -> str:
    wanted = run.findings.fingerprint(image)
    if wanted is None:
        raise PaiTasksError(f"image {image}: not checked in this run, cannot push it")
    return wanted
