"""The python-actions behind doit's tasks: thin calls into tempfolders, hooks and engine.

Each takes the run (run.py) and plain values, and returns a JSON-able dict (saved by doit
as the task's values) or a doit TaskFailed whose message names the culprit, so a failure
reads as one clear paragraph instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from doit.exceptions import TaskFailed

from paitasks import freshness, publish, retries
from paitasks.dockerfile import rewrite_images
from paitasks.engine import registry_hiccup
from paitasks.errors import EngineError, PaiTasksError
from paitasks.fingerprint import LABEL, Finding
from paitasks.hooks import run_hook
from paitasks.inputs import ImageSpec, save_record
from paitasks.reference import local_image_name
from paitasks.retries import Transient
from paitasks.run import Run
from paitasks.tempfolders import TEMP_FOLDERS, RoundSpec

if TYPE_CHECKING:
    from paitasks.engines import Engines

T = TypeVar("T")


def copy_deps(run: Run, round_: RoundSpec) -> Any:
    """Copy each dependency's whole folder into `<component>/dependency/<dep>/`."""
    try:
        run.check_same_process()
        run.temp.ensure_real(round_, "copies")
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"copied": [dep.name for dep in round_.copies]}


def hook(run: Run, ahead: freshness.Lookahead, round_: RoundSpec, script: str) -> Any:
    """Run a build-pre.sh or build-post.sh hook; a failure carries its last output lines.

    With declared inputs (build/hook-inputs), a hook whose inputs are unchanged since
    the last run is not run: what it made then stands in for what it would make.
    """
    settings = run.settings
    path = Path(script)

    def execute() -> None:
        run_hook(
            path,
            component=round_.name,
            folder=Path(round_.folder),
            src=settings.src,
            root=settings.root,
            on_line=run.output(
                f"{'pre' if path.name == 'build-pre.sh' else 'post'}build:{round_.name}",
                f"{round_.name}/{path.name}",
            ),
        )

    try:
        run.check_same_process()
        skipped = run.temp.run_hook(round_, path, execute, run.hashes)
        if path.name == "build-pre.sh" and not skipped:
            ahead.after_hook(round_.images)  # their registry questions, at once
        if skipped:
            return {"hook": path.name, "skipped": "declared inputs unchanged"}
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    except OSError as exc:
        return TaskFailed(f"component {round_.name}: {path.name}: {exc}")
    return {"hook": path.name}


def build_image(run: Run, spec: ImageSpec) -> Any:
    """Build one image, tagged with its bare name so `FROM <image>` elsewhere finds it.

    The image carries the fingerprint of its inputs as a label: the next run compares
    it with what it would build, also on a machine without this tree's `.paitasks/`.
    With a registry, the tree bases it uses come from the registry by digest wherever
    the registry holds them, and its layers may come from the registry's cache. An
    image the registry holds already is pulled instead (pull=1).
    """
    verbose = run.settings.verbose
    try:
        run.check_same_process()
        assessment = run.findings.take(spec.name) or freshness.assess(run, spec)
        if assessment.fresh and assessment.where == "registry":
            return _pull(run, spec, assessment)
        # The temp folders are made only when the build reads something in them: what
        # it does not read cannot change the image (and the fingerprint leaves it out).
        if (
            spec.round is not None
            and freshness.reads_temp_folders(assessment)
            and run.temp.ensure_real(spec.round, "pre")
        ):
            assessment = freshness.assess(run, spec)  # now read what the build will send
        if verbose and assessment.reasons:
            run.printer(spec.name)(f"building: {'; '.join(assessment.reasons)}")
        several = run.several
        if several is not None:
            return _build_elsewhere(run, spec, assessment, several)
        from paitasks.engine import LocalImage

        engine = run.engine(spec.builder, spec.network)
        remote = run.remote
        dockerfile, contexts = base_inputs(run, spec, engine.named_contexts)
        image_id = _tried(run, spec.name, lambda: engine.build(
            tag=spec.name,
            dockerfile=dockerfile,
            contexts=contexts,
            context=Path(spec.context),
            labels={LABEL: assessment.fingerprint},
            build_args=dict(spec.build_args),
            platform=spec.platform,
            cache_from=(remote.by_tag(spec.name),) if remote is not None else (),
            on_line=run.output(f"build-image:{spec.name}", spec.name),
        ))
        run.images.update(spec.name, LocalImage(image_id, {LABEL: assessment.fingerprint}))
        run.findings.record(spec.name, dataclasses.replace(assessment, fresh=True, where="engine"))
        save_record(run.state, spec.name, assessment.inputs, image_id)
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"image": spec.name, "id": image_id, "fingerprint": assessment.fingerprint}


def _build_elsewhere(
    run: Run, spec: ImageSpec, assessment: Finding, several: Engines
) -> Any:
    """engines=: build on the least busy engine, pushed from there under the image's
    fingerprint tag; nothing comes back to this machine's engine."""
    remote = run.remote
    assert remote is not None
    reference = remote.by_fingerprint(spec.name, assessment.fingerprint)
    with several.choose() as name:
        run.tell_engine(f"build-image:{spec.name}", name)
        dockerfile, contexts = base_inputs(run, spec, several.named_contexts(name))
        digest = _tried(run, spec.name, lambda: several.build(
            name,
            tag=reference,
            dockerfile=dockerfile,
            contexts=contexts,
            context=Path(spec.context),
            labels={LABEL: assessment.fingerprint},
            build_args=dict(spec.build_args),
            platform=spec.platform,
            network=spec.network,
            cache_from=(remote.by_tag(spec.name),),
            on_line=run.output(f"build-image:{spec.name}", f"{spec.name} on {name}"),
        ))
    remote.learn(reference, digest)
    run.findings.built_on(spec.name, name)
    run.findings.record(spec.name, dataclasses.replace(assessment, where="registry", digest=digest))
    save_record(run.state, spec.name, assessment.inputs, digest, engine=name)
    return {
        "image": spec.name, "digest": digest, "engine": name,
        "fingerprint": assessment.fingerprint,
    }


def _tried(run: Run, image: str, build: Callable[[], T]) -> T:
    """A build, tried again as the run's policy says while it fails on a transient
    registry error (its bases and layer cache come from the registry; an engine of
    engines= pushes what it built), each retry counted for the image."""
    failed: list[EngineError] = []

    def once() -> T:
        try:
            return build()
        except EngineError as exc:
            hiccup = registry_hiccup(exc.output)
            if hiccup is None:
                raise
            failed[:] = [exc]
            raise Transient(hiccup, throttled="429" in hiccup or "Too Many" in hiccup) from None

    def retried(failure: Transient, wait: float) -> None:
        if run.journal is not None:
            run.journal.retried(image)

    try:
        return retries.call(run.policy, once, retried)
    except Transient as failure:
        raise EngineError(
            f"{failed[-1]}\n(the registry failed it {failure.tries} times: {failure.reason})"
        ) from None


def _pull(run: Run, spec: ImageSpec, assessment: Finding) -> Any:
    """pull=1: bring the registry's image for these inputs in, under the image's name."""
    remote = run.remote
    assert remote is not None and assessment.digest is not None
    source = remote.by_digest(spec.name, assessment.digest)
    engine = run.engine()
    on_line = run.output(f"build-image:{spec.name}", f"pull {spec.name}")
    pulled = engine.pull(source, remote.auth, on_line, run.policy)
    engine.tag(source, f"{spec.name}:latest")
    run.images.update(spec.name, pulled)
    run.findings.record(spec.name, dataclasses.replace(assessment, where="engine"))
    return {
        "image": spec.name, "id": pulled.id, "fingerprint": assessment.fingerprint,
        "pulled": source,
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
    elsewhere = run.several is not None  # engines=: they see only the registry
    taken: dict[str, str] = {}
    for base in spec.uses:
        found = run.findings.latest(base)
        if found is None:
            continue
        digest = found.digest
        if digest is None:
            digest = remote.digest(remote.by_fingerprint(base, found.fingerprint))
        if digest is None and elsewhere:
            raise PaiTasksError(
                f"image {spec.name}: its base {base} is only in this machine's engine, which "
                f"engines= do not see: push it first (doit push:{base} config=...)"
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


def upload_image(run: Run, image: str, bases: tuple[str, ...] = ()) -> Any:
    """`_upload:<image>`: make the registry hold the image built from the current inputs
    under its fingerprint tag, pushed from this engine if the registry has none yet.
    `:tag` is not touched: `push` moves every image's `:tag` only once every image is in
    the registry, so a failed upload leaves nothing half-published."""
    try:
        run.check_same_process()
        digest = publish.upload(run, image, bases)
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"image": image, "digest": digest}


def publish_tag(run: Run, image: str) -> Any:
    """`_publish:<image>`: move the image's `:tag` to what its fingerprint tag serves."""
    try:
        run.check_same_process()
        digest = publish.move_tag(run, image)
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"image": image, "name": run.registry().image_name(image), "digest": digest}


def push_image(run: Run, image: str, bases: tuple[str, ...] = ()) -> Any:
    """`push:<image>`: upload it, then move its `:tag`; return name and digest."""
    try:
        run.check_same_process()
        publish.upload(run, image, bases)
        digest = publish.move_tag(run, image)
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"image": image, "name": run.registry().image_name(image), "digest": digest}


def clean(run: Run, folder: str) -> Any:
    """Remove a component's temp folders, if a run recorded them."""
    base = Path(folder)
    removed = run.temp.remove(only=[base / name for name in TEMP_FOLDERS])
    return {"removed": [str(path) for path in removed]}


def clean_all(run: Run) -> None:
    """Remove every temp folder a run recorded (for doit's `clean` command)."""
    for path in run.temp.remove():
        print(f"removed {path}")
