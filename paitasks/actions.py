"""The python-actions behind doit's tasks: thin calls into the modules that do the work.

Each takes the run (run.py) and plain values, and returns a JSON-able dict (saved by doit
as the task's values) or a doit TaskFailed whose message names the culprit, so a failure
reads as one clear paragraph instead of a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from paitasks import builds, freshness, publish
from paitasks.errors import PaiTasksError
from paitasks.hooks import run_hook, run_or_skip
from paitasks.inputs import ImageSpec
from paitasks.run import Run
from paitasks.tempfolders import TEMP_FOLDERS, RoundSpec


def _action(function: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
    """A python-action that runs in the run's process (Run.check_same_process) and whose
    PaiTasksError becomes doit's TaskFailed."""

    @functools.wraps(function)
    def action(run: Run, *arguments: Any) -> Any:
        try:
            run.check_same_process()
            return function(run, *arguments)
        except PaiTasksError as exc:
            return TaskFailed(str(exc))

    return action


@_action
def copy_deps(run: Run, round_: RoundSpec) -> dict[str, Any]:
    """Copy each dependency's whole folder into `<component>/dependency/<dep>/`."""
    run.temp.ensure_real(round_, "copies")
    return {"copied": [dep.name for dep in round_.copies]}


@_action
def hook(run: Run, ahead: freshness.Lookahead, round_: RoundSpec, script: str) -> dict[str, Any]:
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
        skipped = run_or_skip(run.contents, round_, path, execute)
    except OSError as exc:
        raise PaiTasksError(f"component {round_.name}: {path.name}: {exc}") from None
    if skipped:
        return {"hook": path.name, "skipped": "declared inputs unchanged"}
    if path.name == "build-pre.sh":
        ahead.after_hook(round_.images)  # their registry questions, at once
    return {"hook": path.name}


@_action
def build_image(run: Run, spec: ImageSpec) -> dict[str, Any]:
    """Build one image (builds.py): here, on a builder of `builders=`, or (pull=1) pull
    the registry's image of its inputs."""
    return builds.build(run, spec)


@_action
def upload_image(run: Run, image: str, bases: tuple[str, ...] = ()) -> dict[str, Any]:
    """`_upload:<image>`: make the registry hold the image built from the current inputs
    under its fingerprint tag, pushed from this engine if the registry has none yet.
    `:tag` is not touched: `push` moves every image's `:tag` only once every image is in
    the registry, so a failed upload leaves nothing half-published."""
    return {"image": image, "digest": publish.upload(run, image, bases)}


@_action
def publish_tag(run: Run, image: str) -> dict[str, Any]:
    """`_publish:<image>`: move the image's `:tag` to what its fingerprint tag serves."""
    return _moved(run, image)


@_action
def push_image(run: Run, image: str, bases: tuple[str, ...] = ()) -> dict[str, Any]:
    """`push:<image>`: upload it, then move its `:tag`."""
    publish.upload(run, image, bases)
    return _moved(run, image)


def _moved(run: Run, image: str) -> dict[str, Any]:
    """Move `:tag` (name and digest), unless a newer commit's images are there (`kept`)."""
    name = run.registry_settings.image_name(image)
    kept = publish.kept_for_newer(run, image)
    if kept is not None:
        return {"image": image, "name": name, "kept": kept}
    return {"image": image, "name": name, "digest": publish.move_tag(run, image)}


def clean(run: Run, folder: str) -> Any:
    """Remove a component's temp folders, if a run recorded them."""
    base = Path(folder)
    removed = run.temp.remove(only=[base / name for name in TEMP_FOLDERS])
    return {"removed": [str(path) for path in removed]}


def clean_all(run: Run) -> None:
    """Remove every temp folder a run recorded (for doit's `clean` command)."""
    for path in run.temp.remove():
        print(f"removed {path}")
