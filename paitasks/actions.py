"""The python-actions behind doit's tasks: thin calls into tempfolders, hooks and engine.

Each takes the run (run.py) and plain values, and returns a JSON-able dict (saved by doit
as the task's values) or a doit TaskFailed whose message names the culprit, so a failure
reads as one clear paragraph instead of a traceback.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from paitasks import freshness
from paitasks.errors import PaiTasksError
from paitasks.hooks import run_hook
from paitasks.inputs import LABEL, ImageSpec, save_record
from paitasks.run import Run
from paitasks.tempfolders import TEMP_FOLDERS, RoundSpec


def copy_deps(run: Run, round_: RoundSpec) -> Any:
    """Copy each dependency's whole folder into `<component>/dependency/<dep>/`."""
    try:
        run.check_same_process()
        run.temp.ensure_real(round_, "copies")
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"copied": [dep.name for dep in round_.copies]}


def hook(run: Run, round_: RoundSpec, script: str, images: list[str]) -> Any:
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
            on_line=run.printer(f"{round_.name}/{path.name}") if settings.verbose else None,
        )

    try:
        run.check_same_process()
        ids = {}
        if round_.declared is not None:
            for name in images:
                found = run.images.get(name)
                ids[name] = found.id if found else ""
        if run.temp.run_hook(round_, path, execute, run.hashes, ids):
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
    """
    verbose = run.settings.verbose
    try:
        run.check_same_process()
        assessment = run.take_assessment(spec.name) or freshness.assess(run, spec)
        # The temp folders are made only when the build reads something in them: what
        # it does not read cannot change the image (and the fingerprint leaves it out).
        if (
            spec.round is not None
            and assessment.reads_temp_folders
            and run.temp.ensure_real(spec.round, "pre")
        ):
            assessment = freshness.assess(run, spec)  # now read what the build will send
        if verbose and assessment.reasons:
            run.printer(spec.name)(f"building: {'; '.join(assessment.reasons)}")
        from paitasks.engine import LocalImage

        image_id = run.engine(spec.builder, spec.network).build(
            tag=spec.name,
            dockerfile=Path(spec.dockerfile),
            context=Path(spec.context),
            labels={LABEL: assessment.fingerprint},
            build_args=dict(spec.build_args),
            platform=spec.platform,
            on_line=run.printer(spec.name) if verbose else None,
        )
        run.images.update(spec.name, LocalImage(image_id, {LABEL: assessment.fingerprint}))
        save_record(run.state, spec.name, assessment.inputs, image_id)
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"image": spec.name, "id": image_id, "fingerprint": assessment.fingerprint}


def push_image(run: Run, image: str) -> Any:
    """Tag an image with its registry name and push it; return the name and digest."""
    try:
        run.check_same_process()
        settings = run.registry()
        auth = None
        if settings.username and settings.password:
            auth = {"username": settings.username, "password": settings.password}
            run.check_login_once(settings.registry, **auth)
        digest = run.engine().push(
            image,
            settings.repository(image),
            settings.tag,
            auth=auth,
            on_line=run.printer(f"push {image}") if run.settings.verbose else None,
        )
        # The engine now records repository@digest on the image: keep the view in step
        # rather than listing every image again after each push.
        pushed = run.images.get(image)
        if pushed is not None:
            entry = f"{settings.repository(image)}@{digest}"
            run.images.update(
                image, dataclasses.replace(pushed, repo_digests=(*pushed.repo_digests, entry))
            )
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"image": image, "name": settings.image_name(image), "digest": digest}


def clean(run: Run, folder: str) -> Any:
    """Remove a component's temp folders, if a run recorded them."""
    base = Path(folder)
    removed = run.temp.remove(only=[base / name for name in TEMP_FOLDERS])
    return {"removed": [str(path) for path in removed]}


def clean_all(run: Run) -> None:
    """Remove every temp folder a run recorded (for doit's `clean` command)."""
    for path in run.temp.remove():
        print(f"removed {path}")
