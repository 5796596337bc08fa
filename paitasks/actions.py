"""The python-actions behind doit's tasks: thin calls into tempfolders, hooks and engine.

Each takes the run (run.py) and plain values, and returns a JSON-able dict (saved by doit
as the task's values) or a doit TaskFailed whose message names the culprit, so a failure
reads as one clear paragraph instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from doit.exceptions import TaskFailed

from paitasks import builds, freshness, publish
from paitasks.errors import PaiTasksError
from paitasks.hooks import run_hook, run_or_skip
from paitasks.inputs import ImageSpec
from paitasks.run import Run
from paitasks.tempfolders import TEMP_FOLDERS, RoundSpec

if TYPE_CHECKING:
    pass

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
            on_line=run.output.lines(
                f"{'pre' if path.name == 'build-pre.sh' else 'post'}build:{round_.name}",
                f"{round_.name}/{path.name}",
            ),
        )

    try:
        run.check_same_process()
        skipped = run_or_skip(run.contents, round_, path, execute, run.hashes)
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
    """Build one image (builds.py): here, on an engine of `engines=`, or (pull=1) pull
    the registry's image of its inputs."""
    try:
        run.check_same_process()
        return builds.build(run, spec)
    except PaiTasksError as exc:
        return TaskFailed(str(exc))


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
    return {"image": image, "name": run.registry_settings.image_name(image), "digest": digest}


def push_image(run: Run, image: str, bases: tuple[str, ...] = ()) -> Any:
    """`push:<image>`: upload it, then move its `:tag`; return name and digest."""
    try:
        run.check_same_process()
        publish.upload(run, image, bases)
        digest = publish.move_tag(run, image)
    except PaiTasksError as exc:
        return TaskFailed(str(exc))
    return {"image": image, "name": run.registry_settings.image_name(image), "digest": digest}


def clean(run: Run, folder: str) -> Any:
    """Remove a component's temp folders, if a run recorded them."""
    base = Path(folder)
    removed = run.temp.remove(only=[base / name for name in TEMP_FOLDERS])
    return {"removed": [str(path) for path in removed]}


def clean_all(run: Run) -> None:
    """Remove every temp folder a run recorded (for doit's `clean` command)."""
    for path in run.temp.remove():
        print(f"removed {path}")
