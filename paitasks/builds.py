"""Building an image: wherever it is built, from one request.

`build` makes the image of an up-to-date check's finding: here (buildx with `--load`, or
the classic builder), on the least busy builder of `builders=` (buildx, pushed from there
under the image's fingerprint tag), or, with `pull=1` and the registry holding it,
pulled. Every way takes one `BuildRequest` (engine.py): the tree bases by digest where
the registry holds them (here, first brought into the engine by this process:
publish.bring; else as named build contexts where the builder takes them, or in a copy
of the dockerfile that names them by digest), the registry's `:tag` as a layer
cache (unless the registry is known to have none), build args through the build tool's
environment. A build that fails on a transient registry error (fetching a base or the
cache, pushing) is tried again as the run's policy says.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from paitasks import freshness, publish, retries
from paitasks.dockerfile import rewrite_images
from paitasks.engine import BuildRequest, LocalImage, build_tool, registry_hiccup, throttled
from paitasks.errors import EngineError, PaiTasksError
from paitasks.fingerprint import CREATED_LABEL, LABEL, REVISION_LABEL, Finding
from paitasks.inputs import ImageSpec, save_record
from paitasks.reference import local_image_name
from paitasks.retries import Transient
from paitasks.run import Run

T = TypeVar("T")


def build(run: Run, spec: ImageSpec) -> dict[str, str]:
    """Build one image, tagged with its bare name so `FROM <image>` elsewhere finds it;
    the values doit keeps for the task.

    The image carries the fingerprint of its inputs as a label: the next run compares
    it with what it would build, also on a machine without this tree's `.paitasks/`.
    """
    found = run.findings.take(spec.name) or freshness.assess(run, spec)
    if found.fresh and found.where == "registry":
        return _pull(run, spec, found)
    if run.builders is None:  # a base this engine cannot pull fails it now, not a build
        for name in freshness.absent_bases(run, spec):
            if why := run.bases.problem(name):
                raise PaiTasksError(why)
    # The temp folders are made only when the build reads something in them: what it
    # does not read cannot change the image (and the fingerprint leaves it out).
    if (
        spec.round is not None
        and freshness.reads_temp_folders(found)
        and run.temp.ensure_real(spec.round, "pre")
    ):
        found = freshness.assess(run, spec)  # now read what the build will send
    if run.settings.verbose and found.reasons:
        run.output.printer(spec.name)(f"building: {'; '.join(found.reasons)}")
    if run.builders is not None:
        return _build_elsewhere(run, spec, found)
    engine, tool = run.engine, build_tool(spec.build_tool)
    for base, reference in base_references(run, spec).items():
        publish.bring(run, base, reference.rpartition("@")[2])  # then the engine has it
    dockerfile, named = base_inputs(run, spec, engine.takes_named_contexts(tool))
    request = _request(run, spec, found, (spec.name,), dockerfile, named, tool)
    on_line = run.output.lines(f"build-image:{spec.name}", spec.name)
    image_id = _tried(run, spec.name, lambda: engine.build(request, on_line))
    run.images.update(spec.name, LocalImage(image_id, {LABEL: found.fingerprint}))
    run.findings.record(spec.name, dataclasses.replace(found, fresh=True, where="engine"))
    save_record(run.state, spec.name, found.inputs, image_id)
    return {"image": spec.name, "id": image_id, "fingerprint": found.fingerprint}


def _build_elsewhere(run: Run, spec: ImageSpec, found: Finding) -> dict[str, str]:
    """builders=: build on the least busy builder, pushed from there under the image's
    fingerprint tag; nothing comes back to this machine's engine."""
    remote, builders = run.remote, run.builders
    assert remote is not None and builders is not None
    reference = remote.by_fingerprint(spec.name, found.fingerprint)
    with builders.choose() as name:
        run.output.tell_builder(f"build-image:{spec.name}", name)
        dockerfile, named = base_inputs(run, spec, builders.takes_named_contexts(name))
        request = _request(run, spec, found, (reference,), dockerfile, named, "buildx")
        on_line = run.output.lines(f"build-image:{spec.name}", f"{spec.name} on {name}")
        digest = _tried(run, spec.name, lambda: builders.build(name, request, on_line))
    remote.learn(reference, digest)
    run.findings.built_on(spec.name, name)
    run.findings.record(spec.name, dataclasses.replace(found, where="registry", digest=digest))
    save_record(run.state, spec.name, found.inputs, digest, builder=name)
    return {
        "image": spec.name, "digest": digest, "builder": name, "fingerprint": found.fingerprint,
    }


def _request(
    run: Run, spec: ImageSpec, found: Finding, tags: tuple[str, ...], dockerfile: Path,
    named: Mapping[str, str], tool: str,
) -> BuildRequest:
    return BuildRequest(
        tags=tags,
        dockerfile=dockerfile,
        context=Path(spec.context),
        labels={LABEL: found.fingerprint, **_standard_labels(run)},
        build_args=dict(spec.build_args),
        platform=spec.platform,
        network=spec.network,
        tool=tool,
        cache_from=_cache(run, spec.name),
        inline_cache=run.remote is not None,  # for the next build, wherever it runs
        named_contexts=dict(named),
    )


def _cache(run: Run, image: str) -> tuple[str, ...]:
    """The registry's `:tag` of `image` as the build's layer cache, unless the registry
    is known to have none (asked when the run began): then the builder need not ask."""
    remote = run.remote
    if remote is None:
        return ()
    tag = remote.by_tag(image)
    return () if remote.answer(tag) == (True, None) else (tag,)


def _standard_labels(run: Run) -> dict[str, str]:
    """When the image is built, and from which commit (not inputs: not fingerprinted)."""
    labels = {CREATED_LABEL: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if run.revision:
        labels[REVISION_LABEL] = run.revision
    return labels


def _tried(run: Run, image: str, attempt: Callable[[], T]) -> T:
    """A build, tried again as the run's policy says while it fails on a transient
    registry error, each retry counted for the image."""
    failed: list[EngineError] = []

    def once() -> T:
        try:
            return attempt()
        except EngineError as exc:
            hiccup = registry_hiccup(exc.output)
            if hiccup is None:
                raise
            failed[:] = [exc]
            raise Transient(hiccup, throttled=throttled(hiccup)) from None

    def retried(failure: Transient, wait: float) -> None:
        if run.journal is not None:
            run.journal.retried(image)

    try:
        return retries.call(run.policy, once, retried)
    except Transient as failure:
        raise EngineError(
            f"{failed[-1]}\n(the registry failed it {failure.tries} times: {failure.reason})"
        ) from None


def _pull(run: Run, spec: ImageSpec, found: Finding) -> dict[str, str]:
    """pull=1: bring the registry's image for these inputs in, under the image's name."""
    remote = run.remote
    assert remote is not None
    digest = found.digest or remote.find(spec.name, found.fingerprint)
    if digest is None:
        raise PaiTasksError(f"image {spec.name}: the registry no longer holds it; run again")
    source = remote.by_digest(spec.name, digest)
    on_line = run.output.lines(f"build-image:{spec.name}", f"pull {spec.name}")
    pulled = run.engine.pull(source, remote.auth, on_line, run.policy)
    run.engine.tag(source, f"{spec.name}:latest")
    run.images.update(spec.name, pulled)
    run.findings.record(spec.name, dataclasses.replace(found, where="engine"))
    return {
        "image": spec.name, "id": pulled.id, "fingerprint": found.fingerprint, "pulled": source,
    }

def base_inputs(run: Run, spec: ImageSpec, named: bool) -> tuple[Path, dict[str, str]]:
    """The dockerfile to build `spec` from, and the named build contexts to pass.

    Where a tree base must come from the registry by digest: on a BuildKit that takes
    named contexts (`named`), the image's own dockerfile and a context
    `<base>=docker-image://<registry>/<ns>/<base>@sha256:...` for that base; on an older
    one, a copy of the dockerfile in `.paitasks/dockerfiles/` naming the base by digest.
    """
    dockerfile = Path(spec.dockerfile)
    bases = base_references(run, spec)
    if not bases:
        return dockerfile, {}
    if named:
        return dockerfile, {base: f"docker-image://{ref}" for base, ref in bases.items()}
    text = dockerfile.read_text(encoding="utf-8-sig")
    rewritten = rewrite_images(
        text, dockerfile, lambda ref: bases.get(local_image_name(ref) or ""),
        dict(spec.build_args),
    )
    folder = run.state / "dockerfiles"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{spec.name}.dockerfile"
    target.write_text(rewritten, encoding="utf-8")
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if ignore.is_file():  # BuildKit reads it next to the dockerfile it is given
        shutil.copyfile(ignore, target.with_name(target.name + ".dockerignore"))
    return target, {}


def base_references(run: Run, spec: ImageSpec) -> dict[str, str]:
    """The tree bases of `spec` to take from the registry, each by digest: those the
    registry holds for their fingerprint, unless the engine's image is that one."""
    remote = run.remote
    if remote is None:
        return {}
    elsewhere = run.builders is not None  # builders=: they see only the registry
    taken: dict[str, str] = {}
    for base in spec.uses:
        found = run.findings.latest(base)
        if found is None:
            continue
        digest = found.digest
        if digest is None:
            digest = remote.find(base, found.fingerprint)
        if digest is None and elsewhere:
            raise PaiTasksError(
                f"image {spec.name}: its base {base} is only in this machine's engine, which "
                f"builders= do not see: push it first (doit push:{base} config=...)"
            )
        if digest is None:
            continue  # the registry has none: the engine's, built in this run or before
        reference = remote.by_digest(base, digest)
        local = run.images.get(base)
        if not elsewhere and local is not None and digest in publish.published_digests(
            run, base, local
        ):
            continue
        taken[base] = reference
    return taken
