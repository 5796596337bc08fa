"""The python-actions behind doit's tasks: thin calls into workspace, hooks and engine.

Each takes plain, picklable arguments and returns a JSON-able dict (saved by doit as the
task's values) or a doit TaskFailed whose message names the culprit, so a failure reads
as one clear paragraph instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from paitasks import freshness, runtime, staging, workspace
from paitasks.errors import PaiTasksError
from paitasks.fingerprint import LABEL
from paitasks.freshness import ImageSpec
from paitasks.hooks import run_hook
from paitasks.staging import RoundSpec


def _failed(exc: PaiTasksError) -> TaskFailed:
    return TaskFailed(str(exc))


def copy_deps(round_: RoundSpec) -> Any:
    """Copy each dependency's whole folder into `<component>/dependency/<dep>/`."""
    try:
        runtime.check_same_process()
        staging.ensure_real(round_, "copies")
    except PaiTasksError as exc:
        return _failed(exc)
    return {"copied": [dep.name for dep in round_.copies]}


def hook(
    round_: RoundSpec, script: str, src: str, verbose: bool = False, images: list[str] | None = None
) -> Any:
    """Run a build-pre.sh or build-post.sh hook; a failure carries its last output lines.

    With declared inputs (build/hook-inputs), a hook whose inputs are unchanged since
    the last run is not run: what it made then stands in for what it would make.
    """
    folder = Path(round_.folder)

    def run() -> None:
        run_hook(
            Path(script),
            component=round_.name,
            folder=folder,
            src=Path(src),
            root=Path(round_.root),
            on_line=_printer(f"{round_.name}/{Path(script).name}") if verbose else None,
        )

    try:
        runtime.check_same_process()
        ids = {}
        if round_.declared is not None:
            view = runtime.image_view()
            for name in images or ():
                found = view.get(name)
                ids[name] = found.id if found else ""
        cache = runtime.hash_cache(Path(round_.state))
        if staging.run_hook_stage(round_, Path(script), run, cache, ids):
            return {"hook": Path(script).name, "skipped": "declared inputs unchanged"}
    except PaiTasksError as exc:
        return _failed(exc)
    except OSError as exc:
        return TaskFailed(f"component {round_.name}: {Path(script).name}: {exc}")
    return {"hook": Path(script).name}


def build_image(spec: ImageSpec, verbose: bool) -> Any:
    """Build one image, tagged with its bare name so `FROM <image>` elsewhere finds it.

    The image carries the fingerprint of its inputs as a label: the next run compares
    it with what it would build, also on a machine without this tree's `.paitasks/`.
    """
    try:
        runtime.check_same_process()
        assessment = freshness.last_assessment(spec.name) or freshness.assess(spec)
        # The temp folders are made only when the build reads something in them: what
        # it does not read cannot change the image (and the fingerprint leaves it out).
        if (
            spec.round is not None
            and freshness.reads_temp_folders(assessment)
            and staging.ensure_real(spec.round, "pre")
        ):
            assessment = freshness.assess(spec)  # now read what the build will send
        if verbose and assessment.reasons:
            _printer(spec.name)(f"building: {'; '.join(assessment.reasons)}")
        from paitasks.engine import LocalImage

        engine = runtime.engine_for(spec.builder, spec.network)
        image_id = engine.build(
            tag=spec.name,
            dockerfile=Path(spec.dockerfile),
            context=Path(spec.context),
            labels={LABEL: assessment.fingerprint},
            build_args=dict(spec.build_args),
            platform=spec.platform,
            on_line=_printer(spec.name) if verbose else None,
        )
        runtime.image_view().update(
            spec.name, LocalImage(image_id, {LABEL: assessment.fingerprint})
        )
        freshness.save_manifest(Path(spec.state), spec.name, assessment.inputs, image_id)
    except PaiTasksError as exc:
        return _failed(exc)
    return {"image": spec.name, "id": image_id, "fingerprint": assessment.fingerprint}


def push_image(image: str, config: str | None, verbose: bool) -> Any:
    """Tag an image with its registry name and push it; return the name and digest."""
    try:
        runtime.check_same_process()
        settings = runtime.registry_settings(config)
        engine = runtime.engine_for(None, None)
        auth = None
        if settings.username and settings.password:
            auth = {"username": settings.username, "password": settings.password}
            runtime.check_login_once(engine, settings.registry, **auth)
        digest = engine.push(
            image,
            settings.repository(image),
            settings.tag,
            auth=auth,
            on_line=_printer(f"push {image}") if verbose else None,
        )
        # The engine now records repository@digest on the image: keep the view in step
        # rather than listing every image again after each push.
        view = runtime.image_view()
        pushed = view.get(image)
        if pushed is not None:
            entry = f"{settings.repository(image)}@{digest}"
            view.update(
                image, dataclasses.replace(pushed, repo_digests=(*pushed.repo_digests, entry))
            )
    except PaiTasksError as exc:
        return _failed(exc)
    name = settings.image_name(image)
    return {"image": image, "name": name, "digest": digest}


def clean(root: str, folder: str) -> Any:
    """Remove a component's temp folders, if a run recorded them."""
    base = Path(folder)
    removed = workspace.remove_temp_folders(
        Path(root), only=[base / name for name in workspace.TEMP_FOLDERS]
    )
    return {"removed": [str(path) for path in removed]}


def clean_all(root: str) -> None:
    """Remove every temp folder a run recorded (for doit's `clean` command)."""
    for path in workspace.remove_temp_folders(Path(root)):
        print(f"removed {path}")


_output_lock = threading.Lock()


def _printer(label: str) -> Callable[[str], None]:
    """Print live output lines, labelled, straight to the terminal.

    doit captures a python-action's output by swapping `sys.stdout`, which threads share,
    so under `-n` captured lines could land in another task's output; labelled whole
    lines on the real stdout never mix. Failures carry their own last lines.
    """

    stream = sys.__stdout__ or sys.stderr

    def emit(line: str) -> None:
        with _output_lock:
            stream.write(f"[{label}] {line}\n")
            stream.flush()

    return emit
